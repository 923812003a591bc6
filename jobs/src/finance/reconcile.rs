//! The summary and the reconciliation: totals the accountant files, and every place where the
//! books do not tie, with its ids. Nothing is dropped silently: a check that finds nothing
//! still shows its totals.

use std::collections::{BTreeMap, BTreeSet};

use model::calendar::{IstDate, ist_minute_of_day};
use polars::prelude::*;

use super::Subject;
use super::sheets::{ints, texts};
use crate::JobError;

/// One row of the reconciliation sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub check: String,
    pub id: String,
    pub expected: Option<i64>,
    pub actual: Option<i64>,
    pub currency: Option<String>,
    pub note: String,
}

impl Difference {
    pub fn note(check: &str, id: &str, note: String) -> Difference {
        Difference {
            check: check.to_owned(),
            id: id.to_owned(),
            expected: None,
            actual: None,
            currency: None,
            note,
        }
    }

    fn amounts(check: &str, id: String, expected: i64, actual: i64, currency: &str) -> Self {
        Difference {
            check: check.to_owned(),
            id,
            expected: Some(expected),
            actual: Some(actual),
            currency: Some(currency.to_owned()),
            note: if expected == actual {
                "ties".to_owned()
            } else {
                "differs".to_owned()
            },
        }
    }
}

/// The period's frames the two sheets are computed from.
pub(super) struct Ledger<'a> {
    /// The refunds sheet, with each refund's share of its order's taxable value and GST.
    pub refund_tax: &'a DataFrame,
    pub sales: &'a DataFrame,
    pub invoices: &'a DataFrame,
    pub orders: &'a DataFrame,
    pub payments: &'a DataFrame,
    pub refunds: &'a DataFrame,
}

/// Sums of `amount` by `currency` over `frame`'s rows.
fn by_currency(
    frame: &DataFrame,
    amount: &str,
    currency: &str,
) -> PolarsResult<BTreeMap<String, i64>> {
    let mut sums = BTreeMap::new();
    for (value, code) in ints(frame, amount)?
        .into_iter()
        .zip(texts(frame, currency)?)
    {
        *sums.entry(code.unwrap_or("INR").to_owned()).or_default() += value.unwrap_or_default();
    }
    Ok(sums)
}

fn of_type(frame: &DataFrame, event_type: &str) -> PolarsResult<DataFrame> {
    frame
        .clone()
        .lazy()
        .filter(col("event_type").eq(lit(event_type)))
        .collect()
}

