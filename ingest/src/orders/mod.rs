//! Placing an order: one write transaction validates the lines, checks the hyperlocal radius,
//! prices the order, reserves stock with an expiry and appends `order.placed` and
//! `inventory.stock_reserved` to the outbox. Either all of it commits or none of it does.

use model::api::ErrorCode;
use std::collections::BTreeSet;
use std::sync::Arc;

use model::calendar::IstDate;
use model::deliver::Deliverability;
use model::geo::Directory;
use model::payload::{OrderLine, OrderPlaced, StockReserved};
use model::{
    Currency, CustomerId, Event, MerchantId, Money, OrderId, Pincode, ProductId, SessionId,
    WarehouseId,
};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::domain::{
    FxRate, GstRates, LineInput, OrderStatus, OrderTotals, PricingError, RadiusError, check_radius,
    price_order,
};
use crate::outbox;

mod rows;
use crate::store::{Backend, Store, StoreError};

/// What the core needs besides the request to place an order.
#[derive(Debug, Clone)]
pub struct OrderRules {
    /// How long placed orders hold their stock waiting for payment.
    pub reservation_hold_ms: i64,
    pub gst: GstRates,
    /// Recorded exchange rates into order currencies.
    pub fx_rates: Vec<FxRate>,
    pub pincodes: Arc<Directory>,
    /// The serviceability model the storefront's promises come from (injected by the binary):
    /// each order records the day it was promised, so shipments carry it and accuracy is
    /// measurable. Without one, orders record no promise.
    pub promises: Option<Arc<dyn Deliverability>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct PlaceOrder {
    pub merchant_id: MerchantId,
    pub customer_id: CustomerId,
    pub session_id: Option<SessionId>,
    pub delivery_pincode: Pincode,
    pub currency: Currency,
    #[schema(min_items = 1, max_items = 2000)]
    pub lines: Vec<RequestedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct RequestedLine {
    pub product_id: ProductId,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlacedOrder {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub totals: OrderTotals,
    pub placed_at: i64,
    pub reservation_expires_at: i64,
    /// The day (IST) the whole order was promised to arrive, from the serviceability model:
    /// the latest of its lines' earliest days. `null` when no promise could be made.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "2026-12-08")]
    pub deliver_by: Option<IstDate>,
}

/// An `Idempotency-Key` and the request it first came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Who may reuse the key (an API key or merchant): keys of different callers never meet.
    pub scope: String,
    pub key: String,
    /// A digest of the request body; the same key with another body is a conflict.
    pub request_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("merchant {0} does not exist")]
    UnknownMerchant(MerchantId),
    #[error("line {line}: product {product_id} does not exist")]
    UnknownProduct { line: usize, product_id: ProductId },
    #[error("line {line}: product {product_id} is no longer sold")]
    ProductInactive { line: usize, product_id: ProductId },
    #[error(
        "line {line}: product {product_id} appears twice; give it once with the total quantity"
    )]
    DuplicateProduct { line: usize, product_id: ProductId },
    #[error("line {line}: product {product_id}: only {available} available, {requested} requested")]
    OutOfStock {
        line: usize,
        product_id: ProductId,
        available: i64,
        requested: u32,
    },
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Radius(#[from] RadiusError),
    #[error("Idempotency-Key {0:?} was already used with a different request")]
    IdempotencyConflict(String),
    #[error("an order has at most {max} lines; this one has {lines}", max = model::limits::ORDER_LINES)]
    TooManyLines { lines: usize },
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        OrderError::Store(StoreError::Database(error))
    }
}

impl OrderError {
    /// The stable machine code an HTTP shell answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            OrderError::Store(_) => ErrorCode::Internal,
            OrderError::UnknownMerchant(_) => ErrorCode::UnknownMerchant,
            OrderError::UnknownProduct { .. } => ErrorCode::UnknownProduct,
            OrderError::ProductInactive { .. } => ErrorCode::ProductInactive,
            OrderError::DuplicateProduct { .. } => ErrorCode::DuplicateProduct,
            OrderError::OutOfStock { .. } => ErrorCode::OutOfStock,
            OrderError::Pricing(_) | OrderError::TooManyLines { .. } => ErrorCode::InvalidOrder,
            OrderError::Radius(RadiusError::OutOfRadius { .. }) => ErrorCode::OutsideDeliveryRadius,
            OrderError::Radius(RadiusError::UnknownPincode(_)) => ErrorCode::UnknownPincode,
            OrderError::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
        }
    }
}

