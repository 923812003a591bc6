//! Placing an order: one write transaction validates the lines, checks the hyperlocal radius,
//! prices the order, reserves stock with an expiry and appends `order.placed` and
//! `inventory.stock_reserved` to the outbox. Either all of it commits or none of it does.

use model::api::ErrorCode;
use std::collections::BTreeSet;
use std::sync::Arc;

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
use crate::store::{Store, StoreError};

/// What the core needs besides the request to place an order.
#[derive(Debug, Clone)]
pub struct OrderRules {
    /// How long placed orders hold their stock waiting for payment.
    pub reservation_hold_ms: i64,
    pub gst: GstRates,
    /// Recorded exchange rates into order currencies.
    pub fx_rates: Vec<FxRate>,
    pub pincodes: Arc<Directory>,
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
            OrderError::Pricing(_) => ErrorCode::InvalidOrder,
            OrderError::Radius(RadiusError::OutOfRadius { .. }) => ErrorCode::OutsideDeliveryRadius,
            OrderError::Radius(RadiusError::UnknownPincode(_)) => ErrorCode::UnknownPincode,
            OrderError::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
        }
    }
}

struct CatalogLine {
    category: String,
    unit_price: Money,
    warehouse_id: String,
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

async fn place_once(
    store: &Store,
    rules: &OrderRules,
    request: &PlaceOrder,
    idempotency: Option<&Idempotency>,
    now: i64,
) -> Result<PlacedOrder, OrderError> {
    let mut tx = store.write().await?;
    if let Some(idem) = idempotency
        && let Some(previous) = remembered_answer(&mut tx, idem).await?
    {
        return Ok(previous);
    }

    let merchant =
        sqlx::query("SELECT store_pincode, radius_km FROM merchants WHERE merchant_id = $1")
            .bind(request.merchant_id.as_str())
            .fetch_optional(&mut *tx)
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
    let mut catalog = Vec::with_capacity(request.lines.len());
    for (line, requested) in request.lines.iter().enumerate() {
        if !seen.insert(&requested.product_id) {
            return Err(OrderError::DuplicateProduct {
                line,
                product_id: requested.product_id.clone(),
            });
        }
        catalog.push(catalog_line(&mut tx, request, line, requested).await?);
    }
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

    // Reserve in product-id order, so concurrent orders on PostgreSQL lock rows in one order
    // and cannot deadlock each other.
    let mut by_product: Vec<(usize, &RequestedLine)> = request.lines.iter().enumerate().collect();
    by_product.sort_by(|a, b| a.1.product_id.cmp(&b.1.product_id));
    for (line, requested) in by_product {
        reserve(&mut tx, line, requested).await?;
    }

    let order_id = OrderId::new(format!("o-{}", uuid::Uuid::now_v7().simple()));
    let expires_at = crate::domain::stock::reservation_expiry(now, rules.reservation_hold_ms);
    insert_order(&mut tx, request, &order_id, &totals, now, expires_at).await?;

    let lines = totals
        .lines
        .iter()
        .zip(&request.lines)
        .map(|(priced, requested)| OrderLine {
            product_id: requested.product_id.clone(),
            quantity: requested.quantity,
            unit_price: priced.unit_price,
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
    outbox::append(&mut tx, &request.merchant_id, now, placed).await?;
    for (found, requested) in catalog.iter().zip(&request.lines) {
        let reserved = Event::StockReserved(StockReserved {
            product_id: requested.product_id.clone(),
            warehouse_id: WarehouseId::new(found.warehouse_id.clone()),
            order_id: order_id.clone(),
            quantity: requested.quantity,
            expires_at,
        });
        outbox::append(&mut tx, &request.merchant_id, now, reserved).await?;
    }

    let answer = PlacedOrder {
        order_id,
        status: OrderStatus::Placed,
        totals,
        placed_at: now,
        reservation_expires_at: expires_at,
    };
    if let Some(idem) = idempotency {
        remember_answer(&mut tx, idem, &answer, now).await?;
    }
    tx.commit().await?;
    Ok(answer)
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn remembered_answer(
    tx: &mut Tx,
    idem: &Idempotency,
) -> Result<Option<PlacedOrder>, OrderError> {
    let Some(row) = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(idem.scope.as_str())
    .bind(idem.key.as_str())
    .fetch_optional(&mut **tx)
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

async fn remember_answer(
    tx: &mut Tx,
    idem: &Idempotency,
    answer: &PlacedOrder,
    now: i64,
) -> Result<(), OrderError> {
    let response = serde_json::to_string(answer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // On PostgreSQL a concurrent first use of the same key waits here for the other
    // transaction; if that one committed, this insert fails and `place_order` tries again,
    // into the remembered answer.
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, response, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(idem.scope.as_str())
    .bind(idem.key.as_str())
    .bind(idem.request_hash.as_str())
    .bind(response)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn catalog_line(
    tx: &mut Tx,
    request: &PlaceOrder,
    line: usize,
    requested: &RequestedLine,
) -> Result<CatalogLine, OrderError> {
    let row = sqlx::query(
        "SELECT p.merchant_id, p.active, p.category, p.price_minor, p.currency, s.warehouse_id
         FROM products p JOIN stock s ON s.product_id = p.product_id WHERE p.product_id = $1",
    )
    .bind(requested.product_id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| OrderError::UnknownProduct {
        line,
        product_id: requested.product_id.clone(),
    })?;
    let owner: String = row.try_get(0)?;
    if owner != request.merchant_id.as_str() {
        // Said as of a product that does not exist: whose it is, is not the caller's business.
        return Err(OrderError::UnknownProduct {
            line,
            product_id: requested.product_id.clone(),
        });
    }
    if row.try_get::<i64, _>(1)? == 0 {
        return Err(OrderError::ProductInactive {
            line,
            product_id: requested.product_id.clone(),
        });
    }
    let currency: String = row.try_get(4)?;
    let currency = Currency::parse(&currency)
        .ok_or_else(|| StoreError::Corrupt(format!("product currency {currency:?}")))?;
    Ok(CatalogLine {
        category: row.try_get(2)?,
        unit_price: Money::new(row.try_get(3)?, currency),
        warehouse_id: row.try_get(5)?,
    })
}

/// Takes `quantity` out of what is available in one conditional update, so two buyers of the
/// last unit cannot both get it on either database.
async fn reserve(tx: &mut Tx, line: usize, requested: &RequestedLine) -> Result<(), OrderError> {
    let quantity = i64::from(requested.quantity);
    let updated = sqlx::query(
        "UPDATE stock SET reserved = reserved + $1
         WHERE product_id = $2 AND on_hand - reserved >= $1",
    )
    .bind(quantity)
    .bind(requested.product_id.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 1 {
        return Ok(());
    }
    let available: i64 = sqlx::query("SELECT on_hand - reserved FROM stock WHERE product_id = $1")
        .bind(requested.product_id.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    Err(OrderError::OutOfStock {
        line,
        product_id: requested.product_id.clone(),
        available,
        requested: requested.quantity,
    })
}

async fn insert_order(
    tx: &mut Tx,
    request: &PlaceOrder,
    order_id: &OrderId,
    totals: &OrderTotals,
    now: i64,
    expires_at: i64,
) -> Result<(), OrderError> {
    let fx = totals
        .fx
        .map(|rate| serde_json::to_string(&rate))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO orders (order_id, merchant_id, customer_id, status, delivery_pincode,
           currency, taxable_minor, gst_minor, total_minor, fx, placed_at,
           reservation_expires_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11)",
    )
    .bind(order_id.as_str())
    .bind(request.merchant_id.as_str())
    .bind(request.customer_id.as_str())
    .bind(OrderStatus::Placed.as_str())
    .bind(i64::from(request.delivery_pincode.number()))
    .bind(request.currency.as_str())
    .bind(totals.taxable.amount_minor)
    .bind(totals.gst.amount_minor)
    .bind(totals.total.amount_minor)
    .bind(fx)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    for (line_no, (priced, requested)) in totals.lines.iter().zip(&request.lines).enumerate() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_minor,
               gross_minor, taxable_minor, gst_minor, gst_bps)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(order_id.as_str())
        .bind(i64::try_from(line_no).unwrap_or(i64::MAX))
        .bind(requested.product_id.as_str())
        .bind(i64::from(priced.quantity))
        .bind(priced.unit_price.amount_minor)
        .bind(priced.gross.amount_minor)
        .bind(priced.taxable.amount_minor)
        .bind(priced.gst.amount_minor)
        .bind(i64::from(priced.gst_bps))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
