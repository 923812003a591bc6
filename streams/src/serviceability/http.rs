//! `GET|POST /v1/serviceability`, `GET /v1/promise` and `GET /v1/promise/accuracy`.

use runtime::now_ms;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use model::api::ErrorCode;
use model::calendar::IstDate;
use model::{CourierId, Pincode, ProductId, WarehouseId};
use runtime::http::{ApiError, parse_json};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use super::learn::Level;
use super::promise::{DeliveryOption, Inputs};
use super::state::Serviceability;

#[derive(Clone)]
struct AppState {
    service: Arc<Serviceability>,
    max_items: usize,
    max_skew_ms: i64,
}

/// Routes of the stage, for the front door.
pub(super) fn routes(service: Arc<Serviceability>, max_items: usize, max_skew_ms: i64) -> Router {
    Router::new()
        .route(
            "/v1/serviceability",
            get(serviceability_one).post(serviceability_many),
        )
        .route("/v1/promise", get(promise))
        .route("/v1/promise/accuracy", get(accuracy))
        .with_state(AppState {
            service,
            max_items,
            max_skew_ms,
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(serviceability_one, serviceability_many, promise, accuracy),
    components(schemas(ManyRequest, ItemRequest)),
    tags((name = "serviceability", description = "where a product can go, and by when"))
)]
struct ApiDoc;

pub(super) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

fn pincode(field: &str, text: Option<&str>) -> Result<Pincode, ApiError> {
    let text = text.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    Pincode::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field} {text:?} is not a pincode: six digits, the first 1-9"
        ))
    })
}

fn known(service: &Serviceability, field: &str, pincode: Pincode) -> Result<Pincode, ApiError> {
    match service.regions().directory().get(pincode) {
        Some(_) => Ok(pincode),
        None => Err(ApiError::new(
            ErrorCode::UnknownPincode,
            format!("{field} {pincode} is not in India Post's directory"),
        )),
    }
}

/// One item's answer.
#[derive(Debug, Serialize)]
struct ItemAnswer {
    product_id: ProductId,
    quantity: u32,
    deliverable: bool,
    /// Why not, when not: `no_stock`, `not_serviceable`, `outside_radius`, `unknown_pincode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warehouse_id: Option<WarehouseId>,
    /// `null` for a hyperlocal store's own riders.
    #[serde(skip_serializing_if = "Option::is_none")]
    courier_id: Option<CourierId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_by: Option<IstDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    alternatives: Vec<DeliveryOption>,
}

