//! Getting a paid order to the buyer: pack, ship (with a shipment record), deliver; changing
//! the delivery address while that is still possible; and failing orders whose reservation
//! expired before payment.

use model::geo::Directory;
use model::payload::{
    OrderAddressChanged, OrderDelivered, OrderFailed, OrderPacked, OrderShipped, ReleaseReason,
    ShipmentCreated, ShipmentDelivered,
};
use model::{CourierId, Event, OrderId, Pincode, ShipmentId};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::{
    LifecycleError, LockedOrder, Scope, Tx, lock_order, return_stock, stored_pincode, transition,
};
use crate::domain::{OrderAction, OrderStatus, check_radius};
use crate::outbox;
use crate::store::Store;

/// Marks a confirmed order packed at the warehouse holding its first line.
pub async fn pack(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    now: i64,
) -> Result<OrderStatus, LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    let status = transition(&mut tx, &order, OrderAction::Pack).await?;
    let warehouse_id = first_warehouse(&order)?;
    let packed = Event::OrderPacked(OrderPacked {
        order_id: order_id.clone(),
        warehouse_id,
    });
    outbox::append(&mut tx, &order.merchant_id, now, packed).await?;
    tx.commit().await?;
    Ok(status)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct ShipRequest {
    pub courier_id: CourierId,
    /// Where the parcel leaves from; a hyperlocal merchant's store when omitted.
    pub origin_pincode: Option<Pincode>,
    /// When the parcel is promised to arrive (UTC ms). Omitted: the promise the shopper was
    /// shown at placement; an order placed without one needs it here.
    #[serde(default)]
    pub promised_at: Option<i64>,
}

/// Hands a packed order to a courier: creates its shipment.
pub async fn ship(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    request: &ShipRequest,
    now: i64,
) -> Result<ShipmentId, LifecycleError> {
    if let Some(promised_at) = request.promised_at
        && promised_at <= now
    {
        return Err(LifecycleError::Invalid(format!(
            "promised_at {promised_at} is not in the future"
        )));
    }
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    // A late shipment keeps the promise the shopper was shown: that is what accuracy is
    // measured against.
    let promised_at = request.promised_at.or(order.promised_at).ok_or_else(|| {
        LifecycleError::Invalid(
            "promised_at is required: no delivery promise was recorded when this order was placed"
                .to_owned(),
        )
    })?;
    let origin = match request.origin_pincode {
        Some(origin) => origin,
        None => store_pincode(&mut tx, &order).await?.ok_or_else(|| {
            LifecycleError::Invalid(
                "origin_pincode is required: the merchant has no store pincode".to_owned(),
            )
        })?,
    };
    transition(&mut tx, &order, OrderAction::Ship).await?;
    let shipment_id = ShipmentId::new(format!("sh-{}", uuid::Uuid::now_v7().simple()));
    let warehouse_id = first_warehouse(&order)?;
    sqlx::query(
        "INSERT INTO shipments (shipment_id, order_id, warehouse_id, courier_id, origin_pincode,
           destination_pincode, promised_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(shipment_id.as_str())
    .bind(order_id.as_str())
    .bind(warehouse_id.as_str())
    .bind(request.courier_id.as_str())
    .bind(i64::from(origin.number()))
    .bind(i64::from(order.delivery_pincode.number()))
    .bind(promised_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let created = Event::ShipmentCreated(ShipmentCreated {
        shipment_id: shipment_id.clone(),
        order_id: order_id.clone(),
        warehouse_id,
        courier_id: request.courier_id.clone(),
        origin_pincode: origin,
        destination_pincode: order.delivery_pincode,
        promised_at,
    });
    outbox::append(&mut tx, &order.merchant_id, now, created).await?;
    let shipped = Event::OrderShipped(OrderShipped {
        order_id: order_id.clone(),
        shipment_id: shipment_id.clone(),
        courier_id: request.courier_id.clone(),
    });
    outbox::append(&mut tx, &order.merchant_id, now, shipped).await?;
    tx.commit().await?;
    Ok(shipment_id)
}

/// The courier delivered the order's shipment.
pub async fn deliver(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    now: i64,
) -> Result<OrderStatus, LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    let status = transition(&mut tx, &order, OrderAction::Deliver).await?;
    let shipment_id: String = sqlx::query(
        "UPDATE shipments SET delivered_at = $1 WHERE order_id = $2 RETURNING shipment_id",
    )
    .bind(now)
    .bind(order_id.as_str())
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    let shipment_id = ShipmentId::new(shipment_id);
    let events = [
        Event::ShipmentDelivered(ShipmentDelivered {
            shipment_id: shipment_id.clone(),
            order_id: order_id.clone(),
        }),
        Event::OrderDelivered(OrderDelivered {
            order_id: order_id.clone(),
            shipment_id,
        }),
    ];
    for event in events {
        outbox::append(&mut tx, &order.merchant_id, now, event).await?;
    }
    tx.commit().await?;
    Ok(status)
}

/// How long after placing, and up to which status, a buyer may move the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressRules {
    pub window_ms: i64,
}

