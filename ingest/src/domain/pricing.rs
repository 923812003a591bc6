//! Order totals: list prices are GST-inclusive (as Indian storefronts show them), so each line's
//! tax is carved out of its price at its category's rate. A line listed in another currency is
//! converted at a rate recorded with the order, so the total can always be recomputed.

pub use model::tax::GstRates;
use model::tax::taxable_part;
use model::{Currency, Money};
use serde::{Deserialize, Serialize};

/// `micro_units` of `to` buy one unit of `from` (e.g. USD -> INR 84.25 is 84_250_000).
/// Recorded on the order with the time it was quoted. Every supported currency has two
/// decimal places, so minor units convert at the same rate as major ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct FxRate {
    pub from: Currency,
    pub to: Currency,
    pub micro_units: i64,
    pub quoted_at: i64,
}

impl FxRate {
    /// Converts, rounding half away from zero to the minor unit.
    pub fn convert(&self, money: Money) -> Result<Money, PricingError> {
        if money.currency != self.from {
            return Err(PricingError::NoRate {
                from: money.currency,
                to: self.to,
            });
        }
        let scaled = i128::from(money.amount_minor) * i128::from(self.micro_units);
        let rounded = (scaled + scaled.signum() * 500_000) / 1_000_000;
        let amount = i64::try_from(rounded).map_err(|_| PricingError::Overflow)?;
        Ok(Money::new(amount, self.to))
    }
}

/// One requested line: what the catalog says about the product, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput<'a> {
    pub category: &'a str,
    pub unit_price: Money,
    pub quantity: u32,
}

/// One line priced in the order's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricedLine {
    pub unit_price: Money,
    pub quantity: u32,
    /// `unit_price * quantity`, GST included.
    pub gross: Money,
    pub taxable: Money,
    pub gst: Money,
    pub gst_bps: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderTotals {
    pub lines: Vec<PricedLine>,
    /// Sum of taxable values.
    pub taxable: Money,
    pub gst: Money,
    /// What the buyer pays: the sum of gross line amounts.
    pub total: Money,
    pub fx: Option<FxRate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("an order needs at least one line")]
    NoLines,
    #[error("line {index}: quantity must be at least 1")]
    ZeroQuantity { index: usize },
    #[error("line {index}: price must not be negative")]
    NegativePrice { index: usize },
    #[error("no exchange rate recorded from {from} to {to}")]
    NoRate { from: Currency, to: Currency },
    #[error("the order total does not fit in 64-bit minor units")]
    Overflow,
}

