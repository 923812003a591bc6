//! Replays the UCI Online Retail data set through the orders core's own write paths: each
//! invoice becomes an order placed and paid at its invoice time, each cancellation line a
//! refund on the customer's latest earlier order of that product. Every change writes its
//! outbox events as it would through the API, so the relay publishes them.
//!
//! Bad lines are reported with their line numbers and skipped; the rest of their invoice is
//! still imported. A second run over the same file changes nothing: invoices are placed with
//! their number as the idempotency key and refunds are recognised by their reason.

pub mod online_retail;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use model::{Currency, CustomerId, MerchantId, Money, OrderId, Pincode, ProductId, WarehouseId};
use sha2::Digest as _;
use sqlx::Row as _;

use crate::catalog::{self, CatalogError, Merchant, Product};
use crate::domain::CancellationPolicy;
use crate::lifecycle::{self, LifecycleError, PaymentOutcome, Scope};
use crate::orders::{self, Idempotency, OrderError, OrderRules, PlaceOrder, RequestedLine};
use crate::store::{Store, StoreError};
use online_retail::{LineProblem, MALFORMED, RetailLine};

/// Who the replayed orders belong to.
#[derive(Debug, Clone)]
pub struct ImportTarget {
    pub merchant_id: MerchantId,
    pub merchant_name: String,
    pub warehouse_id: WarehouseId,
    pub category: String,
    pub currency: Currency,
}

impl Default for ImportTarget {
    fn default() -> Self {
        Self {
            merchant_id: MerchantId::new("uci-online-retail"),
            merchant_name: "UCI Online Retail (UK giftware)".to_owned(),
            warehouse_id: WarehouseId::new("wh-uk-1"),
            category: "giftware".to_owned(),
            currency: Currency::GBP,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Data lines read (the header not counted).
    pub lines: u64,
    pub invoices: u64,
    pub orders_placed: u64,
    /// Invoices a previous run already placed.
    pub orders_already_imported: u64,
    pub order_lines: u64,
    pub refunds: u64,
    pub refunds_already_imported: u64,
    /// Every line not imported, in file order, with why.
    pub skipped: Vec<LineProblem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line 1: expected the header {expected:?}, found {found:?}")]
    Header { expected: String, found: String },
    #[error("reading the file: {0}")]
    Read(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("invoice {invoice} (line {line}): {source}")]
    Order {
        invoice: String,
        line: u64,
        source: OrderError,
    },
    #[error("invoice {invoice} (line {line}): {source}")]
    Lifecycle {
        invoice: String,
        line: u64,
        source: LifecycleError,
    },
}

/// A line of a cancellation with no earlier order of that product by that customer.
pub const NO_MATCHING_ORDER: &str = "no_matching_order";
/// A cancellation whose order has nothing captured left to refund.
pub const NOTHING_LEFT_TO_REFUND: &str = "nothing_left_to_refund";

const IDEMPOTENCY_SCOPE: &str = "import:online-retail";
const PROVIDER: &str = "uci-import";

/// Reads the whole file, reporting unreadable lines; returns the typed lines in file order.
pub fn read_lines(input: impl Read, report: &mut Report) -> Result<Vec<RetailLine>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut lines = Vec::new();
    let mut header_seen = false;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                if let csv::ErrorKind::Io(_) = error.kind() {
                    return Err(ImportError::Read(error.to_string()));
                }
                report
                    .skipped
                    .push(LineProblem::new(line, MALFORMED, error.to_string()));
                continue;
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
        if !header_seen {
            header_seen = true;
            let found = fields.unwrap_or_default();
            let found: Vec<&str> = found
                .iter()
                .map(|f| f.trim_start_matches('\u{feff}'))
                .collect();
            if found != online_retail::HEADER {
                return Err(ImportError::Header {
                    expected: online_retail::HEADER.join(","),
                    found: found.join(","),
                });
            }
            continue;
        }
        report.lines += 1;
        let parsed = match fields {
            Ok(fields) => online_retail::parse_line(line, &fields),
            Err(error) => Err(LineProblem::new(
                line,
                MALFORMED,
                format!("not UTF-8: {error}"),
            )),
        };
        match parsed {
            Ok(parsed) => lines.push(parsed),
            Err(problem) => report.skipped.push(problem),
        }
    }
    if !header_seen {
        return Err(ImportError::Header {
            expected: online_retail::HEADER.join(","),
            found: String::new(),
        });
    }
    Ok(lines)
}