/// What the catalog says about one ordered product, read before the write lock.
struct CatalogLine {
    category: String,
    unit_price: Money,
    warehouse_id: String,
}

/// Everything an order writes, worked out before the write lock is taken: inside it only
/// the writes run, a handful of statements whatever the number of lines.
struct Plan {
    catalog: Vec<CatalogLine>,
    answer: PlacedOrder,
    outbox: Vec<outbox::Row>,
}

/// Places `request` at `now` (UTC ms). With `idempotency`, a repeat of the same request
/// returns the first answer and changes nothing.
pub async fn place_order(
    store: &Store,
    rules: &OrderRules,
    request: &PlaceOrder,
    idempotency: Option<&Idempotency>,
    now: i64,
) -> Result<PlacedOrder, OrderError> {
    match place_once(store, rules, request, idempotency, now).await {
        // Two first uses of one key raced and the other committed first: this attempt rolled
        // back, and the second one finds the remembered answer (or a conflict).
        Err(error) if idempotency.is_some() && is_unique_violation(&error) => {
            place_once(store, rules, request, idempotency, now).await
        }
        outcome => outcome,
    }
}

fn is_unique_violation(error: &OrderError) -> bool {
    matches!(
        error,
        OrderError::Store(StoreError::Database(sqlx::Error::Database(db))) if db.is_unique_violation()
    )
}

/// The writer is the bottleneck (on SQLite there is one), so the reads and the pricing run
/// first on a read connection, beside other orders' writes. The write then reserves stock only
/// while each product is still as it was read (same owner, active, price, category and
/// warehouse); if one is not, or stock ran out, the order is worked out again under the write
/// lock, where what it reads is final.
async fn place_once(
    store: &Store,
    rules: &OrderRules,
    request: &PlaceOrder,
    idempotency: Option<&Idempotency>,
    now: i64,
) -> Result<PlacedOrder, OrderError> {
    if request.lines.len() > model::limits::ORDER_LINES {
        return Err(OrderError::TooManyLines {
            lines: request.lines.len(),
        });
    }
    if let Some(idem) = idempotency
        && let Some(previous) = remembered_answer(store.pool(), idem).await?
    {
        return Ok(previous);
    }
    let planned = {
        let mut read = store.pool().acquire().await?;
        plan(&mut read, rules, request, now, None).await?
    };
    let (backend, request_owned, idempotency_owned) =
        (store.backend(), request.clone(), idempotency.cloned());
    let written = store
        .write_grouped(move |tx| {
            Box::pin(async move {
                let (request, idempotency) = (&request_owned, idempotency_owned.as_ref());
                match write(tx, backend, request, &planned, idempotency, now).await {
                    Ok(Ok(())) => Ok(planned.answer),
                    Ok(Err(_)) => Err(Unwritten::Stale),
                    Err(error) => Err(Unwritten::Failed(error)),
                }
            })
        })
        .await;
    match written {
        Ok(answer) => return Ok(answer),
        Err(Unwritten::Failed(error)) => return Err(error),
        Err(Unwritten::Stale) => {}
    }

    let mut tx = store.write().await?;
    let planned = plan(&mut tx, rules, request, now, Some(store.backend())).await?;
    match write(
        &mut tx,
        store.backend(),
        request,
        &planned,
        idempotency,
        now,
    )
    .await?
    {
        Ok(()) => {
            tx.commit().await?;
            Ok(planned.answer)
        }
        // Read under the lock, the product is as planned: the stock is what is missing.
        Err(line) => Err(out_of_stock(&mut tx, request, line).await?),
    }
}

