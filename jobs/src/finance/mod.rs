//! The monthly finance export of one merchant: every sale, invoice, payment, refund and
//! delivery of an IST calendar month, with GST worked out, as sheets an accountant files
//! GSTR-1 from.
//!
//! [`export`] reads the lake (through [`crate::frames`]) and hands the frames to
//! [`sheets::build`], which is pure: frames in, sheets out. Amounts stay in minor units
//! (paise for INR) as Int64 all the way; the workbook shows them as currency.
//!
//! Invoices are the orders whose payment was captured (`order.confirmed`), dated by that
//! event, numbered `INV/2627/000001` consecutively per merchant and financial year in
//! confirmation order. The numbering is a pure function of the immutable event log, so an
//! invoice keeps its number in every later export.

pub mod gst;
mod reconcile;
mod sheets;

use std::collections::BTreeMap;

use model::Table;
use model::tax::GstRates;
use polars::prelude::DataFrame;
use runtime::lake::LakeFiles;
use serde::{Deserialize, Serialize};

use crate::JobError;
use crate::frames::read;
use crate::period::Period;

pub use sheets::build;

/// Settings of the finance export (`[jobs.finance]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinanceConfig {
    /// HSN code per product category. A category without one is exported with an empty
    /// code and listed in the reconciliation.
    pub hsn_by_category: BTreeMap<String, String>,
    /// GST rates for order lines that carry none (placed before the core recorded the rate
    /// on each line): the core's own rates, which the binary copies from `core.gst`.
    #[serde(skip)]
    pub gst: GstRates,
    /// Rupees per unit of each other currency (e.g. `GBP = 108.25`) for the INR columns. A
    /// currency without a rate leaves its INR cells empty and is listed in the reconciliation.
    pub inr_per_unit: BTreeMap<String, f64>,
    /// Registration of each merchant: legal name and GSTIN (whose first two digits are the
    /// state a supply is intra-state in).
    pub merchants: BTreeMap<String, MerchantIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantIdentity {
    pub legal_name: String,
    pub gstin: String,
}

impl Default for FinanceConfig {
    fn default() -> Self {
        // Four-digit HSN headings (what a B2C supplier under ₹5 crore turnover reports) for
        // the generator's categories; a deployment sets its own.
        let hsn_by_category = [
            ("apparel", "6109"),
            ("electronics", "8517"),
            ("grocery", "1006"),
            ("home", "9403"),
            ("beauty", "3304"),
            ("footwear", "6403"),
            ("books", "4901"),
            ("toys", "9503"),
        ]
        .into_iter()
        .map(|(category, code)| (category.to_owned(), code.to_owned()))
        .collect();
        FinanceConfig {
            hsn_by_category,
            gst: GstRates::default(),
            inr_per_unit: BTreeMap::new(),
            merchants: BTreeMap::new(),
        }
    }
}

impl FinanceConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (merchant, identity) in &self.merchants {
            gst::gstin_state(&identity.gstin)
                .map_err(|e| format!("jobs.finance.merchants.{merchant}: {e}"))?;
        }
        for (currency, rate) in &self.inr_per_unit {
            if model::Currency::parse(currency).is_none() || !(rate.is_finite() && *rate > 0.0) {
                return Err(format!(
                    "jobs.finance.inr_per_unit.{currency}: needs a three-letter currency code and a positive rate"
                ));
            }
        }
        Ok(())
    }
}

/// How a column is shown in the workbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Count,
    /// Minor units of the row's own currency.
    Money,
    /// Minor units of INR.
    Inr,
    /// UTC ms, shown as the IST date.
    Date,
    /// UTC ms, shown as IST date and time.
    Time,
    /// Basis points, shown as a percentage.
    Rate,
}

/// One sheet: its rows, and how each column is shown.
#[derive(Debug, Clone)]
pub struct Sheet {
    pub name: &'static str,
    pub frame: DataFrame,
    pub kinds: Vec<Kind>,
}

impl Sheet {
    /// The Parquet twin's file name: `sales_lines.parquet`.
    pub fn file_stem(&self) -> String {
        self.name
            .to_ascii_lowercase()
            .replace(['(', ')'], "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("_")
    }
}

/// What the export is about; the summary sheet repeats it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub merchant: String,
    pub period: Period,
    pub identity: Option<MerchantIdentity>,
    /// When the lake was read, UTC ms.
    pub read_at: i64,
}

/// How long after a month ends its events are taken to be in the lake (the relay publishes
/// within seconds, the sink commits every few): before that an export is provisional.
pub const SETTLE_MS: i64 = 3_600_000;

impl Subject {
    /// Whether the month may still change: it is not over, or ended less than
    /// [`SETTLE_MS`] before the lake was read. Invoice numbers are final only after that.
    pub fn provisional(&self) -> bool {
        self.read_at < self.period.end_ms() + SETTLE_MS
    }
}