/// Groups lines by invoice, in the order invoices first appear.
pub fn invoices(lines: Vec<RetailLine>) -> Vec<Vec<RetailLine>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut grouped: Vec<Vec<RetailLine>> = Vec::new();
    for line in lines {
        match index.get(&line.invoice) {
            Some(&at) => grouped[at].push(line),
            None => {
                index.insert(line.invoice.clone(), grouped.len());
                grouped.push(vec![line]);
            }
        }
    }
    grouped
}

/// Replays `input` into `store`. `progress` hears (invoices done, invoices in the file).
pub async fn import(
    store: &Store,
    rules: &OrderRules,
    target: &ImportTarget,
    input: impl Read,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, ImportError> {
    // The file's prices include UK VAT already: the import's category adds no GST.
    let mut rules = rules.clone();
    rules.gst.by_category.insert(target.category.clone(), 0);
    let rules = &rules;
    let mut report = Report::default();
    let lines = read_lines(input, &mut report)?;
    let invoices = invoices(lines);
    report.invoices = invoices.len() as u64;
    let first_time = invoices
        .first()
        .and_then(|lines| lines.first())
        .map_or(0, |line| line.invoiced_at);
    catalog::upsert_merchant(
        store,
        &Merchant {
            merchant_id: target.merchant_id.clone(),
            name: target.merchant_name.clone(),
            hyperlocal: None,
            cancellation_policy: CancellationPolicy::default(),
        },
        first_time,
    )
    .await?;
    let mut replay = Replay {
        store,
        rules,
        target,
        prices: HashMap::new(),
        pincodes: model::geo::places()
            .into_iter()
            .filter(|place| place.delivery)
            .map(|place| place.pincode)
            .collect(),
        report,
    };
    let total = invoices.len() as u64;
    for (done, invoice) in invoices.iter().enumerate() {
        if invoice[0].cancellation {
            replay.cancellation(invoice).await?;
        } else {
            replay.sale(invoice).await?;
        }
        progress(done as u64 + 1, total);
    }
    let mut report = replay.report;
    report.skipped.sort_by_key(|problem| problem.line);
    Ok(report)
}

struct Replay<'a> {
    store: &'a Store,
    rules: &'a OrderRules,
    target: &'a ImportTarget,
    /// Each product's catalog price as last upserted by this run.
    prices: HashMap<String, i64>,
    pincodes: Vec<Pincode>,
    report: Report,
}