/// Prices `lines` in `currency`, converting any line listed in `fx.from` at `fx`.
pub fn price_order(
    lines: &[LineInput<'_>],
    currency: Currency,
    rates: &GstRates,
    fx: Option<FxRate>,
) -> Result<OrderTotals, PricingError> {
    if lines.is_empty() {
        return Err(PricingError::NoLines);
    }
    let zero = Money::new(0, currency);
    let mut totals = OrderTotals {
        lines: Vec::with_capacity(lines.len()),
        taxable: zero,
        gst: zero,
        total: zero,
        fx: None,
    };
    for (index, line) in lines.iter().enumerate() {
        if line.quantity == 0 {
            return Err(PricingError::ZeroQuantity { index });
        }
        if line.unit_price.amount_minor < 0 {
            return Err(PricingError::NegativePrice { index });
        }
        let unit_price = match fx {
            _ if line.unit_price.currency == currency => line.unit_price,
            Some(rate) if rate.to == currency => {
                totals.fx = Some(rate);
                rate.convert(line.unit_price)?
            }
            _ => {
                return Err(PricingError::NoRate {
                    from: line.unit_price.currency,
                    to: currency,
                });
            }
        };
        let gst_bps = rates.bps(line.category);
        let gross = unit_price
            .amount_minor
            .checked_mul(i64::from(line.quantity))
            .ok_or(PricingError::Overflow)?;
        let taxable = taxable_part(gross, gst_bps);
        let priced = PricedLine {
            unit_price,
            quantity: line.quantity,
            gross: Money::new(gross, currency),
            taxable: Money::new(taxable, currency),
            gst: Money::new(gross - taxable, currency),
            gst_bps,
        };
        totals.taxable = add(totals.taxable, priced.taxable)?;
        totals.gst = add(totals.gst, priced.gst)?;
        totals.total = add(totals.total, priced.gross)?;
        totals.lines.push(priced);
    }
    Ok(totals)
}

fn add(a: Money, b: Money) -> Result<Money, PricingError> {
    let amount = a
        .amount_minor
        .checked_add(b.amount_minor)
        .ok_or(PricingError::Overflow)?;
    Ok(Money::new(amount, a.currency))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(category: &str, rupees: i64, quantity: u32) -> LineInput<'_> {
        LineInput {
            category,
            unit_price: Money::inr(rupees * 100),
            quantity,
        }
    }

    #[test]
    fn gst_is_carved_out_of_inclusive_prices_per_category() {
        let totals = price_order(
            &[
                line("electronics", 1180, 1),
                line("grocery", 105, 2),
                line("books", 300, 1),
            ],
            Currency::INR,
            &GstRates::default(),
            None,
        )
        .unwrap();
        let gst: Vec<i64> = totals.lines.iter().map(|l| l.gst.amount_minor).collect();
        // 1180 at 18 % holds 180 of tax; 210 at 5 % holds 10; books are exempt.
        assert_eq!(gst, vec![18_000, 1_000, 0]);
        assert_eq!(totals.total, Money::inr(169_000));
        assert_eq!(
            totals.taxable.amount_minor + totals.gst.amount_minor,
            169_000
        );
    }

    #[test]
    fn uneven_tax_rounds_half_up_and_parts_always_sum_to_the_price() {
        let totals = price_order(
            &[LineInput {
                category: "home",
                unit_price: Money::inr(999),
                quantity: 1,
            }],
            Currency::INR,
            &GstRates::default(),
            None,
        )
        .unwrap();
        let line = totals.lines[0];
        assert_eq!(line.taxable.amount_minor, 847); // 9.99 / 1.18 = 8.4661
        assert_eq!(line.taxable.amount_minor + line.gst.amount_minor, 999);
    }

    #[test]
    fn foreign_prices_convert_at_the_recorded_rate() {
        let fx = FxRate {
            from: Currency::USD,
            to: Currency::INR,
            micro_units: 84_250_000,
            quoted_at: 1_764_547_200_000,
        };
        let totals = price_order(
            &[LineInput {
                category: "books",
                unit_price: Money::new(1_999, Currency::USD),
                quantity: 2,
            }],
            Currency::INR,
            &GstRates::default(),
            Some(fx),
        )
        .unwrap();
        // 19.99 USD * 84.25 = 1684.1575 INR -> 1684.16 each.
        assert_eq!(totals.lines[0].unit_price, Money::inr(168_416));
        assert_eq!(totals.total, Money::inr(336_832));
        assert_eq!(totals.fx, Some(fx));
    }

    #[test]
    fn a_foreign_price_without_a_rate_is_refused() {
        let error = price_order(
            &[LineInput {
                category: "toys",
                unit_price: Money::new(500, Currency::EUR),
                quantity: 1,
            }],
            Currency::INR,
            &GstRates::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no exchange rate recorded from EUR to INR"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let rates = GstRates::default();
        assert_eq!(
            price_order(&[], Currency::INR, &rates, None),
            Err(PricingError::NoLines)
        );
        assert_eq!(
            price_order(
                &[line("toys", 1, 1), line("toys", 1, 0)],
                Currency::INR,
                &rates,
                None
            ),
            Err(PricingError::ZeroQuantity { index: 1 })
        );
        assert_eq!(
            price_order(
                &[line("toys", i64::MAX / 100, 3)],
                Currency::INR,
                &rates,
                None
            ),
            Err(PricingError::Overflow)
        );
    }

    #[test]
    fn an_unlisted_category_pays_the_fallback_rate() {
        assert_eq!(GstRates::default().bps("jewellery"), 1800);
    }
}
