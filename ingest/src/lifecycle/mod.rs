//! What happens to an order after it is placed. Each function is one write transaction that
//! locks the order row first (a no-op `UPDATE`, which also serialises concurrent changes of
//! the same order on PostgreSQL), reads its state, asks the pure [`crate::domain`] rules
//! whether the change is allowed, writes the business rows and appends the events to the
//! outbox.
//!
//! - [`fulfilment`]: pack, ship, deliver, address change, reservation expiry.
//! - [`money`]: payment outcomes, cancellation with the refund policy, refunds.

pub mod fulfilment;
pub mod money;

use model::api::ErrorCode;
use model::payload::ReleaseReason;
use model::payload::StockReleased;
use model::{
    Currency, CustomerId, Event, MerchantId, Money, OrderId, Pincode, ProductId, WarehouseId,
};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::domain::{
    CancellationRefused, IllegalTransition, OrderAction, OrderStatus, RadiusError, SettlementError,
};
use crate::outbox;
use crate::store::StoreError;

pub use fulfilment::{
    AddressRules, ShipRequest, change_address, deliver, expire_reservations, pack, ship,
};
pub use money::{Cancelled, PaymentOutcome, PaymentRecorded, cancel, record_payment, refund};

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Whose orders a caller may touch. A merchant's key sees only that merchant's orders; an
/// order of another merchant is answered as unknown, so its existence does not leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Any,
    Merchant(MerchantId),
}