fn answer_item(
    inputs: &Inputs<'_>,
    product_id: ProductId,
    quantity: u32,
    destination: Pincode,
    order_time: i64,
) -> ItemAnswer {
    let mut answer = ItemAnswer {
        product_id,
        quantity,
        deliverable: false,
        reason: None,
        warehouse_id: None,
        courier_id: None,
        deliver_by: None,
        probability: None,
        alternatives: Vec::new(),
    };
    match inputs.options(&answer.product_id, quantity, destination, order_time) {
        Ok(options) => {
            let mut options = options.into_iter();
            if let Some(best) = options.next() {
                answer.deliverable = true;
                answer.warehouse_id = Some(best.warehouse_id);
                answer.courier_id = best.courier_id;
                answer.deliver_by = Some(best.deliver_by);
                answer.probability = Some(best.probability);
            }
            answer.alternatives = options.collect();
        }
        Err(why) => answer.reason = Some(why.code()),
    }
    answer
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneQuery {
    pincode: Option<String>,
    product_id: Option<String>,
    quantity: Option<String>,
}

fn quantity(text: Option<&str>) -> Result<u32, ApiError> {
    match text {
        None => Ok(1),
        Some(text) => text.parse::<u32>().ok().filter(|q| *q > 0).ok_or_else(|| {
            ApiError::invalid(format!("quantity {text:?} must be a whole number from 1"))
        }),
    }
}

/// Whether one product can reach a pincode, and by when, for an order placed now.
#[utoipa::path(
    get,
    path = "/v1/serviceability",
    tag = "serviceability",
    params(
        ("pincode" = String, Query, description = "the delivery pincode, six digits"),
        ("product_id" = String, Query, description = "the product"),
        ("quantity" = Option<u32>, Query, description = "units, at least 1 (default 1)"),
    ),
    responses(
        (status = 200, description = "`{product_id, quantity, deliverable, reason?, warehouse_id?, courier_id?, deliver_by? (IST date), probability?, alternatives}`", content_type = "application/json"),
        (status = 400, description = "a parameter is missing or malformed (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 422, description = "the pincode is not in India Post's directory (`unknown_pincode`)", body = model::api::ErrorBody),
    )
)]
async fn serviceability_one(
    State(state): State<AppState>,
    query: Result<Query<OneQuery>, QueryRejection>,
) -> Result<Json<ItemAnswer>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let destination = known(
        &state.service,
        "pincode",
        pincode("pincode", query.pincode.as_deref())?,
    )?;
    let product_id = query
        .product_id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("product_id is required"))?;
    let quantity = quantity(query.quantity.as_deref())?;
    Ok(Json(state.service.with_inputs(|inputs| {
        answer_item(
            inputs,
            ProductId::new(product_id),
            quantity,
            destination,
            now_ms(),
        )
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemRequest {
    #[schema(value_type = String)]
    product_id: ProductId,
    /// Units, at least 1.
    quantity: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ManyRequest {
    /// The delivery pincode, six digits.
    pincode: String,
    /// When the order would be placed, UTC milliseconds (default now); within
    /// `serviceability.max_order_time_skew_ms` of now.
    order_time: Option<i64>,
    /// Up to `serviceability.max_items` (100) items.
    items: Vec<ItemRequest>,
}

#[derive(Debug, Serialize)]
struct ManyAnswer {
    pincode: Pincode,
    items: Vec<ItemAnswer>,
}

/// A cart's items at once: each deliverable or not, from where, by whom, by when.
#[utoipa::path(
    post,
    path = "/v1/serviceability",
    tag = "serviceability",
    request_body = ManyRequest,
    responses(
        (status = 200, description = "`{pincode, items: [...]}`, each item answered as by GET", content_type = "application/json"),
        (status = 400, description = "the body is not of this shape (`invalid_json`); a pincode, quantity, item count or order time out of range (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 422, description = "the pincode is not in India Post's directory (`unknown_pincode`)", body = model::api::ErrorBody),
    )
)]
async fn serviceability_many(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ManyAnswer>, ApiError> {
    let request: ManyRequest = parse_json(&body)?;
    let destination = known(
        &state.service,
        "pincode",
        pincode("pincode", Some(&request.pincode))?,
    )?;
    if request.items.is_empty() || request.items.len() > state.max_items {
        return Err(ApiError::invalid(format!(
            "items has {} entries; 1 to {}",
            request.items.len(),
            state.max_items
        )));
    }
    let now = now_ms();
    let order_time = request.order_time.unwrap_or(now);
    if order_time.abs_diff(now) > state.max_skew_ms.unsigned_abs() {
        return Err(ApiError::invalid(format!(
            "order_time {order_time} is more than {} ms from now ({now}); /v1/promise takes any time",
            state.max_skew_ms
        )));
    }
    let mut items = Vec::with_capacity(request.items.len());
    for (i, item) in request.items.iter().enumerate() {
        let quantity = u32::try_from(item.quantity)
            .ok()
            .filter(|q| *q > 0)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "items[{i}].quantity {} must be a whole number from 1",
                    item.quantity
                ))
            })?;
        items.push((item.product_id.clone(), quantity));
    }
    let items = state.service.with_inputs(|inputs| {
        items
            .into_iter()
            .map(|(product, quantity)| {
                answer_item(inputs, product, quantity, destination, order_time)
            })
            .collect()
    });
    Ok(Json(ManyAnswer {
        pincode: destination,
        items,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromiseQuery {
    origin_pincode: Option<String>,
    destination_pincode: Option<String>,
    order_time: Option<String>,
    courier_id: Option<String>,
    warehouse_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct LaneAnswer {
    courier_id: CourierId,
    handling_starts: IstDate,
    ships_on: IstDate,
    deliver_by: IstDate,
    probability: f64,
    /// Working days of handling plus transit.
    p50_days: u32,
    p90_days: u32,
    /// Deliveries behind the transit estimate.
    deliveries: u32,
    /// Which level answered: pincode, district, state, distance_band or default.
    level: Level,
    handling_learnt: bool,
}

#[derive(Debug, Serialize)]
struct PromiseAnswer {
    origin_pincode: Pincode,
    destination_pincode: Pincode,
    order_time: i64,
    /// Best first.
    lanes: Vec<LaneAnswer>,
}

/// The lane-level promise, for operations and backtests: handling plus transit between two
/// pincodes for an order at any time, per courier.
#[utoipa::path(
    get,
    path = "/v1/promise",
    tag = "serviceability",
    params(
        ("origin_pincode" = String, Query, description = "where the parcel leaves"),
        ("destination_pincode" = String, Query, description = "where it goes"),
        ("order_time" = Option<i64>, Query, description = "UTC milliseconds, past or future (default now)"),
        ("courier_id" = Option<String>, Query, description = "one courier (default every registered one)"),
        ("warehouse_id" = Option<String>, Query, description = "the warehouse whose cut-off, calendar and handling apply (default: a Monday-Saturday one at the origin, cut-off 14:00, one handling day)"),
    ),
    responses(
        (status = 200, description = "`{origin_pincode, destination_pincode, order_time, lanes: [{courier_id, handling_starts, ships_on, deliver_by, probability, p50_days, p90_days, deliveries, level, handling_learnt}]}`", content_type = "application/json"),
        (status = 400, description = "a parameter is missing or malformed (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 404, description = "no such warehouse at the origin, or no such courier (`not_found`)", body = model::api::ErrorBody),
        (status = 422, description = "a pincode is not in India Post's directory (`unknown_pincode`)", body = model::api::ErrorBody),
    )
)]
async fn promise(
    State(state): State<AppState>,
    query: Result<Query<PromiseQuery>, QueryRejection>,
) -> Result<Json<PromiseAnswer>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let service = &state.service;
    let origin = known(
        service,
        "origin_pincode",
        pincode("origin_pincode", query.origin_pincode.as_deref())?,
    )?;
    let destination = known(
        service,
        "destination_pincode",
        pincode("destination_pincode", query.destination_pincode.as_deref())?,
    )?;
    let order_time = match query.order_time.as_deref() {
        None => now_ms(),
        Some(text) => text.parse().map_err(|_| {
            ApiError::invalid(format!("order_time {text:?} is not UTC milliseconds"))
        })?,
    };
    let lanes = service.with_inputs(|inputs| -> Result<Vec<LaneAnswer>, ApiError> {
        let warehouse = match query.warehouse_id.as_deref() {
            Some(id) => inputs
                .network
                .warehouse(&WarehouseId::new(id))
                .filter(|w| w.pincode == origin)
                .cloned()
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NotFound,
                        format!("no warehouse {id:?} at origin_pincode {origin}"),
                    )
                })?,
            None => super::network::Warehouse::generic(origin),
        };
        let couriers: Vec<CourierId> = match query.courier_id.as_deref() {
            Some(id) if !id.trim().is_empty() => {
                let courier = CourierId::new(id);
                if inputs.network.courier(&courier).is_none() {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("no courier {id:?} is registered"),
                    ));
                }
                vec![courier]
            }
            Some(_) => return Err(ApiError::invalid("courier_id is empty")),
            None => inputs.network.couriers().map(|c| c.id.clone()).collect(),
        };
        let mut lanes: Vec<LaneAnswer> = couriers
            .into_iter()
            .filter_map(|courier_id| {
                let lane = inputs.lane(order_time, &warehouse, &courier_id, destination)?;
                Some(LaneAnswer {
                    courier_id,
                    handling_starts: lane.handling_starts,
                    ships_on: lane.ships_on,
                    deliver_by: lane.deliver_by,
                    probability: lane.probability,
                    p50_days: lane.p50_days,
                    p90_days: lane.p90_days,
                    deliveries: lane.transit_deliveries,
                    level: lane.transit_level,
                    handling_learnt: lane.handling_learnt,
                })
            })
            .collect();
        lanes.sort_by(|a, b| {
            a.deliver_by
                .cmp(&b.deliver_by)
                .then(b.probability.total_cmp(&a.probability))
        });
        Ok(lanes)
    })?;
    Ok(Json(PromiseAnswer {
        origin_pincode: origin,
        destination_pincode: destination,
        order_time,
        lanes,
    }))
}

#[derive(Debug, Serialize)]
struct CourierAccuracy {
    courier_id: CourierId,
    deliveries: u64,
    on_time_rate: Option<f64>,
    /// Promised minus actual, in days; negative when late on average.
    mean_slack_days: Option<f64>,
}

/// How promises fared, per courier, as deliveries arrived.
#[utoipa::path(
    get,
    path = "/v1/promise/accuracy",
    tag = "serviceability",
    responses(
        (status = 200, description = "`{couriers: [{courier_id, deliveries, on_time_rate, mean_slack_days}]}`", content_type = "application/json"),
    )
)]
async fn accuracy(State(state): State<AppState>) -> Json<serde_json::Value> {
    let couriers: Vec<CourierAccuracy> = state
        .service
        .read()
        .learnt
        .accuracy
        .iter()
        .map(|(courier_id, accuracy)| CourierAccuracy {
            courier_id: courier_id.clone(),
            deliveries: accuracy.deliveries,
            on_time_rate: accuracy.on_time_rate(),
            mean_slack_days: accuracy.mean_slack_days(),
        })
        .collect();
    Json(serde_json::json!({ "couriers": couriers }))
}