impl Ledger<'_> {
    pub fn reconcile(&self, mut notes: Vec<Difference>) -> Result<DataFrame, JobError> {
        let mut rows = Vec::new();
        self.invoice_totals(&mut rows)?;
        self.captured_net(&mut rows)?;
        self.payouts(&mut rows)?;
        rows.append(&mut notes);
        let difference: Vec<Option<i64>> = rows
            .iter()
            .map(|row| Some(row.actual? - row.expected?))
            .collect();
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "check".into(),
                rows.iter().map(|r| r.check.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "id".into(),
                rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "expected_minor".into(),
                rows.iter().map(|r| r.expected).collect::<Vec<_>>(),
            ),
            Column::new(
                "actual_minor".into(),
                rows.iter().map(|r| r.actual).collect::<Vec<_>>(),
            ),
            Column::new("difference_minor".into(), difference),
            Column::new(
                "currency".into(),
                rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "note".into(),
                rows.iter().map(|r| r.note.clone()).collect::<Vec<_>>(),
            ),
        ])?)
    }

    /// Each invoice's lines against the total the order was placed with.
    fn invoice_totals(&self, rows: &mut Vec<Difference>) -> Result<(), JobError> {
        let placed = of_type(self.orders, "order.placed")?;
        let placed_total: BTreeMap<&str, i64> = texts(&placed, "order_id")?
            .into_iter()
            .zip(ints(&placed, "total_minor")?)
            .filter_map(|(order, total)| Some((order?, total?)))
            .collect();
        let numbers = texts(self.invoices, "invoice_number")?;
        let orders = texts(self.invoices, "order_id")?;
        let totals = ints(self.invoices, "invoice_total_minor")?;
        let currencies = texts(self.invoices, "currency")?;
        let mut all: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut differing = Vec::new();
        for row in 0..numbers.len() {
            let (order, lines) = (
                orders[row].unwrap_or_default(),
                totals[row].unwrap_or_default(),
            );
            let currency = currencies[row].unwrap_or("INR");
            let expected = placed_total.get(order).copied().unwrap_or_default();
            let sums = all.entry(currency).or_default();
            sums.0 += expected;
            sums.1 += lines;
            if expected != lines {
                differing.push(Difference::amounts(
                    "lines = invoice total",
                    format!("{} (order {order})", numbers[row].unwrap_or_default()),
                    expected,
                    lines,
                    currency,
                ));
            }
        }
        if all.is_empty() {
            all.insert("INR", (0, 0));
        }
        for (currency, (expected, actual)) in all {
            rows.push(Difference::amounts(
                "lines = invoice total",
                format!("all {} invoices", numbers.len()),
                expected,
                actual,
                currency,
            ));
        }
        rows.append(&mut differing);
        Ok(())
    }

    /// Payments captured less refunds against the invoiced sales less refunds, in total and
    /// order by order.
    fn captured_net(&self, rows: &mut Vec<Difference>) -> Result<(), JobError> {
        let captured = of_type(self.payments, "payment.captured")?;
        let captured_sums = by_currency(&captured, "amount_minor", "amount_currency")?;
        let refunded = by_currency(self.refunds, "amount_minor", "amount_currency")?;
        let invoiced = by_currency(self.invoices, "invoice_total_minor", "currency")?;
        let inr = "INR".to_owned();
        let mut currencies: BTreeSet<&String> = captured_sums
            .keys()
            .chain(invoiced.keys())
            .chain(refunded.keys())
            .collect();
        if currencies.is_empty() {
            currencies.insert(&inr);
        }
        for currency in currencies {
            let refund = refunded.get(currency).copied().unwrap_or_default();
            rows.push(Difference::amounts(
                "captured - refunded = net sales",
                format!("all orders in {currency}"),
                invoiced.get(currency).copied().unwrap_or_default() - refund,
                captured_sums.get(currency).copied().unwrap_or_default() - refund,
                currency,
            ));
        }
        let mut by_order: BTreeMap<String, (Option<i64>, Option<i64>, String)> = BTreeMap::new();
        for ((order, amount), currency) in texts(&captured, "order_id")?
            .into_iter()
            .zip(ints(&captured, "amount_minor")?)
            .zip(texts(&captured, "amount_currency")?)
        {
            let entry = by_order
                .entry(order.unwrap_or_default().to_owned())
                .or_insert((None, None, currency.unwrap_or("INR").to_owned()));
            entry.1 = Some(entry.1.unwrap_or_default() + amount.unwrap_or_default());
        }
        for ((order, total), currency) in texts(self.invoices, "order_id")?
            .into_iter()
            .zip(ints(self.invoices, "invoice_total_minor")?)
            .zip(texts(self.invoices, "currency")?)
        {
            let entry = by_order
                .entry(order.unwrap_or_default().to_owned())
                .or_insert((None, None, currency.unwrap_or("INR").to_owned()));
            entry.0 = Some(total.unwrap_or_default());
        }
        for (order, (invoiced, captured, currency)) in by_order {
            let note = match (invoiced, captured) {
                (Some(i), Some(c)) if i == c => continue,
                (Some(_), Some(_)) => "captured differs from the invoice",
                (Some(_), None) => "invoiced this period, captured in another",
                (None, Some(_)) => "captured this period, invoiced in another",
                (None, None) => continue,
            };
            rows.push(Difference {
                check: "captured = invoiced, by order".to_owned(),
                id: order,
                expected: invoiced,
                actual: captured,
                currency: Some(currency),
                note: note.to_owned(),
            });
        }
        Ok(())
    }

    /// Each payout's net against its gross less refunds and fees.
    fn payouts(&self, rows: &mut Vec<Difference>) -> Result<(), JobError> {
        let payouts = of_type(self.payments, "payment.payout_settled")?;
        let ids = texts(&payouts, "payout_id")?;
        let gross = ints(&payouts, "gross_minor")?;
        let refunds = ints(&payouts, "refunds_minor")?;
        let fees = ints(&payouts, "fees_minor")?;
        let net = ints(&payouts, "net_minor")?;
        let currency = texts(&payouts, "net_currency")?;
        for row in 0..ids.len() {
            rows.push(Difference::amounts(
                "payout = gross - refunds - fees",
                ids[row].unwrap_or_default().to_owned(),
                gross[row].unwrap_or_default()
                    - refunds[row].unwrap_or_default()
                    - fees[row].unwrap_or_default(),
                net[row].unwrap_or_default(),
                currency[row].unwrap_or("INR"),
            ));
        }
        Ok(())
    }

    /// The summary sheet: who, which period, and the totals to file.
    pub fn summary(
        &self,
        subject: &Subject,
        supplier: Option<&str>,
    ) -> Result<DataFrame, JobError> {
        let mut rows: Vec<(String, String, Option<i64>, Option<String>)> = Vec::new();
        let mut text = |item: &str, value: String| rows.push((item.to_owned(), value, None, None));
        text("merchant", subject.merchant.clone());
        match &subject.identity {
            Some(identity) => {
                text("legal name", identity.legal_name.clone());
                text("GSTIN", identity.gstin.clone());
                text("state of registration", supplier.unwrap_or("unknown").to_owned());
            }
            None => text(
                "GSTIN",
                "not configured (jobs.finance.merchants): every supply is reported as inter-state (IGST)".to_owned(),
            ),
        }
        text("period", format!("{} (IST)", subject.period));
        text(
            "status",
            if subject.provisional() {
                "provisional: the month is not over (or ended within the hour); totals and invoice numbers may still change".to_owned()
            } else {
                "closed".to_owned()
            },
        );
        text("financial year", subject.period.financial_year_label());
        let (y, m, d) = IstDate::of_instant(subject.read_at).ymd();
        let minute = ist_minute_of_day(subject.read_at);
        text(
            "read from the lake at",
            format!(
                "{y}-{m:02}-{d:02} {:02}:{:02} IST",
                minute / 60,
                minute % 60
            ),
        );
        let numbers = texts(self.invoices, "invoice_number")?;
        text(
            "invoices",
            match (
                numbers.first().copied().flatten(),
                numbers.last().copied().flatten(),
            ) {
                (Some(first), Some(last)) => format!("{} ({first} to {last})", numbers.len()),
                _ => "none".to_owned(),
            },
        );
        let mut money = |item: String, amounts: &BTreeMap<String, i64>| {
            if amounts.is_empty() {
                // A month without any: a zero total, not a missing row.
                rows.push((item.clone(), String::new(), Some(0), Some("INR".to_owned())));
            }
            for (currency, amount) in amounts {
                rows.push((
                    item.clone(),
                    String::new(),
                    Some(*amount),
                    Some(currency.clone()),
                ));
            }
        };
        let gross = by_currency(self.sales, "line_total_minor", "currency")?;
        let refunds = by_currency(self.refunds, "amount_minor", "amount_currency")?;
        let mut net = gross.clone();
        for (currency, refund) in &refunds {
            *net.entry(currency.clone()).or_default() -= refund;
        }
        money("gross sales".to_owned(), &gross);
        money("refunds".to_owned(), &refunds);
        money("net sales".to_owned(), &net);
        money(
            "taxable value".to_owned(),
            &by_currency(self.sales, "taxable_value_minor", "currency")?,
        );
        let rates = ints(self.sales, "gst_rate_bps")?;
        let mut by_rate: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
        let taxes: Vec<Vec<Option<i64>>> = ["cgst_minor", "sgst_utgst_minor", "igst_minor"]
            .iter()
            .map(|name| ints(self.sales, name))
            .collect::<PolarsResult<_>>()?;
        let currencies = texts(self.sales, "currency")?;
        for row in 0..rates.len() {
            let tax: i64 = taxes.iter().map(|t| t[row].unwrap_or_default()).sum();
            *by_rate
                .entry(rates[row].unwrap_or_default())
                .or_default()
                .entry(currencies[row].unwrap_or("INR").to_owned())
                .or_default() += tax;
        }
        for (bps, amounts) in &by_rate {
            money(
                format!("GST collected at {}.{:02} %", bps / 100, bps % 100),
                amounts,
            );
        }
        let mut reversed = BTreeMap::new();
        for column in ["cgst_minor", "sgst_utgst_minor", "igst_minor"] {
            for (currency, amount) in by_currency(self.refund_tax, column, "currency")? {
                *reversed.entry(currency).or_default() += amount;
            }
        }
        let mut collected = BTreeMap::new();
        for amounts in by_rate.values() {
            for (currency, amount) in amounts {
                *collected.entry(currency.clone()).or_default() += amount;
            }
        }
        money(
            "GST reversed by refunds (credit notes)".to_owned(),
            &reversed,
        );
        let mut net_gst = collected;
        for (currency, amount) in &reversed {
            *net_gst.entry(currency.clone()).or_default() -= amount;
        }
        money("net GST".to_owned(), &net_gst);
        money(
            "CGST".to_owned(),
            &by_currency(self.sales, "cgst_minor", "currency")?,
        );
        money(
            "SGST/UTGST".to_owned(),
            &by_currency(self.sales, "sgst_utgst_minor", "currency")?,
        );
        money(
            "IGST".to_owned(),
            &by_currency(self.sales, "igst_minor", "currency")?,
        );
        let payouts = of_type(self.payments, "payment.payout_settled")?;
        for (item, column) in [
            ("payouts: gross", "gross_minor"),
            ("payouts: refunds", "refunds_minor"),
            ("payouts: fees", "fees_minor"),
            ("payouts: net paid", "net_minor"),
        ] {
            money(
                item.to_owned(),
                &by_currency(&payouts, column, "net_currency")?,
            );
        }
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "item".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "value".into(),
                rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "amount_minor".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Column::new(
                "currency".into(),
                rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>(),
            ),
        ])?)
    }
}
