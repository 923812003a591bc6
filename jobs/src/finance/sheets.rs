//! Frames in, sheets out (pure): the sales lines with their GST, and every sheet derived from
//! them or from the payments, refunds and shipments of the period.

use std::collections::BTreeMap;

use model::calendar::IstDate;
use model::geo::Directory;
use model::tax::taxable_part;
use polars::prelude::*;

use super::gst::{self, Split};
use super::reconcile::{Difference, Ledger};
use super::{Export, FinanceConfig, Inputs, Kind, Sheet, Subject};
use crate::JobError;

/// Builds every sheet of `subject`'s export from `inputs`.
pub fn build(
    inputs: &Inputs,
    config: &FinanceConfig,
    subject: Subject,
) -> Result<Export, JobError> {
    let period = subject.period;
    let start = period.start_ms();
    let supplier = subject
        .identity
        .as_ref()
        .and_then(|identity| gst::gstin_state(&identity.gstin).ok());
    let mut differences = Vec::new();
    let year = year_sales(
        inputs,
        config,
        &subject,
        supplier.as_deref(),
        &mut differences,
    )?;
    let sales = year
        .clone()
        .lazy()
        .filter(col("invoice_date").gt_eq(lit(start)))
        .collect()?;

    let invoices = invoices(&sales)?;
    let payments = payments(&inputs.payments)?;
    let refunds = refunds(inputs, &year, &mut differences)?;
    let deliveries = deliveries(inputs, period.start_ms(), period.end_ms())?;
    let customers = customers(&year)?;
    let (b2c, hsn) = tax_summaries(&sales)?;
    let ledger = Ledger {
        refund_tax: &refunds,
        sales: &sales,
        invoices: &invoices,
        orders: &inputs.orders,
        payments: &inputs.payments,
        refunds: &inputs.refunds,
    };
    let reconciliation = ledger.reconcile(differences)?;
    let summary = ledger.summary(&subject, supplier.as_deref())?;

    use Kind::{Count, Date, Inr, Money, Rate, Text, Time};
    let sheets = vec![
        sheet("Summary", summary, &[Text, Text, Money, Text])?,
        sheet(
            "Sales lines",
            sales.drop("invoice_seq")?,
            &[
                Text, Date, Text, Text, Text, Text, Text, Text, Count, Money, Money, Rate, Money,
                Money, Money, Money, Text, Inr, Text,
            ],
        )?,
        sheet(
            "Invoices",
            invoices,
            &[
                Text, Date, Text, Text, Text, Text, Count, Money, Money, Money, Money, Money, Inr,
            ],
        )?,
        sheet(
            "Payments",
            payments,
            &[Text, Text, Text, Text, Money, Text, Time, Text],
        )?,
        sheet(
            "Refunds",
            refunds,
            &[
                Text, Text, Text, Money, Text, Text, Time, Money, Money, Money, Money,
            ],
        )?,
        sheet(
            "Deliveries",
            deliveries,
            &[Text, Text, Text, Text, Time, Date, Date, Text, Text],
        )?,
        sheet(
            "Customers",
            customers,
            &[Text, Count, Date, Date, Money, Text],
        )?,
        sheet(
            "Tax summary (B2C)",
            b2c,
            &[Text, Text, Rate, Text, Money, Money, Money, Money, Money],
        )?,
        sheet(
            "Tax summary (HSN)",
            hsn,
            &[Text, Rate, Text, Count, Money, Money, Money, Money, Money],
        )?,
        sheet(
            "Reconciliation",
            reconciliation,
            &[Text, Text, Money, Money, Money, Text, Text],
        )?,
    ];
    Ok(Export { subject, sheets })
}

fn sheet(name: &'static str, frame: DataFrame, kinds: &[Kind]) -> Result<Sheet, JobError> {
    if frame.width() != kinds.len() {
        return Err(JobError::Invalid(format!(
            "sheet {name}: {} columns but {} formats (a bug in the export)",
            frame.width(),
            kinds.len()
        )));
    }
    Ok(Sheet {
        name,
        frame,
        kinds: kinds.to_vec(),
    })
}