/// Reads the merchant and the products, checks the radius, prices the order and encodes its
/// events. Writes nothing. `locked` inside a write transaction: the products read stay as read
/// until it ends (PostgreSQL share-locks their rows; SQLite's one writer holds everything).
async fn plan(
    conn: &mut sqlx::AnyConnection,
    rules: &OrderRules,
    request: &PlaceOrder,
    now: i64,
    locked: Option<Backend>,
) -> Result<Plan, OrderError> {
    let merchant =
        sqlx::query("SELECT store_pincode, radius_km FROM merchants WHERE merchant_id = $1")
            .bind(request.merchant_id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| OrderError::UnknownMerchant(request.merchant_id.clone()))?;
    let store_pincode: Option<i64> = merchant.try_get(0)?;
    let radius_km: Option<f64> = merchant.try_get(1)?;
    if let (Some(store_pincode), Some(radius_km)) = (store_pincode, radius_km) {
        let store_pincode = u32::try_from(store_pincode)
            .ok()
            .and_then(Pincode::from_number)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("merchant store pincode {store_pincode}"))
            })?;
        check_radius(
            &rules.pincodes,
            store_pincode,
            request.delivery_pincode,
            radius_km,
        )?;
    }

    let mut seen = BTreeSet::new();
    for (line, requested) in request.lines.iter().enumerate() {
        if !seen.insert(&requested.product_id) {
            return Err(OrderError::DuplicateProduct {
                line,
                product_id: requested.product_id.clone(),
            });
        }
    }
    let catalog = catalog_lines(&mut *conn, locked, request).await?;
    let inputs: Vec<LineInput<'_>> = catalog
        .iter()
        .zip(&request.lines)
        .map(|(found, requested)| LineInput {
            category: &found.category,
            unit_price: found.unit_price,
            quantity: requested.quantity,
        })
        .collect();
    let fx = rules
        .fx_rates
        .iter()
        .find(|rate| {
            rate.to == request.currency && inputs.iter().any(|l| l.unit_price.currency == rate.from)
        })
        .copied();
    let totals = price_order(&inputs, request.currency, &rules.gst, fx)?;

    let order_id = OrderId::new(format!("o-{}", uuid::Uuid::now_v7().simple()));
    let expires_at = crate::domain::stock::reservation_expiry(now, rules.reservation_hold_ms);
    let lines = totals
        .lines
        .iter()
        .zip(&request.lines)
        .map(|(priced, requested)| OrderLine {
            product_id: requested.product_id.clone(),
            quantity: requested.quantity,
            unit_price: priced.unit_price,
            gst_bps: Some(priced.gst_bps),
        })
        .collect();
    let placed = Event::OrderPlaced(OrderPlaced {
        order_id: order_id.clone(),
        customer_id: request.customer_id.clone(),
        session_id: request.session_id.clone(),
        lines,
        delivery_pincode: request.delivery_pincode,
        total: totals.total,
    });
    let mut events = vec![outbox::encode(&request.merchant_id, now, placed)?];
    for (found, requested) in catalog.iter().zip(&request.lines) {
        let reserved = Event::StockReserved(StockReserved {
            product_id: requested.product_id.clone(),
            warehouse_id: WarehouseId::new(found.warehouse_id.clone()),
            order_id: order_id.clone(),
            quantity: requested.quantity,
            expires_at,
        });
        events.push(outbox::encode(&request.merchant_id, now, reserved)?);
    }
    Ok(Plan {
        catalog,
        answer: PlacedOrder {
            order_id,
            status: OrderStatus::Placed,
            totals,
            placed_at: now,
            reservation_expires_at: expires_at,
            deliver_by: rules
                .promises
                .as_deref()
                .and_then(|promises| promised_day(promises, request, now)),
        },
        outbox: events,
    })
}

