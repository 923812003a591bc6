//! Orders: place (with an Idempotency-Key), read, pay, cancel, change address, fulfil and
//! refund; a customer's order history.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use model::api::ErrorCode;
use model::payload::RefundIssued;
use model::{CustomerId, Money, OrderId, Pincode, ShipmentId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::auth::CallerScope as _;
use super::auth::{Caller, Role};
use super::{ApiError, CoreState, check_length, parse_json, require};
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

/// Places an order: validates lines, checks the delivery radius, prices it with GST and reserves stock until payment. Requires an `Idempotency-Key` header: the same key and body replay the first answer; another body is `409 idempotency_conflict`.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body = PlaceOrder,
    params(("Idempotency-Key" = String, Header, description = "1-255 characters, e.g. a UUID")),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "placed; stock held until `reservation_expires_at`", body = PlacedOrder),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "unknown merchant or product", body = model::api::ErrorBody),
        (status = 409, description = "`out_of_stock`, `idempotency_conflict`", body = model::api::ErrorBody),
        (status = 422, description = "`outside_delivery_radius`; `invalid_order` (e.g. more than 2,000 lines)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn place(
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
                ErrorCode::MissingIdempotencyKey,
                "send an Idempotency-Key header (1-255 characters, e.g. a UUID) so a retry \
                 cannot place the order twice",
            )
        })?;
    let request: PlaceOrder = parse_json(&body)?;
    if let Some(bound) = caller.bound_merchant()
        && *bound != request.merchant_id
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this key places orders for merchant {bound} only"),
        ));
    }
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

/// Reads an order with its captured and refunded amounts and shipment. A merchant key sees only its own orders.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the order", body = OrderView),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn view(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, ANYONE)?;
    let order =
        lifecycle::view_order(&state.store, &OrderId::new(order_id), &caller.scope()).await?;
    Ok(Json(order))
}

/// Charges the order through the payment providers (timeout, retries with backoff, fallback to the next provider; a decline is final).
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/pay",
    tag = "orders",
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "captured (order confirmed) or declined (order failed)", body = PaymentRecorded),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`already_paid`, `reservation_expired`, `illegal_transition`", body = model::api::ErrorBody),
        (status = 503, description = "every provider unavailable (`payment_unavailable`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn pay(
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
#[derive(utoipa::ToSchema)]
pub struct CancelRequest {
    #[schema(max_length = 500)]
    reason: String,
}

/// Cancels under the merchant's policy: 70 % refunded within 10 min, 40 % within 30 min, refused later.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/cancel",
    tag = "orders",
    request_body = CancelRequest,
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "cancelled, with the refund", body = Cancelled),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`cancellation_window_closed`, `illegal_transition`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn cancel(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Json<Cancelled>, ApiError> {
    require(&caller, ANYONE)?;
    let request: CancelRequest = parse_json(&body)?;
    check_length("reason", &request.reason, model::limits::REASON_CHARS)?;
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
#[derive(utoipa::ToSchema)]
pub struct AddressRequest {
    delivery_pincode: Pincode,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct StatusAnswer {
    order_id: OrderId,
    status: OrderStatus,
}

/// Moves the delivery within 30 min of placing and before packing; the radius is checked again.
#[utoipa::path(
    put,
    path = "/v1/orders/{order_id}/address",
    tag = "orders",
    request_body = AddressRequest,
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "moved", body = StatusAnswer),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`address_change_closed`", body = model::api::ErrorBody),
        (status = 422, description = "`outside_delivery_radius`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn change_address(
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

/// Marks a confirmed order packed.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/pack",
    tag = "orders",
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "packed", body = StatusAnswer),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`illegal_transition`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn pack(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<StatusAnswer>, ApiError> {
    require(&caller, SELLER_SIDE)?;
    let order_id = OrderId::new(order_id);
    let status = lifecycle::pack(&state.store, &order_id, &caller.scope(), state.now()).await?;
    Ok(Json(StatusAnswer { order_id, status }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Shipped {
    order_id: OrderId,
    status: OrderStatus,
    shipment_id: ShipmentId,
}

/// Hands a packed order to a courier and creates its shipment.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/ship",
    tag = "orders",
    request_body = ShipRequest,
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "shipped", body = Shipped),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`illegal_transition`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn ship(
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

/// Records the delivery.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/deliver",
    tag = "orders",
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "delivered", body = StatusAnswer),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`illegal_transition`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn deliver(
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
#[derive(utoipa::ToSchema)]
pub struct RefundRequest {
    amount: Money,
    #[schema(max_length = 500)]
    reason: String,
}

/// Refunds part or all of what was captured; never more.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/refunds",
    tag = "orders",
    request_body = RefundRequest,
    params(("order_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "refund issued", body = RefundIssued),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "no such order (`unknown_order`)", body = model::api::ErrorBody),
        (status = 409, description = "`refund_exceeds_captured`, `nothing_captured`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn refund(
    State(state): State<CoreState>,
    caller: Caller,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RefundIssued>), ApiError> {
    require(&caller, SELLER_SIDE)?;
    let request: RefundRequest = parse_json(&body)?;
    check_length("reason", &request.reason, model::limits::REASON_CHARS)?;
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
pub(super) struct HistoryQuery {
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct History {
    customer_id: CustomerId,
    orders: Vec<OrderSummary>,
}

/// A customer's orders, newest first. A merchant key sees only its own.
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/orders",
    tag = "orders",
    params(("customer_id" = String, Path), ("limit" = Option<i64>, Query, description = "at most this many (default 50)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the orders", body = History),
    )
)]
pub(super) async fn history(
    State(state): State<CoreState>,
    caller: Caller,
    Path(customer_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    require(&caller, ANYONE)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
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