pub(super) fn texts<'a>(frame: &'a DataFrame, name: &str) -> PolarsResult<Vec<Option<&'a str>>> {
    Ok(frame.column(name)?.str()?.iter().collect())
}

pub(super) fn ints(frame: &DataFrame, name: &str) -> PolarsResult<Vec<Option<i64>>> {
    let column = frame.column(name)?.cast(&DataType::Int64)?;
    Ok(column.i64()?.iter().collect())
}

/// `INV/2627/000042`: the financial year starting in `fy` and the invoice's place in it
/// (15 characters; 16 from the millionth invoice of a year).
fn invoice_number(fy: i32, seq: i64) -> String {
    format!("INV/{:02}{:02}/{seq:06}", fy % 100, (fy + 1) % 100)
}

/// The latest value of `name` per group, by event time.
fn latest(name: &str) -> Expr {
    col(name)
        .sort_by([col("event_time")], SortMultipleOptions::default())
        .last()
}

/// Every invoiced line of the financial year up to the period's end, with its invoice and
/// GST worked out.
fn year_sales(
    inputs: &Inputs,
    config: &FinanceConfig,
    subject: &Subject,
    supplier: Option<&str>,
    differences: &mut Vec<Difference>,
) -> Result<DataFrame, JobError> {
    let period = subject.period;
    let invoiced = inputs
        .orders
        .clone()
        .lazy()
        .filter(col("event_type").eq(lit("order.confirmed")))
        .group_by([col("order_id")])
        .agg([col("event_time").min().alias("invoice_time")])
        .filter(
            col("invoice_time")
                .gt_eq(lit(period.financial_year_start_ms()))
                .and(col("invoice_time").lt(lit(period.end_ms()))),
        )
        .sort(["invoice_time", "order_id"], SortMultipleOptions::default())
        .with_row_index("invoice_seq", Some(1))
        .collect()?;
    let destinations = inputs
        .orders
        .clone()
        .lazy()
        .filter(
            col("event_type")
                .eq(lit("order.placed"))
                .or(col("event_type").eq(lit("order.address_changed"))),
        )
        .group_by([col("order_id")])
        .agg([latest("delivery_pincode").alias("place_pincode")]);
    let products = inputs
        .catalog
        .clone()
        .lazy()
        .filter(
            col("event_type")
                .eq(lit("catalog.product_upserted"))
                .and(col("event_time").lt(lit(period.end_ms()))),
        )
        .group_by([col("product_id")])
        .agg([latest("title"), latest("category")]);
    let lines = inputs
        .lines
        .clone()
        .lazy()
        .inner_join(invoiced.clone().lazy(), col("order_id"), col("order_id"))
        .left_join(destinations, col("order_id"), col("order_id"))
        .left_join(products, col("product_id"), col("product_id"))
        .sort_by_exprs(
            [col("invoice_seq"), col("line_number")],
            SortMultipleOptions::default(),
        )
        .collect()?;

    let fy = period.financial_year();
    let directory = Directory::load();
    let seqs = ints(&lines, "invoice_seq")?;
    let categories = texts(&lines, "category")?;
    let recorded_rates = ints(&lines, "gst_bps")?;
    let totals = ints(&lines, "line_total_minor")?;
    let currencies = texts(&lines, "unit_price_currency")?;
    let pincodes = texts(&lines, "place_pincode")?;
    let order_ids = texts(&lines, "order_id")?;
    let mut numbers = Vec::with_capacity(lines.height());
    let (mut hsn, mut rates, mut taxable) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cgst, mut sgst, mut igst) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inr, mut places) = (Vec::new(), Vec::new());
    let mut unrecorded: BTreeMap<String, i64> = BTreeMap::new();
    let mut unplaced: BTreeMap<String, (i64, &str)> = BTreeMap::new();
    let mut unknown_hsn: BTreeMap<String, i64> = BTreeMap::new();
    let mut no_rate: BTreeMap<String, i64> = BTreeMap::new();
    for row in 0..lines.height() {
        let seq = seqs[row].unwrap_or_default();
        numbers.push(invoice_number(fy, seq));
        let category = categories[row].unwrap_or_default();
        let bps = match recorded_rates[row] {
            Some(bps) => u32::try_from(bps).unwrap_or(0),
            None => {
                *unrecorded.entry(category.to_owned()).or_default() += 1;
                config.gst.bps(category)
            }
        };
        match config.hsn_by_category.get(category) {
            Some(code) => hsn.push(Some(code.clone())),
            None => {
                *unknown_hsn.entry(category.to_owned()).or_default() += 1;
                hsn.push(None);
            }
        }
        let total = totals[row].unwrap_or_default();
        let value = taxable_part(total, bps);
        let place = pincodes[row]
            .and_then(model::Pincode::parse)
            .and_then(|pincode| directory.get(pincode))
            .and_then(|place| gst::place_of_supply(&place.state));
        if place.is_none() {
            let pincode = pincodes[row].unwrap_or("(none)").to_owned();
            let entry = unplaced
                .entry(pincode)
                .or_insert((0, order_ids[row].unwrap_or_default()));
            entry.0 += 1;
        }
        let Split {
            cgst: c,
            sgst: s,
            igst: i,
        } = gst::split(total - value, supplier, place.as_deref());
        let currency = currencies[row].unwrap_or("INR");
        inr.push(if currency == "INR" {
            Some(total)
        } else if let Some(rate) = config.inr_per_unit.get(currency) {
            // Rounded to the paisa; the rate is named in the summary.
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            Some((total as f64 * rate).round() as i64)
        } else {
            *no_rate.entry(currency.to_owned()).or_default() += 1;
            None
        });
        rates.push(i64::from(bps));
        taxable.push(value);
        cgst.push(c);
        sgst.push(s);
        igst.push(i);
        places.push(place);
    }
    for (pincode, (count, order)) in unplaced {
        differences.push(Difference::note(
            "place of supply",
            &pincode,
            format!(
                "{count} line(s), e.g. of order {order}: no state for this delivery pincode in India Post's directory; taxed as inter-state (IGST)"
            ),
        ));
    }
    // A paid order must have lines; numbering happens before the lines are joined, so one
    // without would leave a gap in the numbers. Name each instead.
    let with_lines: std::collections::BTreeSet<&str> =
        order_ids.iter().flatten().copied().collect();
    let start = period.start_ms();
    for ((order, time), seq) in texts(&invoiced, "order_id")?
        .into_iter()
        .zip(ints(&invoiced, "invoice_time")?)
        .zip(ints(&invoiced, "invoice_seq")?)
    {
        let order = order.unwrap_or_default();
        if time.unwrap_or_default() >= start && !with_lines.contains(order) {
            differences.push(Difference::note(
                "invoice without lines",
                &invoice_number(fy, seq.unwrap_or_default()),
                format!("order {order} was paid, but the lake holds none of its lines (placed long before the financial year, or its order.placed is missing); the number is left unused"),
            ));
        }
    }
    for (category, count) in unrecorded {
        differences.push(Difference::note(
            "GST rate recorded",
            &category,
            format!(
                "{count} line(s) in category {category:?} carry no GST rate (events from before the core recorded it, or from a producer that does not); taxed at jobs.finance.gst's {} bps",
                config.gst.bps(&category)
            ),
        ));
    }
    for (category, count) in unknown_hsn {
        differences.push(Difference::note(
            "HSN code",
            &category,
            format!("{count} line(s) in category {category:?} have no HSN code: set jobs.finance.hsn_by_category.{category}"),
        ));
    }
    for (currency, count) in no_rate {
        differences.push(Difference::note(
            "INR rate",
            &currency,
            format!("{count} line(s) in {currency} have no INR value: set jobs.finance.inr_per_unit.{currency}"),
        ));
    }

    let column = |name: &str, values: Vec<i64>| Column::new(name.into(), values);
    let extra = [
        Column::new("invoice_number".into(), numbers),
        Column::new("hsn".into(), hsn),
        column("gst_rate_bps", rates),
        column("taxable_value_minor", taxable),
        column("cgst_minor", cgst),
        column("sgst_utgst_minor", sgst),
        column("igst_minor", igst),
        Column::new("line_total_inr_minor".into(), inr),
        Column::new("place_of_supply".into(), places),
    ];
    let lines = lines.hstack(&extra)?;
    Ok(lines
        .lazy()
        .select([
            col("invoice_number"),
            col("invoice_time").alias("invoice_date"),
            col("order_id"),
            col("customer_id"),
            col("product_id"),
            col("title"),
            col("category"),
            col("hsn"),
            col("quantity").cast(DataType::Int64),
            col("unit_price_minor"),
            col("taxable_value_minor"),
            col("gst_rate_bps"),
            col("cgst_minor"),
            col("sgst_utgst_minor"),
            col("igst_minor"),
            col("line_total_minor"),
            col("unit_price_currency").alias("currency"),
            col("line_total_inr_minor"),
            col("place_of_supply"),
            col("invoice_seq"),
        ])
        .collect()?)
}