impl Replay<'_> {
    async fn sale(&mut self, lines: &[RetailLine]) -> Result<(), ImportError> {
        let first = &lines[0];
        let fail = |source| ImportError::Order {
            invoice: first.invoice.clone(),
            line: first.line,
            source,
        };
        let idempotency = Idempotency {
            scope: IDEMPOTENCY_SCOPE.to_owned(),
            key: first.invoice.clone(),
            request_hash: request_hash(lines),
        };
        if self.already_placed(&idempotency).await? {
            self.report.orders_already_imported += 1;
            return Ok(());
        }
        // One order line per product: the file repeats a product within an invoice.
        let mut quantities: BTreeMap<&str, u32> = BTreeMap::new();
        for line in lines {
            self.ensure_product(line).await?;
            *quantities.entry(&line.stock_code).or_default() += line.quantity;
        }
        for (stock_code, quantity) in &quantities {
            self.ensure_stock(stock_code, *quantity, first.invoiced_at)
                .await?;
        }
        let customer = customer_of(first);
        let request = PlaceOrder {
            merchant_id: self.target.merchant_id.clone(),
            delivery_pincode: self.pincode_of(&customer),
            customer_id: customer,
            session_id: None,
            currency: self.target.currency,
            lines: quantities
                .iter()
                .map(|(stock_code, quantity)| RequestedLine {
                    product_id: ProductId::new(*stock_code),
                    quantity: *quantity,
                })
                .collect(),
        };
        let placed = orders::place_order(
            self.store,
            self.rules,
            &request,
            Some(&idempotency),
            first.invoiced_at,
        )
        .await
        .map_err(fail)?;
        let outcome = PaymentOutcome::Captured {
            payment_id: model::PaymentId::new(format!("pay-uci-{}", first.invoice)),
            provider: PROVIDER.to_owned(),
            amount: placed.totals.total,
        };
        lifecycle::record_payment(
            self.store,
            &placed.order_id,
            &Scope::Any,
            &outcome,
            first.invoiced_at,
        )
        .await
        .map_err(|source| ImportError::Lifecycle {
            invoice: first.invoice.clone(),
            line: first.line,
            source,
        })?;
        self.report.orders_placed += 1;
        self.report.order_lines += lines.len() as u64;
        Ok(())
    }

    async fn cancellation(&mut self, lines: &[RetailLine]) -> Result<(), ImportError> {
        for line in lines {
            let reason = format!("UCI cancellation {} line {}", line.invoice, line.line);
            let Some(order_id) = self.matching_order(line).await? else {
                self.report.skipped.push(LineProblem::new(
                    line.line,
                    NO_MATCHING_ORDER,
                    format!(
                        "cancellation {} of {}: no earlier order of it by this customer in the store",
                        line.invoice, line.stock_code
                    ),
                ));
                continue;
            };
            let refunded: i64 =
                sqlx::query("SELECT COUNT(*) FROM refunds WHERE order_id = $1 AND reason = $2")
                    .bind(order_id.as_str().to_owned())
                    .bind(reason.clone())
                    .fetch_one(self.store.pool())
                    .await
                    .map_err(StoreError::from)?
                    .try_get(0)
                    .map_err(StoreError::from)?;
            if refunded > 0 {
                self.report.refunds_already_imported += 1;
                continue;
            }
            let lifecycle_error = |source| ImportError::Lifecycle {
                invoice: line.invoice.clone(),
                line: line.line,
                source,
            };
            let order = lifecycle::view_order(self.store, &order_id, &Scope::Any)
                .await
                .map_err(lifecycle_error)?;
            let left = order.captured.amount_minor - order.refunded.amount_minor;
            let wanted = line.unit_price_minor * i64::from(line.quantity);
            let amount = wanted.min(left);
            if amount <= 0 {
                self.report.skipped.push(LineProblem::new(
                    line.line,
                    NOTHING_LEFT_TO_REFUND,
                    format!("order {order_id} has no captured money left to refund"),
                ));
                continue;
            }
            lifecycle::refund(
                self.store,
                &order_id,
                &Scope::Any,
                Money::new(amount, order.captured.currency),
                &reason,
                line.invoiced_at,
            )
            .await
            .map_err(lifecycle_error)?;
            self.report.refunds += 1;
        }
        Ok(())
    }

    async fn already_placed(&self, idempotency: &Idempotency) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2")
                .bind(idempotency.scope.clone())
                .bind(idempotency.key.clone())
                .fetch_optional(self.store.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Lists the product, or re-prices it when this invoice sold it at another price.
    async fn ensure_product(&mut self, line: &RetailLine) -> Result<(), ImportError> {
        if self.prices.get(&line.stock_code) == Some(&line.unit_price_minor) {
            return Ok(());
        }
        let listing = model::payload::ProductUpserted {
            product_id: ProductId::new(line.stock_code.clone()),
            category: self.target.category.clone(),
            brand: self.target.merchant_name.clone(),
            title: title_case(&line.description, &line.stock_code),
            description: line.description.clone(),
            attributes: BTreeMap::new(),
            price: Money::new(line.unit_price_minor, self.target.currency),
        };
        let product = Product {
            merchant_id: self.target.merchant_id.clone(),
            listing,
        };
        catalog::upsert_product(
            self.store,
            &product,
            &self.target.warehouse_id,
            line.invoiced_at,
        )
        .await?;
        self.prices
            .insert(line.stock_code.clone(), line.unit_price_minor);
        Ok(())
    }

    /// Receives exactly the units the order needs when stock runs short: the file records
    /// sales, not the warehouse's receipts.
    async fn ensure_stock(
        &self,
        stock_code: &str,
        quantity: u32,
        at: i64,
    ) -> Result<(), ImportError> {
        let product_id = ProductId::new(stock_code);
        let available = catalog::stock_level(self.store, &product_id)
            .await?
            .available();
        let short = i64::from(quantity) - available;
        if short > 0 {
            catalog::adjust_stock(
                self.store,
                &self.target.merchant_id,
                &product_id,
                short,
                "receipt (import)",
                at,
            )
            .await?;
        }
        Ok(())
    }

    /// The customer's latest order of the line's product placed before it.
    async fn matching_order(&self, line: &RetailLine) -> Result<Option<OrderId>, StoreError> {
        if line.customer.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT o.order_id FROM orders o
             JOIN order_lines l ON l.order_id = o.order_id
             WHERE o.merchant_id = $1 AND o.customer_id = $2 AND l.product_id = $3
               AND o.placed_at <= $4
             ORDER BY o.placed_at DESC, o.order_id DESC LIMIT 1",
        )
        .bind(self.target.merchant_id.as_str().to_owned())
        .bind(customer_of(line).as_str().to_owned())
        .bind(line.stock_code.clone())
        .bind(line.invoiced_at)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|row| row.try_get::<String, _>(0).map(OrderId::new))
            .transpose()
            .map_err(StoreError::from)
    }

    /// The file's customers live in Europe; the core serves Indian pincodes, so each customer
    /// gets a fixed delivering pincode chosen by a hash of their id.
    fn pincode_of(&self, customer: &CustomerId) -> Pincode {
        let digest = sha2::Sha256::digest(customer.as_str().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let at = u64::from_be_bytes(first) % self.pincodes.len().max(1) as u64;
        self.pincodes
            .get(at as usize)
            .copied()
            .or_else(|| Pincode::parse("110001"))
            .unwrap_or_else(|| unreachable!("110001 is a pincode"))
    }
}