#[derive(Debug, Clone)]
pub struct Export {
    pub subject: Subject,
    pub sheets: Vec<Sheet>,
}

impl Export {
    pub fn sheet(&self, name: &str) -> Option<&Sheet> {
        self.sheets
            .iter()
            .find(|sheet| sheet.name == name || sheet.file_stem() == name)
    }
}

/// What the sheets are built from: the merchant's rows of each table, timestamps as UTC ms.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `order_lines` from just before the financial year began to the period's end.
    pub lines: DataFrame,
    /// `orders` over the same range.
    pub orders: DataFrame,
    /// `payments` in the period.
    pub payments: DataFrame,
    /// `refunds` in the period.
    pub refunds: DataFrame,
    /// `shipments` from the period's start to when the export runs.
    pub shipments: DataFrame,
    /// `catalog_history` up to when the export runs (titles are taken as of the period's end).
    pub catalog: DataFrame,
}

/// Orders are confirmed minutes after they are placed (the reservation hold); a week before
/// the financial year is ample for every line an invoice of the year can have.
const PLACED_BEFORE_CONFIRMED_MS: i64 = 7 * 86_400_000;

pub const LINE_COLUMNS: &[&str] = &[
    "order_id",
    "line_number",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price_minor",
    "unit_price_currency",
    "line_total_minor",
    "gst_bps",
];
pub const ORDER_COLUMNS: &[&str] = &[
    "event_type",
    "order_id",
    "payment_id",
    "delivery_pincode",
    "reason",
    "total_minor",
    "total_currency",
];
pub const PAYMENT_COLUMNS: &[&str] = &[
    "event_type",
    "payment_id",
    "order_id",
    "refund_id",
    "payout_id",
    "provider",
    "reason",
    "amount_minor",
    "amount_currency",
    "gross_minor",
    "refunds_minor",
    "fees_minor",
    "net_minor",
    "net_currency",
];
pub const REFUND_COLUMNS: &[&str] = &[
    "refund_id",
    "payment_id",
    "order_id",
    "amount_minor",
    "amount_currency",
];
pub const SHIPMENT_COLUMNS: &[&str] = &[
    "event_type",
    "shipment_id",
    "order_id",
    "courier_id",
    "destination_pincode",
    "promised_at",
];
pub const CATALOG_COLUMNS: &[&str] = &["event_type", "product_id", "title", "category"];

/// Reads what `subject`'s export needs from the lake.
pub async fn read_inputs(
    lake: &dyn LakeFiles,
    merchant: &str,
    period: Period,
    now: i64,
) -> Result<Inputs, JobError> {
    let (start, end) = (period.start_ms(), period.end_ms());
    let year_start = period.financial_year_start_ms() - PLACED_BEFORE_CONFIRMED_MS;
    Ok(Inputs {
        lines: read(
            lake,
            Table::OrderLines,
            LINE_COLUMNS,
            merchant,
            year_start,
            end,
        )
        .await?,
        orders: read(
            lake,
            Table::Orders,
            ORDER_COLUMNS,
            merchant,
            year_start,
            end,
        )
        .await?,
        payments: read(lake, Table::Payments, PAYMENT_COLUMNS, merchant, start, end).await?,
        refunds: read(lake, Table::Refunds, REFUND_COLUMNS, merchant, start, end).await?,
        shipments: read(
            lake,
            Table::Shipments,
            SHIPMENT_COLUMNS,
            merchant,
            start,
            now.max(end),
        )
        .await?,
        catalog: read(
            lake,
            Table::CatalogHistory,
            CATALOG_COLUMNS,
            merchant,
            0,
            now.max(end),
        )
        .await?,
    })
}

/// The export of `merchant` for `period`, as of `now`. A period that has not begun is
/// refused; the current month is exported as far as the lake has it.
pub async fn export(
    lake: &dyn LakeFiles,
    config: &FinanceConfig,
    merchant: &str,
    period: Period,
    now: i64,
) -> Result<Export, JobError> {
    if period.start_ms() > now {
        return Err(JobError::Invalid(format!(
            "period {period} has not begun; export a month up to the current one"
        )));
    }
    let inputs = read_inputs(lake, merchant, period, now).await?;
    if inputs.catalog.height() == 0 && inputs.orders.height() == 0 {
        return Err(JobError::UnknownMerchant(format!(
            "the lake has no product and no order of merchant {merchant:?} up to {period}"
        )));
    }
    let subject = Subject {
        merchant: merchant.to_owned(),
        period,
        identity: config.merchants.get(merchant).cloned(),
        read_at: now,
    };
    let config = config.clone();
    runtime::cpu::run(move || build(&inputs, &config, subject)).await?
}