/// One row per invoice, its lines summed.
fn invoices(sales: &DataFrame) -> Result<DataFrame, JobError> {
    Ok(sales
        .clone()
        .lazy()
        .group_by([col("invoice_number")])
        .agg([
            col("invoice_date").first(),
            col("order_id").first(),
            col("customer_id").first(),
            col("place_of_supply").first(),
            col("currency").first(),
            col("quantity").sum().alias("units"),
            col("taxable_value_minor").sum(),
            col("cgst_minor").sum(),
            col("sgst_utgst_minor").sum(),
            col("igst_minor").sum(),
            col("line_total_minor").sum().alias("invoice_total_minor"),
            col("line_total_inr_minor")
                .sum()
                .alias("invoice_total_inr_minor"),
        ])
        .sort(["invoice_number"], SortMultipleOptions::default())
        .collect()?)
}

/// Captures, failures and refunds of the period, in time order.
fn payments(payments: &DataFrame) -> Result<DataFrame, JobError> {
    let kind = col("event_type");
    Ok(payments
        .clone()
        .lazy()
        .filter(
            kind.clone()
                .eq(lit("payment.captured"))
                .or(kind.clone().eq(lit("payment.failed")))
                .or(kind.clone().eq(lit("payment.refund_issued"))),
        )
        .sort(["event_time"], SortMultipleOptions::default())
        .select([
            when(kind.clone().eq(lit("payment.refund_issued")))
                .then(col("refund_id"))
                .otherwise(col("payment_id"))
                .alias("transaction_id"),
            col("order_id"),
            col("provider"),
            when(kind.clone().eq(lit("payment.captured")))
                .then(lit("captured"))
                .when(kind.eq(lit("payment.failed")))
                .then(lit("failed"))
                .otherwise(lit("refunded"))
                .alias("status"),
            col("amount_minor"),
            col("amount_currency").alias("currency"),
            col("event_time").alias("time"),
            col("reason"),
        ])
        .collect()?)
}