fn customer_of(line: &RetailLine) -> CustomerId {
    match &line.customer {
        Some(id) => CustomerId::new(format!("uci-{id}")),
        // Guest checkouts: each invoice is its own customer.
        None => CustomerId::new(format!("uci-guest-{}", line.invoice)),
    }
}

/// The invoice's content, so a different file reusing an invoice number is a conflict.
fn request_hash(lines: &[RetailLine]) -> String {
    let mut hasher = sha2::Sha256::new();
    for line in lines {
        hasher.update(format!(
            "{}|{}|{}|{}|{:?}\n",
            line.stock_code, line.quantity, line.unit_price_minor, line.invoiced_at, line.customer
        ));
    }
    format!("{:x}", hasher.finalize())
}

/// `WHITE HANGING HEART T-LIGHT HOLDER` -> `White Hanging Heart T-Light Holder`; an empty
/// description falls back to the stock code.
fn title_case(description: &str, stock_code: &str) -> String {
    if description.trim().is_empty() {
        return format!("Item {stock_code}");
    }
    let mut title = String::with_capacity(description.len());
    let mut start = true;
    for c in description.trim().chars() {
        if c.is_alphanumeric() {
            if start {
                title.extend(c.to_uppercase());
            } else {
                title.extend(c.to_lowercase());
            }
            start = false;
        } else {
            title.push(c);
            start = true;
        }
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_read_like_titles() {
        assert_eq!(
            title_case("WHITE HANGING HEART T-LIGHT HOLDER", "85123A"),
            "White Hanging Heart T-Light Holder"
        );
        assert_eq!(title_case("  ", "22139"), "Item 22139");
    }

    #[test]
    fn quoted_fields_bad_lines_and_line_numbers() {
        let file = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
            536381,82567,\"AIRLINE LOUNGE,METAL SIGN\",2,12/1/10 9:41,2.1,15311,United Kingdom\n\
            536381,82568,broken,two,12/1/10 9:41,2.1,15311,United Kingdom\n\
            536477,22041,\"RECORD FRAME 7\"\" SINGLE SIZE \",48,12/1/10 12:27,2.1,16210,United Kingdom\n";
        let mut report = Report::default();
        let lines = read_lines(file.as_bytes(), &mut report).expect("readable");
        assert_eq!(report.lines, 3);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].description, "AIRLINE LOUNGE,METAL SIGN");
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[1].description, "RECORD FRAME 7\" SINGLE SIZE");
        assert_eq!(lines[1].line, 4);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].line, 3);
        assert_eq!(report.skipped[0].code, MALFORMED);
    }

    #[test]
    fn a_file_without_the_header_is_refused_whole() {
        let mut report = Report::default();
        let error = read_lines("a,b\n1,2\n".as_bytes(), &mut report).expect_err("no header");
        assert!(
            error.to_string().starts_with("line 1: expected the header"),
            "{error}"
        );
    }

    #[test]
    fn invoices_keep_first_appearance_order() {
        let line = |invoice: &str, n| RetailLine {
            line: n,
            invoice: invoice.to_owned(),
            cancellation: false,
            stock_code: "X".to_owned(),
            description: String::new(),
            quantity: 1,
            invoiced_at: 0,
            unit_price_minor: 1,
            customer: None,
            country: String::new(),
        };
        let grouped = invoices(vec![line("2", 2), line("1", 3), line("2", 4)]);
        let shape: Vec<Vec<u64>> = grouped
            .iter()
            .map(|lines| lines.iter().map(|l| l.line).collect())
            .collect();
        assert_eq!(shape, vec![vec![2, 4], vec![3]]);
    }
}
