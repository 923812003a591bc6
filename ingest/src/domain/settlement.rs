//! Money after the sale: refunds bounded by what was captured, and merchant payouts net of
//! refunds and the platform's fees.

use model::Money;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error(
        "refund of {requested} minor units exceeds the {refundable} still refundable of what was captured"
    )]
    RefundExceedsCaptured { requested: i64, refundable: i64 },
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(model::Currency, model::Currency),
    #[error("amount does not fit in 64-bit minor units")]
    Overflow,
}

/// What was captured for one payment and how much of it went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLedger {
    pub captured: Money,
    pub refunded: Money,
}

impl RefundLedger {
    pub fn new(captured: Money) -> Self {
        Self {
            captured,
            refunded: Money::new(0, captured.currency),
        }
    }

    pub fn refundable(&self) -> i64 {
        self.captured.amount_minor - self.refunded.amount_minor
    }

    /// Records a refund of `amount`; the sum of refunds never exceeds the capture.
    pub fn refund(self, amount: Money) -> Result<Self, SettlementError> {
        same_currency(self.captured, amount)?;
        if amount.amount_minor <= 0 {
            return Err(SettlementError::NotPositive(amount.amount_minor));
        }
        if amount.amount_minor > self.refundable() {
            return Err(SettlementError::RefundExceedsCaptured {
                requested: amount.amount_minor,
                refundable: self.refundable(),
            });
        }
        Ok(Self {
            refunded: Money::new(
                self.refunded.amount_minor + amount.amount_minor,
                amount.currency,
            ),
            ..self
        })
    }
}

/// The platform's cut: a commission on gross sales plus a fixed fee per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    pub commission_bps: u32,
    pub per_order_minor: i64,
}

impl Default for FeeSchedule {
    fn default() -> Self {
        Self {
            commission_bps: 200,
            per_order_minor: 0,
        }
    }
}

/// A merchant's payout for a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub gross: Money,
    pub refunds: Money,
    pub fees: Money,
    /// `gross - refunds - fees`; negative when refunds of earlier sales outweigh this
    /// period's, which the merchant then owes.
    pub net: Money,
}

/// Settles a period with `gross` captured over `orders` orders and `refunds` paid back.
/// Commission is charged on gross and rounded half up to the minor unit.
pub fn settle(
    gross: Money,
    refunds: Money,
    orders: u32,
    fees: FeeSchedule,
) -> Result<Payout, SettlementError> {
    same_currency(gross, refunds)?;
    let commission =
        (i128::from(gross.amount_minor) * i128::from(fees.commission_bps) + 5_000) / 10_000;
    let fixed = i128::from(fees.per_order_minor) * i128::from(orders);
    let fee_total = i64::try_from(commission + fixed).map_err(|_| SettlementError::Overflow)?;
    let net = gross
        .amount_minor
        .checked_sub(refunds.amount_minor)
        .and_then(|n| n.checked_sub(fee_total))
        .ok_or(SettlementError::Overflow)?;
    Ok(Payout {
        gross,
        refunds,
        fees: Money::new(fee_total, gross.currency),
        net: Money::new(net, gross.currency),
    })
}

fn same_currency(a: Money, b: Money) -> Result<(), SettlementError> {
    if a.currency == b.currency {
        Ok(())
    } else {
        Err(SettlementError::CurrencyMismatch(a.currency, b.currency))
    }
}

#[cfg(test)]
mod tests {
    use model::Currency;

    use super::*;

    #[test]
    fn refunds_add_up_to_the_capture_and_no_further() {
        let ledger = RefundLedger::new(Money::inr(1_000));
        let ledger = ledger.refund(Money::inr(700)).unwrap();
        let ledger = ledger.refund(Money::inr(300)).unwrap();
        assert_eq!(ledger.refundable(), 0);
        assert_eq!(
            ledger.refund(Money::inr(1)),
            Err(SettlementError::RefundExceedsCaptured {
                requested: 1,
                refundable: 0
            })
        );
    }

    #[test]
    fn odd_refunds_are_refused() {
        let ledger = RefundLedger::new(Money::inr(1_000));
        assert_eq!(
            ledger.refund(Money::inr(0)),
            Err(SettlementError::NotPositive(0))
        );
        assert!(matches!(
            ledger.refund(Money::new(10, Currency::USD)),
            Err(SettlementError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn payout_is_gross_less_refunds_and_fees() {
        let fees = FeeSchedule {
            commission_bps: 250,
            per_order_minor: 500,
        };
        let payout = settle(Money::inr(1_000_000), Money::inr(120_000), 40, fees).unwrap();
        // 2.5 % of 10,000.00 is 250.00; 40 orders at 5.00 is 200.00.
        assert_eq!(payout.fees, Money::inr(45_000));
        assert_eq!(payout.net, Money::inr(1_000_000 - 120_000 - 45_000));
    }

    #[test]
    fn refunds_beyond_the_period_leave_the_merchant_owing() {
        let payout = settle(
            Money::inr(1_000),
            Money::inr(5_000),
            1,
            FeeSchedule::default(),
        )
        .unwrap();
        assert_eq!(payout.net, Money::inr(1_000 - 5_000 - 20));
    }
}