/// Refunds of the period with the cancellation's reason where an order was cancelled.
fn refunds(
    inputs: &Inputs,
    year: &DataFrame,
    differences: &mut Vec<Difference>,
) -> Result<DataFrame, JobError> {
    let reasons = inputs
        .orders
        .clone()
        .lazy()
        .filter(col("event_type").eq(lit("order.cancelled")))
        .group_by([col("order_id")])
        .agg([col("reason").first()]);
    let refunds = inputs
        .refunds
        .clone()
        .lazy()
        .left_join(reasons, col("order_id"), col("order_id"))
        .sort(["event_time", "refund_id"], SortMultipleOptions::default())
        .select([
            col("refund_id"),
            col("order_id"),
            col("payment_id"),
            col("amount_minor"),
            col("amount_currency").alias("currency"),
            col("reason").fill_null(lit("refund without cancellation")),
            col("event_time").alias("time"),
        ])
        .collect()?;
    // What each invoiced order of the year carried, to reverse a refund's share of it.
    let orders = year
        .clone()
        .lazy()
        .group_by([col("order_id")])
        .agg([
            col("line_total_minor").sum(),
            col("taxable_value_minor").sum(),
            col("cgst_minor").sum(),
            col("sgst_utgst_minor").sum(),
            col("igst_minor").sum(),
        ])
        .collect()?;
    let order_ids = texts(&orders, "order_id")?;
    let sums: Vec<Vec<Option<i64>>> = [
        "line_total_minor",
        "taxable_value_minor",
        "cgst_minor",
        "sgst_utgst_minor",
        "igst_minor",
    ]
    .iter()
    .map(|name| ints(&orders, name))
    .collect::<PolarsResult<_>>()?;
    let invoiced: std::collections::HashMap<&str, usize> = order_ids
        .iter()
        .enumerate()
        .filter_map(|(row, order)| Some((order.as_deref()?, row)))
        .collect();
    let (mut taxable, mut cgst, mut sgst, mut igst) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((refund, order), amount) in texts(&refunds, "refund_id")?
        .into_iter()
        .zip(texts(&refunds, "order_id")?)
        .zip(ints(&refunds, "amount_minor")?)
    {
        let amount = amount.unwrap_or_default();
        let Some(&row) = order.and_then(|order| invoiced.get(order)) else {
            differences.push(Difference::note(
                "GST on refunds",
                refund.unwrap_or_default(),
                format!(
                    "order {} was not invoiced in this financial year up to the period's end; its GST is not reversed here",
                    order.unwrap_or("(none)")
                ),
            ));
            for column in [&mut taxable, &mut cgst, &mut sgst, &mut igst] {
                column.push(None);
            }
            continue;
        };
        let at = |column: usize| sums[column][row].unwrap_or_default();
        let value = share(at(1), amount, at(0));
        let tax = amount - value;
        let (c, s_, i) = if at(4) > 0 {
            (0, 0, tax)
        } else {
            (tax / 2, tax - tax / 2, 0)
        };
        taxable.push(Some(value));
        cgst.push(Some(c));
        sgst.push(Some(s_));
        igst.push(Some(i));
    }
    Ok(refunds.hstack(&[
        Column::new("taxable_value_minor".into(), taxable),
        Column::new("cgst_minor".into(), cgst),
        Column::new("sgst_utgst_minor".into(), sgst),
        Column::new("igst_minor".into(), igst),
    ])?)
}