impl Default for AddressRules {
    fn default() -> Self {
        Self {
            window_ms: 30 * 60_000,
        }
    }
}

/// Moves the delivery to `pincode`: only before the order is packed, within the window, and
/// for a hyperlocal merchant only inside its radius.
pub async fn change_address(
    store: &Store,
    pincodes: &Directory,
    rules: AddressRules,
    order_id: &OrderId,
    scope: &Scope,
    pincode: Pincode,
    now: i64,
) -> Result<(), LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    if !matches!(order.status, OrderStatus::Placed | OrderStatus::Confirmed) {
        return Err(LifecycleError::AddressChangeClosed(format!(
            "the order is already {}",
            order.status
        )));
    }
    let elapsed = now.saturating_sub(order.placed_at);
    if elapsed > rules.window_ms {
        return Err(LifecycleError::AddressChangeClosed(format!(
            "{} s after placing; changes close {} s after placing",
            elapsed / 1000,
            rules.window_ms / 1000
        )));
    }
    if pincodes.get(pincode).is_none() {
        return Err(crate::domain::RadiusError::UnknownPincode(pincode).into());
    }
    let hyperlocal =
        sqlx::query("SELECT store_pincode, radius_km FROM merchants WHERE merchant_id = $1")
            .bind(order.merchant_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
    let store_pincode: Option<i64> = hyperlocal.try_get(0)?;
    let radius_km: Option<f64> = hyperlocal.try_get(1)?;
    if let (Some(store_pincode), Some(radius_km)) = (store_pincode, radius_km) {
        check_radius(pincodes, stored_pincode(store_pincode)?, pincode, radius_km)?;
    }
    sqlx::query("UPDATE orders SET delivery_pincode = $1 WHERE order_id = $2")
        .bind(i64::from(pincode.number()))
        .bind(order_id.as_str())
        .execute(&mut *tx)
        .await?;
    let changed = Event::OrderAddressChanged(OrderAddressChanged {
        order_id: order_id.clone(),
        previous_pincode: order.delivery_pincode,
        delivery_pincode: pincode,
    });
    outbox::append(&mut tx, &order.merchant_id, now, changed).await?;
    tx.commit().await?;
    Ok(())
}

/// Fails up to `limit` placed orders whose reservation expired by `now` and gives their units
/// back; returns the orders it failed. Each order is its own transaction, so a sweep never
/// holds the write lock for long.
pub async fn expire_reservations(
    store: &Store,
    now: i64,
    limit: i64,
) -> Result<Vec<OrderId>, LifecycleError> {
    let due: Vec<OrderId> = sqlx::query(
        "SELECT order_id FROM orders WHERE status = $1 AND reservation_expires_at <= $2
         ORDER BY reservation_expires_at LIMIT $3",
    )
    .bind(OrderStatus::Placed.as_str())
    .bind(now)
    .bind(limit)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| row.try_get::<String, _>(0).map(OrderId::new))
    .collect::<Result<_, _>>()?;
    let mut expired = Vec::with_capacity(due.len());
    for order_id in due {
        let mut tx = store.write().await?;
        let order = lock_order(&mut tx, &order_id, &Scope::Any, now).await?;
        // Paid or cancelled since the scan: nothing to expire.
        if order.status != OrderStatus::Placed
            || !crate::domain::stock::is_expired(order.reservation_expires_at, now)
        {
            continue;
        }
        transition(&mut tx, &order, OrderAction::Fail).await?;
        return_stock(&mut tx, &order, false, ReleaseReason::Expired, now).await?;
        let failed = Event::OrderFailed(OrderFailed {
            order_id: order_id.clone(),
            reason: "reservation_expired".to_owned(),
        });
        outbox::append(&mut tx, &order.merchant_id, now, failed).await?;
        tx.commit().await?;
        expired.push(order_id);
    }
    Ok(expired)
}

fn first_warehouse(order: &LockedOrder) -> Result<model::WarehouseId, LifecycleError> {
    order
        .lines
        .first()
        .map(|line| line.warehouse_id.clone())
        .ok_or_else(|| {
            LifecycleError::Store(crate::store::StoreError::Corrupt(format!(
                "order {} has no lines",
                order.order_id
            )))
        })
}

async fn store_pincode(
    tx: &mut Tx,
    order: &LockedOrder,
) -> Result<Option<Pincode>, LifecycleError> {
    let number: Option<i64> =
        sqlx::query("SELECT store_pincode FROM merchants WHERE merchant_id = $1")
            .bind(order.merchant_id.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    Ok(number.map(stored_pincode).transpose()?)
}