impl Scope {
    pub fn allows(&self, merchant_id: &MerchantId) -> bool {
        match self {
            Scope::Any => true,
            Scope::Merchant(own) => own == merchant_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("order {0} does not exist")]
    UnknownOrder(OrderId),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(transparent)]
    CancellationRefused(#[from] CancellationRefused),
    #[error(transparent)]
    Settlement(#[from] SettlementError),
    #[error("order {0} has no captured payment to refund")]
    NothingCaptured(OrderId),
    #[error("the delivery address can no longer change: {0}")]
    AddressChangeClosed(String),
    #[error(transparent)]
    Radius(#[from] RadiusError),
    #[error("order {0} held its stock too long without payment; place it again")]
    ReservationExpired(OrderId),
    #[error("order {0} has a payment in flight or already captured")]
    AlreadyPaid(OrderId),
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for LifecycleError {
    fn from(error: sqlx::Error) -> Self {
        LifecycleError::Store(StoreError::Database(error))
    }
}

impl LifecycleError {
    /// The stable machine code an HTTP shell answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            LifecycleError::Store(_) => ErrorCode::Internal,
            LifecycleError::UnknownOrder(_) => ErrorCode::UnknownOrder,
            LifecycleError::Illegal(_) => ErrorCode::IllegalTransition,
            LifecycleError::CancellationRefused(_) => ErrorCode::CancellationWindowClosed,
            LifecycleError::Settlement(SettlementError::RefundExceedsCaptured { .. }) => {
                ErrorCode::RefundExceedsCaptured
            }
            LifecycleError::Settlement(_) => ErrorCode::InvalidAmount,
            LifecycleError::NothingCaptured(_) => ErrorCode::NothingCaptured,
            LifecycleError::AddressChangeClosed(_) => ErrorCode::AddressChangeClosed,
            LifecycleError::Radius(RadiusError::OutOfRadius { .. }) => {
                ErrorCode::OutsideDeliveryRadius
            }
            LifecycleError::Radius(RadiusError::UnknownPincode(_)) => ErrorCode::UnknownPincode,
            LifecycleError::AlreadyPaid(_) => ErrorCode::AlreadyPaid,
            LifecycleError::ReservationExpired(_) => ErrorCode::ReservationExpired,
            LifecycleError::Invalid(_) => ErrorCode::InvalidParameter,
        }
    }
}

/// An order as the lifecycle rules need it, read under the order's row lock.
#[derive(Debug, Clone)]
pub(crate) struct LockedOrder {
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub status: OrderStatus,
    pub delivery_pincode: Pincode,
    pub total: Money,
    pub placed_at: i64,
    pub reservation_expires_at: i64,
    /// What the shopper was promised at placement (UTC ms), if anything.
    pub promised_at: Option<i64>,
    pub lines: Vec<LockedLine>,
}

#[derive(Debug, Clone)]
pub(crate) struct LockedLine {
    pub product_id: ProductId,
    pub warehouse_id: WarehouseId,
    pub quantity: i64,
}

/// Locks and reads `order_id`; an order outside `scope` is reported as unknown.
pub(crate) async fn lock_order(
    tx: &mut Tx,
    order_id: &OrderId,
    scope: &Scope,
    now: i64,
) -> Result<LockedOrder, LifecycleError> {
    let unknown = || LifecycleError::UnknownOrder(order_id.clone());
    let touched = sqlx::query("UPDATE orders SET updated_at = $1 WHERE order_id = $2")
        .bind(now)
        .bind(order_id.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if touched == 0 {
        return Err(unknown());
    }
    let row = sqlx::query(
        "SELECT merchant_id, status, delivery_pincode, currency, total_minor,
           placed_at, reservation_expires_at, promised_at
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let merchant_id = MerchantId::new(row.try_get::<String, _>(0)?);
    if !scope.allows(&merchant_id) {
        return Err(unknown());
    }
    let status: String = row.try_get(1)?;
    let status = OrderStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} status {status:?}")))?;
    let pincode: i64 = row.try_get(2)?;
    let currency: String = row.try_get(3)?;
    let lines = sqlx::query(
        "SELECT l.product_id, s.warehouse_id, l.quantity
         FROM order_lines l JOIN stock s ON s.product_id = l.product_id
         WHERE l.order_id = $1 ORDER BY l.product_id",
    )
    .bind(order_id.as_str())
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|line| {
        Ok(LockedLine {
            product_id: ProductId::new(line.try_get::<String, _>(0)?),
            warehouse_id: WarehouseId::new(line.try_get::<String, _>(1)?),
            quantity: line.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(LockedOrder {
        order_id: order_id.clone(),
        merchant_id,
        status,
        delivery_pincode: stored_pincode(pincode)?,
        total: Money::new(row.try_get(4)?, stored_currency(&currency)?),
        placed_at: row.try_get(5)?,
        reservation_expires_at: row.try_get(6)?,
        promised_at: row.try_get(7)?,
        lines,
    })
}

pub(crate) fn stored_pincode(number: i64) -> Result<Pincode, StoreError> {
    u32::try_from(number)
        .ok()
        .and_then(Pincode::from_number)
        .ok_or_else(|| StoreError::Corrupt(format!("stored pincode {number}")))
}

pub(crate) fn stored_currency(code: &str) -> Result<Currency, StoreError> {
    Currency::parse(code).ok_or_else(|| StoreError::Corrupt(format!("stored currency {code:?}")))
}

/// Moves the locked order by `action`, or refuses with the typed transition error.
pub(crate) async fn transition(
    tx: &mut Tx,
    order: &LockedOrder,
    action: OrderAction,
) -> Result<OrderStatus, LifecycleError> {
    let next = order.status.apply(action)?;
    sqlx::query("UPDATE orders SET status = $1 WHERE order_id = $2")
        .bind(next.as_str())
        .bind(order.order_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(next)
}

/// Gives the order's units back to stock. `sold` says whether they had already left stock on
/// payment (so on hand grows) or were only reserved (so the reservation shrinks).
pub(crate) async fn return_stock(
    tx: &mut Tx,
    order: &LockedOrder,
    sold: bool,
    reason: ReleaseReason,
    now: i64,
) -> Result<(), LifecycleError> {
    let sql = if sold {
        "UPDATE stock SET on_hand = on_hand + $1 WHERE product_id = $2"
    } else {
        "UPDATE stock SET reserved = reserved - $1 WHERE product_id = $2"
    };
    for line in &order.lines {
        sqlx::query(sql)
            .bind(line.quantity)
            .bind(line.product_id.as_str())
            .execute(&mut **tx)
            .await?;
        let released = Event::StockReleased(StockReleased {
            product_id: line.product_id.clone(),
            warehouse_id: line.warehouse_id.clone(),
            order_id: order.order_id.clone(),
            quantity: u32::try_from(line.quantity)
                .map_err(|_| StoreError::Corrupt(format!("line quantity {}", line.quantity)))?,
            reason,
        });
        outbox::append(tx, &order.merchant_id, now, released).await?;
    }
    Ok(())
}

/// An order with everything that happened to it, as `GET /v1/orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub delivery_pincode: Pincode,
    pub total: Money,
    pub captured: Money,
    pub refunded: Money,
    pub placed_at: i64,
    pub reservation_expires_at: i64,
    /// The end of the day the shopper was promised at placement (UTC ms), from the
    /// serviceability model; `null` when none was made.
    pub promised_at: Option<i64>,
    pub lines: Vec<OrderLineView>,
    pub shipment: Option<ShipmentView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLineView {
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: Money,
    pub gst: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShipmentView {
    pub shipment_id: String,
    pub courier_id: String,
    pub promised_at: i64,
    pub delivered_at: Option<i64>,
}

/// Reads one order as its owner or the storefront sees it.
pub async fn view_order(
    store: &crate::store::Store,
    order_id: &OrderId,
    scope: &Scope,
) -> Result<OrderView, LifecycleError> {
    let pool = store.pool();
    let row = sqlx::query(
        "SELECT merchant_id, customer_id, status, delivery_pincode, currency, total_minor,
           placed_at, reservation_expires_at, promised_at,
           (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payments p
              WHERE p.order_id = o.order_id AND p.status = 'captured'),
           (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds r WHERE r.order_id = o.order_id)
         FROM orders o WHERE order_id = $1",
    )
    .bind(order_id.as_str())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| LifecycleError::UnknownOrder(order_id.clone()))?;
    let merchant_id = MerchantId::new(row.try_get::<String, _>(0)?);
    if !scope.allows(&merchant_id) {
        return Err(LifecycleError::UnknownOrder(order_id.clone()));
    }
    let status: String = row.try_get(2)?;
    let currency = stored_currency(&row.try_get::<String, _>(4)?)?;
    let lines = sqlx::query(
        "SELECT product_id, quantity, unit_price_minor, gst_minor FROM order_lines
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|line| {
        Ok(OrderLineView {
            product_id: ProductId::new(line.try_get::<String, _>(0)?),
            quantity: line.try_get(1)?,
            unit_price: Money::new(line.try_get(2)?, currency),
            gst: Money::new(line.try_get(3)?, currency),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let shipment = sqlx::query(
        "SELECT shipment_id, courier_id, promised_at, delivered_at FROM shipments
         WHERE order_id = $1",
    )
    .bind(order_id.as_str())
    .fetch_optional(pool)
    .await?
    .map(|s| {
        Ok::<_, sqlx::Error>(ShipmentView {
            shipment_id: s.try_get(0)?,
            courier_id: s.try_get(1)?,
            promised_at: s.try_get(2)?,
            delivered_at: s.try_get(3)?,
        })
    })
    .transpose()?;
    Ok(OrderView {
        order_id: order_id.clone(),
        merchant_id,
        customer_id: CustomerId::new(row.try_get::<String, _>(1)?),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} status {status:?}")))?,
        delivery_pincode: stored_pincode(row.try_get(3)?)?,
        total: Money::new(row.try_get(5)?, currency),
        captured: Money::new(row.try_get(9)?, currency),
        refunded: Money::new(row.try_get(10)?, currency),
        placed_at: row.try_get(6)?,
        reservation_expires_at: row.try_get(7)?,
        promised_at: row.try_get(8)?,
        lines,
        shipment,
    })
}

/// A customer's orders, newest first, as (id, status, total, placed_at).
pub async fn customer_orders(
    store: &crate::store::Store,
    customer_id: &CustomerId,
    scope: &Scope,
    limit: i64,
) -> Result<Vec<OrderSummary>, LifecycleError> {
    // A merchant's scope filters in SQL, so LIMIT counts only the orders it may see.
    let query = match scope {
        Scope::Any => sqlx::query(
            "SELECT order_id, merchant_id, status, currency, total_minor, placed_at FROM orders
             WHERE customer_id = $1 ORDER BY placed_at DESC, order_id DESC LIMIT $2",
        )
        .bind(customer_id.as_str())
        .bind(limit),
        Scope::Merchant(merchant_id) => sqlx::query(
            "SELECT order_id, merchant_id, status, currency, total_minor, placed_at FROM orders
             WHERE customer_id = $1 AND merchant_id = $3
             ORDER BY placed_at DESC, order_id DESC LIMIT $2",
        )
        .bind(customer_id.as_str())
        .bind(limit)
        .bind(merchant_id.as_str()),
    };
    let rows = query.fetch_all(store.pool()).await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in rows {
        let merchant_id = MerchantId::new(row.try_get::<String, _>(1)?);
        let status: String = row.try_get(2)?;
        orders.push(OrderSummary {
            order_id: OrderId::new(row.try_get::<String, _>(0)?),
            merchant_id,
            status: OrderStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
            total: Money::new(
                row.try_get(4)?,
                stored_currency(&row.try_get::<String, _>(3)?)?,
            ),
            placed_at: row.try_get(5)?,
        });
    }
    Ok(orders)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderSummary {
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub status: OrderStatus,
    pub total: Money,
    pub placed_at: i64,
}