/// `part` of `whole` scaled to `amount`, rounded half up: a refund's share of an order's
/// taxable value. A zero `whole` gives all of `amount`.
fn share(part: i64, amount: i64, whole: i64) -> i64 {
    if whole == 0 {
        return amount;
    }
    let scaled = 2 * i128::from(part) * i128::from(amount) + i128::from(whole);
    i64::try_from(scaled / (2 * i128::from(whole))).unwrap_or(amount)
}

/// Shipments created in the period, delivered or not (as of the export).
fn deliveries(inputs: &Inputs, start: i64, end: i64) -> Result<DataFrame, JobError> {
    let delivered = inputs
        .shipments
        .clone()
        .lazy()
        .filter(col("event_type").eq(lit("shipment.delivered")))
        .group_by([col("shipment_id")])
        .agg([col("event_time").min().alias("delivered_at")]);
    let shipped = inputs
        .shipments
        .clone()
        .lazy()
        .filter(
            col("event_type")
                .eq(lit("shipment.created"))
                .and(col("event_time").gt_eq(lit(start)))
                .and(col("event_time").lt(lit(end))),
        )
        .left_join(delivered, col("shipment_id"), col("shipment_id"))
        .sort(
            ["event_time", "shipment_id"],
            SortMultipleOptions::default(),
        )
        .select([
            col("shipment_id"),
            col("order_id"),
            col("courier_id"),
            col("destination_pincode"),
            col("event_time").alias("shipped_at"),
            col("promised_at"),
            col("delivered_at"),
        ])
        .collect()?;
    let promised = ints(&shipped, "promised_at")?;
    let delivered = ints(&shipped, "delivered_at")?;
    let (mut status, mut on_time) = (Vec::new(), Vec::new());
    for (promised, delivered) in promised.iter().zip(&delivered) {
        match (promised, delivered) {
            (Some(promised), Some(delivered)) => {
                status.push("delivered");
                let late = IstDate::of_instant(*delivered) > IstDate::of_instant(*promised);
                on_time.push(Some(if late { "late" } else { "on time" }));
            }
            (None, Some(_)) => {
                status.push("delivered");
                on_time.push(None);
            }
            (_, None) => {
                status.push("in transit");
                on_time.push(None);
            }
        }
    }
    Ok(shipped.hstack(&[
        Column::new("status".into(), status),
        Column::new("against_promise".into(), on_time),
    ])?)
}

