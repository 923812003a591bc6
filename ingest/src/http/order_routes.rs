//! Orders: place (with an Idempotency-Key), read, pay, cancel, change address, fulfil and
//! refund; a customer's order history.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use model::payload::RefundIssued;
use model::{CustomerId, Money, OrderId, Pincode, ShipmentId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::auth::{Caller, Role};
use super::{ApiError, CoreState, parse_json, require};
use crate::domain::OrderStatus;
use crate::lifecycle::{self, Cancelled, OrderSummary, OrderView, PaymentRecorded, ShipRequest};
use crate::orders::{Idempotency, PlaceOrder, PlacedOrder, place_order};
use crate::payments;

const BUYER_SIDE: &[Role] = &[Role::Storefront, Role::Admin];
const SELLER_SIDE: &[Role] = &[Role::Merchant, Role::Admin];
const ANYONE: &[Role] = &[Role::Storefront, Role::Merchant, Role::Admin];

pub(super) fn routes() -> Router<CoreState> {
    Router::new()
        .route("/v1/orders", post(place))
        .route("/v1/orders/{order_id}", get(view))
        .route("/v1/orders/{order_id}/pay", post(pay))
        .route("/v1/orders/{order_id}/cancel", post(cancel))
        .route("/v1/orders/{order_id}/address", put(change_address))
        .route("/v1/orders/{order_id}/pack", post(pack))
        .route("/v1/orders/{order_id}/ship", post(ship))
        .route("/v1/orders/{order_id}/deliver", post(deliver))
        .route("/v1/orders/{order_id}/refunds", post(refund))
        .route("/v1/customers/{customer_id}/orders", get(history))
}

async fn place(
    State(state): State<CoreState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<PlacedOrder>), ApiError> {
    require(&caller, BUYER_SIDE)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .ok_or_else(|| {
            ApiError::new(
                "missing_idempotency_key",
                "send an Idempotency-Key header (1-255 characters, e.g. a UUID) so a retry \
                 cannot place the order twice",
            )
        })?;
    let request: PlaceOrder = parse_json(&body)?;
    // The hash of the parsed request, so a retry that only reformats the JSON is the same.
    let canonical = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    let idempotency = Idempotency {
        scope: caller.key_hash.clone(),
        key: key.to_owned(),
        request_hash: super::auth::hex(&Sha256::digest(&canonical)),
    };
    let placed = place_order(
        &state.store,
        &state.rules,
        &request,
        Some(&idempotency),
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

async fn view(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, ANYONE)?;
    let order =
        lifecycle::view_order(&state.store, &OrderId::new(order_id), &caller.scope()).await?;
    Ok(Json(order))
}

async fn pay(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<PaymentRecorded>, ApiError> {
    require(&caller, BUYER_SIDE)?;
    let clock = state.clock.clone();
    let recorded = payments::pay(
        &state.store,
        &state.payments,
        &OrderId::new(order_id),
        &caller.scope(),
        move || clock(),
    )
    .await?;
    Ok(Json(recorded))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    reason: String,
}

async fn cancel(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Json<Cancelled>, ApiError> {
    require(&caller, ANYONE)?;
    let request: CancelRequest = parse_json(&body)?;
    let cancelled = lifecycle::cancel(
        &state.store,
        &OrderId::new(order_id),
        &caller.scope(),
        &request.reason,
        state.now(),
    )
    .await?;
    Ok(Json(cancelled))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressRequest {
    delivery_pincode: Pincode,
}

#[derive(Debug, Serialize)]
struct StatusAnswer {
    order_id: OrderId,
    status: OrderStatus,
}

async fn change_address(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, BUYER_SIDE)?;
    let request: AddressRequest = parse_json(&body)?;
    let order_id = OrderId::new(order_id);
    lifecycle::change_address(
        &state.store,
        &state.rules.pincodes,
        state.address,
        &order_id,
        &caller.scope(),
        request.delivery_pincode,
        state.now(),
    )
    .await?;
    Ok(Json(
        lifecycle::view_order(&state.store, &order_id, &caller.scope()).await?,
    ))
}

async fn pack(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<StatusAnswer>, ApiError> {
    require(&caller, SELLER_SIDE)?;
    let order_id = OrderId::new(order_id);
    let status = lifecycle::pack(&state.store, &order_id, &caller.scope(), state.now()).await?;
    Ok(Json(StatusAnswer { order_id, status }))
}

#[derive(Debug, Serialize)]
struct Shipped {
    order_id: OrderId,
    status: OrderStatus,
    shipment_id: ShipmentId,
}

async fn ship(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Json<Shipped>, ApiError> {
    require(&caller, SELLER_SIDE)?;
    let request: ShipRequest = parse_json(&body)?;
    let order_id = OrderId::new(order_id);
    let shipment_id = lifecycle::ship(
        &state.store,
        &order_id,
        &caller.scope(),
        &request,
        state.now(),
    )
    .await?;
    Ok(Json(Shipped {
        order_id,
        status: OrderStatus::Shipped,
        shipment_id,
    }))
}

async fn deliver(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<StatusAnswer>, ApiError> {
    require(&caller, SELLER_SIDE)?;
    let order_id = OrderId::new(order_id);
    let status = lifecycle::deliver(&state.store, &order_id, &caller.scope(), state.now()).await?;
    Ok(Json(StatusAnswer { order_id, status }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    amount: Money,
    reason: String,
}

async fn refund(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RefundIssued>), ApiError> {
    require(&caller, SELLER_SIDE)?;
    let request: RefundRequest = parse_json(&body)?;
    let issued = lifecycle::refund(
        &state.store,
        &OrderId::new(order_id),
        &caller.scope(),
        request.amount,
        &request.reason,
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
struct History {
    customer_id: CustomerId,
    orders: Vec<OrderSummary>,
}

async fn history(
    State(state): State<CoreState>,
    caller: Caller,
    Path(customer_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    require(&caller, ANYONE)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            "invalid_parameter",
            format!("limit must be 1..=500, got {limit}"),
        ));
    }
    let customer_id = CustomerId::new(customer_id);
    let orders =
        lifecycle::customer_orders(&state.store, &customer_id, &caller.scope(), limit).await?;
    Ok(Json(History {
        customer_id,
        orders,
    }))
}