/// Writes a planned order inside `tx`: `Ok(Err(line))` when that line could not be reserved
/// (out of stock, or its product changed since the plan); the caller rolls back.
async fn write(
    tx: &mut Tx,
    backend: Backend,
    request: &PlaceOrder,
    plan: &Plan,
    idempotency: Option<&Idempotency>,
    now: i64,
) -> Result<Result<(), usize>, OrderError> {
    // Reserve in product-id order, so concurrent orders on PostgreSQL lock rows in one order
    // and cannot deadlock each other.
    let mut by_product: Vec<usize> = (0..request.lines.len()).collect();
    by_product.sort_by(|&a, &b| {
        request.lines[a]
            .product_id
            .cmp(&request.lines[b].product_id)
    });
    let response = idempotency
        .map(|_| rows::response(&plan.answer))
        .transpose()?;
    let remembered = idempotency.zip(response.as_deref());
    if backend == Backend::Sqlite
        && let Some((idem, response)) = remembered
    {
        // First, so a second first use of the key fails before anything else is done.
        let sql = rows::remembered_answer(1).sql();
        rows::bind_remembered_answer(sqlx::query(&sql), idem, response, now)
            .execute(&mut **tx)
            .await?;
    }
    for line in by_product {
        if !reserve(tx, backend, request, line, &plan.catalog[line]).await? {
            return Ok(Err(line));
        }
    }
    match backend {
        Backend::Sqlite => {
            let sql = rows::order(1).sql();
            rows::bind_order(sqlx::query(&sql), request, &plan.answer, now)?
                .execute(&mut **tx)
                .await?;
            let sql = rows::lines(1, plan.answer.totals.lines.len()).sql();
            rows::bind_lines(sqlx::query(&sql), request, &plan.answer)
                .execute(&mut **tx)
                .await?;
            outbox::insert(tx, &plan.outbox).await?;
        }
        // The remembered answer, the order, its lines and its events in one statement: each
        // statement is a round trip to the server, during which the stock rows reserved above
        // stay locked, and at 1,000 orders/s on 2 cores a wait for the CPU on both ends
        // (BENCHMARKS.md). A concurrent first use of the same key waits at its insert and
        // fails once the other commits; `place_order` then answers the remembered order. The
        // lines' foreign key is checked at the statement's end, with the order row in.
        Backend::Postgres => {
            let mut parts = Vec::new();
            let mut next = 1;
            if remembered.is_some() {
                let remembered = rows::remembered_answer(next);
                next += remembered.parameters;
                parts.push(format!("remembered AS ({})", remembered.sql()));
            }
            let order = rows::order(next);
            next += order.parameters;
            parts.push(format!("placed AS ({})", order.sql()));
            let lines = rows::lines(next, plan.answer.totals.lines.len());
            next += lines.parameters;
            parts.push(format!("placed_lines AS ({})", lines.sql()));
            let sql = format!(
                "WITH {} {}",
                parts.join(", "),
                outbox::insert_rows(next, plan.outbox.len()).sql()
            );
            let mut statement = sqlx::query(&sql);
            if let Some((idem, response)) = remembered {
                statement = rows::bind_remembered_answer(statement, idem, response, now);
            }
            statement = rows::bind_order(statement, request, &plan.answer, now)?;
            statement = rows::bind_lines(statement, request, &plan.answer);
            outbox::bind(statement, &plan.outbox)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(Ok(()))
}

use crate::store::Tx;

/// Why a planned order's write section wrote nothing.
enum Unwritten {
    Failed(OrderError),
    /// A line could not be reserved as planned: out of stock, or its product changed.
    Stale,
}

impl From<StoreError> for Unwritten {
    fn from(error: StoreError) -> Self {
        Unwritten::Failed(error.into())
    }
}

async fn remembered_answer(
    pool: &sqlx::AnyPool,
    idem: &Idempotency,
) -> Result<Option<PlacedOrder>, OrderError> {
    let Some(row) = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(idem.scope.as_str())
    .bind(idem.key.as_str())
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let request_hash: String = row.try_get(0)?;
    if request_hash != idem.request_hash {
        return Err(OrderError::IdempotencyConflict(idem.key.clone()));
    }
    let response: String = row.try_get(1)?;
    let answer = serde_json::from_str(&response)
        .map_err(|e| StoreError::Corrupt(format!("idempotency answer for {:?}: {e}", idem.key)))?;
    Ok(Some(answer))
}

/// What the catalog says about every line's product, in one query whatever the number of
/// lines (a round trip each would add up under load).
async fn catalog_lines(
    conn: &mut sqlx::AnyConnection,
    locked: Option<Backend>,
    request: &PlaceOrder,
) -> Result<Vec<CatalogLine>, OrderError> {
    let sql = format!(
        "SELECT p.product_id, p.merchant_id, p.active, p.category, p.price_minor, p.currency,
           s.warehouse_id
         FROM products p JOIN stock s ON s.product_id = p.product_id
         WHERE p.product_id IN ({}) ORDER BY p.product_id{}",
        (1..=request.lines.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", "),
        match locked {
            Some(Backend::Postgres) => " FOR SHARE OF p",
            Some(Backend::Sqlite) | None => "",
        }
    );
    let mut query = sqlx::query(&sql);
    for requested in &request.lines {
        query = query.bind(requested.product_id.as_str());
    }
    let mut found: std::collections::HashMap<String, sqlx::any::AnyRow> = query
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, row)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut catalog = Vec::with_capacity(request.lines.len());
    for (line, requested) in request.lines.iter().enumerate() {
        let unknown = || OrderError::UnknownProduct {
            line,
            product_id: requested.product_id.clone(),
        };
        let row = found
            .remove(requested.product_id.as_str())
            .ok_or_else(unknown)?;
        let owner: String = row.try_get(1)?;
        if owner != request.merchant_id.as_str() {
            // Said as of a product that does not exist: whose it is, is not the caller's
            // business.
            return Err(unknown());
        }
        if row.try_get::<i64, _>(2)? == 0 {
            return Err(OrderError::ProductInactive {
                line,
                product_id: requested.product_id.clone(),
            });
        }
        let currency: String = row.try_get(5)?;
        let currency = Currency::parse(&currency)
            .ok_or_else(|| StoreError::Corrupt(format!("product currency {currency:?}")))?;
        catalog.push(CatalogLine {
            category: row.try_get(3)?,
            unit_price: Money::new(row.try_get(4)?, currency),
            warehouse_id: row.try_get(6)?,
        });
    }
    Ok(catalog)
}

/// Takes the line's quantity out of what is available in one conditional update, so two
/// buyers of the last unit cannot both get it on either database, and only while the product
/// is still the one `found` describes. `false`: nothing was reserved.
async fn reserve(
    tx: &mut Tx,
    backend: Backend,
    request: &PlaceOrder,
    line: usize,
    found: &CatalogLine,
) -> Result<bool, OrderError> {
    let requested = &request.lines[line];
    // On PostgreSQL the product row is share-locked until commit: a reprice committing
    // between this statement and the order's commit would otherwise leave the order priced
    // as of before a change its commit follows. SQLite's one writer rules that out.
    let sql = format!(
        "UPDATE stock SET reserved = reserved + $1
         WHERE product_id = $2 AND warehouse_id = $3 AND on_hand - reserved >= $1
           AND EXISTS (SELECT 1 FROM products p WHERE p.product_id = $2 AND p.merchant_id = $4
                       AND p.active = 1 AND p.category = $5 AND p.price_minor = $6
                       AND p.currency = $7{})",
        match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    );
    let updated = sqlx::query(&sql)
        .bind(i64::from(requested.quantity))
        .bind(requested.product_id.as_str())
        .bind(found.warehouse_id.as_str())
        .bind(request.merchant_id.as_str())
        .bind(found.category.as_str())
        .bind(found.unit_price.amount_minor)
        .bind(found.unit_price.currency.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(updated == 1)
}

async fn out_of_stock(
    tx: &mut Tx,
    request: &PlaceOrder,
    line: usize,
) -> Result<OrderError, OrderError> {
    let requested = &request.lines[line];
    let available: i64 = sqlx::query("SELECT on_hand - reserved FROM stock WHERE product_id = $1")
        .bind(requested.product_id.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    Ok(OrderError::OutOfStock {
        line,
        product_id: requested.product_id.clone(),
        available,
        requested: requested.quantity,
    })
}

/// The day every line of `request` can arrive by: the latest of their earliest days. `None`
/// when a line cannot be promised (the core's own stock check, not the model's view of it,
/// decides whether the order is taken).
fn promised_day(promises: &dyn Deliverability, request: &PlaceOrder, now: i64) -> Option<IstDate> {
    let mut latest: Option<IstDate> = None;
    for line in &request.lines {
        let day = promises
            .deliver_by(
                &line.product_id,
                line.quantity,
                request.delivery_pincode,
                now,
            )
            .ok()?;
        latest = Some(latest.map_or(day, |latest| latest.max(day)));
    }
    latest
}

/// The end of `day` (IST) in UTC ms: what a shipment is promised by.
pub(crate) fn end_of_day(day: IstDate) -> i64 {
    day.plus_days(1).start_utc_ms() - 1
}