/// Each customer's invoiced orders in the financial year to the period's end.
fn customers(year: &DataFrame) -> Result<DataFrame, JobError> {
    Ok(year
        .clone()
        .lazy()
        .group_by([col("customer_id"), col("currency")])
        .agg([
            col("order_id")
                .n_unique()
                .cast(DataType::Int64)
                .alias("orders_this_year"),
            col("invoice_date").min().alias("first_order"),
            col("invoice_date").max().alias("last_order"),
            col("line_total_minor").sum().alias("spent_this_year_minor"),
        ])
        .sort_by_exprs(
            [col("spent_this_year_minor"), col("customer_id")],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .select([
            col("customer_id"),
            col("orders_this_year"),
            col("first_order"),
            col("last_order"),
            col("spent_this_year_minor"),
            col("currency"),
        ])
        .collect()?)
}

/// Inter-state B2C invoices above this (₹1,00,000, in paise) are B2C Large in GSTR-1.
const B2CL_ABOVE_PAISE: i64 = 10_000_000;

/// GSTR-1's B2C supplies by table (B2C Large, B2C Small, nil rated), place of supply, rate
/// and currency, and its HSN-wise summary.
fn tax_summaries(sales: &DataFrame) -> Result<(DataFrame, DataFrame), JobError> {
    let sums = || {
        [
            col("taxable_value_minor").sum(),
            col("cgst_minor").sum(),
            col("sgst_utgst_minor").sum(),
            col("igst_minor").sum(),
            col("line_total_minor").sum().alias("total_value_minor"),
        ]
    };
    let invoice_values = sales
        .clone()
        .lazy()
        .group_by([col("invoice_number")])
        .agg([col("line_total_minor").sum().alias("invoice_value_minor")]);
    let table = when(col("gst_rate_bps").eq(lit(0)))
        .then(lit("nil rated"))
        .when(
            col("igst_minor")
                .gt(lit(0))
                .and(col("currency").eq(lit("INR")))
                .and(col("invoice_value_minor").gt(lit(B2CL_ABOVE_PAISE))),
        )
        .then(lit("B2CL"))
        .otherwise(lit("B2CS"))
        .alias("gstr1_table");
    let b2c = sales
        .clone()
        .lazy()
        .left_join(invoice_values, col("invoice_number"), col("invoice_number"))
        .with_columns([table, col("place_of_supply").fill_null(lit("unknown"))])
        .group_by([
            col("gstr1_table"),
            col("place_of_supply"),
            col("gst_rate_bps"),
            col("currency"),
        ])
        .agg(sums())
        .sort(
            ["gstr1_table", "place_of_supply", "gst_rate_bps", "currency"],
            SortMultipleOptions::default(),
        )
        .collect()?;
    let mut by_hsn = vec![col("quantity").sum()];
    by_hsn.extend(sums());
    let hsn = sales
        .clone()
        .lazy()
        .with_column(col("hsn").fill_null(lit("")))
        .group_by([col("hsn"), col("gst_rate_bps"), col("currency")])
        .agg(by_hsn)
        .sort(
            ["hsn", "gst_rate_bps", "currency"],
            SortMultipleOptions::default(),
        )
        .collect()?;
    Ok((b2c, hsn))
}
