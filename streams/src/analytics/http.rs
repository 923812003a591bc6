//! `GET /v1/merchants/{merchant_id}/analytics/{metric}`: a merchant's live numbers. A
//! merchant key sees only its own shop; an admin key any.

use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{FromRef, Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use model::api::ErrorCode;
use runtime::http::auth::{Authenticator, Caller, Keys, Limiter, Role};
use runtime::http::{ApiError, query_pairs};
use runtime::now_ms;
use runtime::reports::ShopReports;
use serde::Serialize;
use utoipa::OpenApi;

use super::delivery;
use super::job::AnalyticsConfig;
use super::live::Live;
use super::query::{self, Grain, Range, RangeError, label, parse_time};
use model::ProductId;
use model::payload::StockLow;

#[derive(Clone)]
struct AppState {
    reports: Reports,
    auth: Authenticator,
}

/// The live numbers as every metric's answer: the route's, and the dashboards' through
/// [`ShopReports`].
#[derive(Clone)]
pub struct Reports {
    live: Arc<RwLock<Live>>,
    config: AnalyticsConfig,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("max_limit", &self.config.max_limit)
            .finish_non_exhaustive()
    }
}

impl Reports {
    pub(super) fn new(live: Arc<RwLock<Live>>, config: AnalyticsConfig) -> Self {
        Self { live, config }
    }
}

impl ShopReports for Reports {
    fn report(
        &self,
        merchant_id: &str,
        metric: &str,
        query: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let report = answer(
            self,
            false,
            merchant_id.to_owned(),
            metric.to_owned(),
            query,
        )?;
        serde_json::to_value(report)
            .map_err(|error| ApiError::internal(format!("analytics answer: {error}")))
    }

    fn alerts(&self, merchant_id: &str) -> Result<serde_json::Value, ApiError> {
        serde_json::to_value(alerts_answer(self, false, merchant_id.to_owned())?)
            .map_err(|error| ApiError::internal(format!("alerts answer: {error}")))
    }

    fn live_from(&self) -> Option<i64> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        (live.now > 0).then(|| live.window_start(&self.config.live))
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}

/// Routes of the stage, for the front door.
pub(super) fn routes(reports: Reports, keys: Arc<dyn Keys>, limiter: Arc<Limiter>) -> Router {
    Router::new()
        .route(
            "/v1/merchants/{merchant_id}/analytics/{metric}",
            get(analytics),
        )
        .route("/v1/merchants/{merchant_id}/alerts", get(alerts))
        .with_state(AppState {
            reports,
            auth: Authenticator { keys, limiter },
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(analytics, alerts),
    components(schemas(
        AlertsAnswer,
        AlertRow,
        CoverRow,
        Grain,
        query::Sales,
        query::Funnel,
        query::Searches,
        query::TopProduct,
        query::TopQuery,
        delivery::DeliveryRow,
        delivery::Late
    )),
    tags((name = "analytics", description = "a merchant's shop in numbers"))
)]
struct ApiDoc;

pub(super) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

const METRICS: &str = "sales, funnel, products, search, refunds and delivery";

/// What every answer carries besides its metric's numbers.
#[derive(Debug, Serialize)]
struct Report<T: Serialize> {
    merchant_id: String,
    metric: String,
    grain: Grain,
    from: String,
    to: String,
    /// The earliest instant the live numbers hold.
    live_from: String,
    #[serde(flatten)]
    body: T,
}

/// A merchant's numbers over a range, live from the event streams.
///
/// `sales`: orders, units, GMV, refunds, net and AOV per point and in total (money in minor
/// units by currency code). `funnel`: views, cart adds, orders and conversion. `products`:
/// the best sellers over the IST days the range touches, with views and conversion.
/// `search`: searches in the shop, zero-result searches and click-through, with the top and
/// the zero-result queries. `refunds`: cancellations and refunds, by reason and refund tier.
/// `delivery`: deliveries over the IST days the range touches against the promised dates
/// (on-time rate, days from shipment to delivery at p50/p90, mean slack), by courier and by
/// destination state, and the late ones (delivered late, or past the promise and on the way).
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/analytics/{metric}",
    tag = "analytics",
    params(
        ("merchant_id" = String, Path),
        ("metric" = String, Path, description = "sales, funnel, products, search, refunds or delivery"),
        ("from" = Option<String>, Query, description = "start: `YYYY-MM-DD` (IST midnight), `YYYY-MM-DDTHH:MM[:SS]` (IST, or UTC ending in `Z`) or epoch ms; default the start of today (IST)"),
        ("to" = Option<String>, Query, description = "end (exclusive), same forms; default now"),
        ("grain" = Option<Grain>, Query, description = "minute, hour (default), day, week or month, in IST"),
        ("limit" = Option<u32>, Query, description = "longest list (products, queries), 1-100, default 10"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`{merchant_id, metric, grain, from, to, live_from, ...}` with the metric's `series` and `totals` (and `products`, `top_queries`, `zero_result_queries`, `by_reason`, `refund_tiers`; for `delivery` `totals`, `by_courier`, `by_state` and `late` instead)", content_type = "application/json"),
        (status = 400, description = "a parameter is malformed or out of range (`invalid_parameter`), or the grain gives too many points for the range (`grain_too_fine`, naming a coarser one)", body = model::api::ErrorBody),
        (status = 401, description = "no key, or an unknown one (`unauthorized`)", body = model::api::ErrorBody),
        (status = 403, description = "a merchant key asking for another shop, or a key that is neither merchant nor admin (`forbidden`)", body = model::api::ErrorBody),
        (status = 404, description = "no such metric (`unknown_metric`), or a merchant the stream has never seen (`unknown_merchant`, admin keys)", body = model::api::ErrorBody),
        (status = 422, description = "the range starts before what the live numbers hold (`outside_live_window`)", body = model::api::ErrorBody),
        (status = 429, description = "over the key's rate (`rate_limited`)", body = model::api::ErrorBody),
    )
)]
async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    Path((merchant_id, metric)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Report<serde_json::Value>>, ApiError> {
    caller.may_read_shop(&merchant_id, "analytics")?;
    let report = answer(
        &state.reports,
        caller.role == Role::Admin,
        merchant_id,
        metric,
        raw.as_deref(),
    )?;
    Ok(Json(report))
}

/// `metric` of `merchant_id` over the range `raw` asks for. `unknown_is_an_error`: a shop no
/// event has named is a 404 (for admins, who may name any id) rather than zeros.
fn answer(
    state: &Reports,
    unknown_is_an_error: bool,
    merchant_id: String,
    metric: String,
    raw: Option<&str>,
) -> Result<Report<serde_json::Value>, ApiError> {
    if !matches!(
        metric.as_str(),
        "sales" | "funnel" | "products" | "search" | "refunds" | "delivery"
    ) {
        return Err(ApiError::new(
            ErrorCode::UnknownMetric,
            format!("no metric {metric:?}; there are {METRICS}"),
        ));
    }
    let now = now_ms();
    let (mut from, mut to, mut grain, mut limit) = (None, None, Grain::Hour, 10usize);
    for (name, value) in query_pairs(raw)? {
        let time = |value: &str| {
            parse_time(value).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{name} {value:?} is not a time between 2000 and 2100: use YYYY-MM-DD, YYYY-MM-DDTHH:MM (IST), the same ending in Z (UTC), or epoch milliseconds"
                ))
            })
        };
        match name.as_str() {
            "from" => from = Some(time(&value)?),
            "to" => to = Some(time(&value)?),
            "grain" => {
                grain = Grain::parse(&value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "grain {value:?} is not one of minute, hour, day, week, month"
                    ))
                })?;
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=state.config.max_limit).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "limit {value:?} must be a whole number from 1 to {}",
                            state.config.max_limit
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter {other:?}; analytics take from, to, grain and limit"
                )));
            }
        }
    }
    let from = from.unwrap_or_else(|| Grain::Day.floor(now));
    let to = to.unwrap_or_else(|| Grain::Minute.floor(now) + super::live::MINUTE_MS);
    let range = Range::new(from, to, grain, now).map_err(|error| match error {
        RangeError::Invalid(message) => ApiError::invalid(message),
        RangeError::GrainTooFine(message) => ApiError::new(ErrorCode::GrainTooFine, message),
    })?;

    let live = state.live.read().unwrap_or_else(PoisonError::into_inner);
    let live_from = live.window_start(&state.config.live);
    if live.now > 0 && range.from < live_from {
        return Err(ApiError::new(
            ErrorCode::OutsideLiveWindow,
            format!(
                "live analytics hold the last {} hours, from {}; this range starts at {}. Earlier days need the lakehouse's daily rollups, which this build does not serve yet",
                state.config.live.window_hours,
                label(live_from),
                label(range.from)
            ),
        ));
    }
    if unknown_is_an_error {
        known(&live, &merchant_id)?;
    }
    let shop = live.shops.get(&merchant_id);
    let value = |body: Result<serde_json::Value, serde_json::Error>| {
        body.map_err(|error| ApiError::internal(format!("analytics answer: {error}")))
    };
    let body = match metric.as_str() {
        "sales" => value(serde_json::to_value(query::sales(shop, &range)))?,
        "funnel" => value(serde_json::to_value(query::funnel(shop, &range)))?,
        "products" => {
            let products = query::top_products(
                shop,
                &range,
                |id| live.products.get(id).map(|(_, title)| title.clone()),
                limit,
            );
            serde_json::json!({ "products": products })
        }
        "search" => value(serde_json::to_value(query::search(shop, &range, limit)))?,
        "delivery" => {
            let open = live.shipments.get(&merchant_id).into_iter().flatten();
            value(serde_json::to_value(delivery::report(
                shop, &range, open, now,
            )))?
        }
        _ => value(serde_json::to_value(query::cancellations(shop, &range)))?,
    };
    Ok(Report {
        merchant_id,
        metric,
        grain: range.grain,
        from: label(range.from),
        to: label(range.to),
        live_from: label(live_from),
        body,
    })
}

/// A merchant's low-stock alerts and what runs low now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AlertsAnswer {
    merchant_id: String,
    /// Alerts raised, newest first: one each time a product's cover fell below its
    /// warehouse's restock lead time.
    alerts: Vec<AlertRow>,
    /// Products whose cover is below their lead time now, least cover first.
    running_low: Vec<CoverRow>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AlertRow {
    alert_id: String,
    /// When the cover fell (the event time of the inventory change), IST.
    raised_at: String,
    /// The product's stock as it stood then.
    #[serde(flatten)]
    stock: CoverRow,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CoverRow {
    product_id: String,
    title: Option<String>,
    warehouse_id: String,
    /// On hand minus reserved.
    available: i64,
    /// Units sold per day over the trailing window.
    daily_velocity: f64,
    /// `null` when it has not sold in the window.
    days_of_cover: Option<f64>,
    restock_lead_days: u32,
}

impl CoverRow {
    fn of(low: &StockLow, title: Option<String>) -> CoverRow {
        CoverRow {
            product_id: low.product_id.as_str().to_owned(),
            title,
            warehouse_id: low.warehouse_id.as_str().to_owned(),
            available: low.available,
            daily_velocity: low.daily_velocity(),
            days_of_cover: low.days_of_cover(),
            restock_lead_days: low.restock_lead_days,
        }
    }
}

/// A merchant's low-stock alerts, and its products running low now.
///
/// Days of cover are available units (on hand minus reserved) over units sold per day in the
/// trailing `analytics.stock.velocity_days` (7 by default); a product's alert is raised when
/// its cover falls below its warehouse's restock lead time, once per crossing: it is raised
/// again only after the cover has been back at or above the lead time. Each alert is also
/// published as an `inventory.stock_low` event.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/alerts",
    tag = "analytics",
    params(("merchant_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the shop's alerts, newest first, and what runs low now", body = AlertsAnswer),
        (status = 400, description = "a query parameter was given; this route takes none (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 401, description = "no key, or an unknown one (`unauthorized`)", body = model::api::ErrorBody),
        (status = 403, description = "a merchant key asking for another shop, or a key that is neither merchant nor admin (`forbidden`)", body = model::api::ErrorBody),
        (status = 404, description = "a merchant the stream has never seen (`unknown_merchant`, admin keys)", body = model::api::ErrorBody),
        (status = 429, description = "over the key's rate (`rate_limited`)", body = model::api::ErrorBody),
    )
)]
async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    Path(merchant_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AlertsAnswer>, ApiError> {
    caller.may_read_shop(&merchant_id, "alerts")?;
    if let Some((name, _)) = query_pairs(raw.as_deref())?.into_iter().next() {
        return Err(ApiError::invalid(format!(
            "unknown parameter {name:?}; alerts take none"
        )));
    }
    let answer = alerts_answer(&state.reports, caller.role == Role::Admin, merchant_id)?;
    Ok(Json(answer))
}

/// `unknown_is_an_error`: a shop no event has named is `404 unknown_merchant` (for admin keys,
/// which may name any id) rather than an empty answer.
fn alerts_answer(
    reports: &Reports,
    unknown_is_an_error: bool,
    merchant_id: String,
) -> Result<AlertsAnswer, ApiError> {
    let live = reports.live.read().unwrap_or_else(PoisonError::into_inner);
    if unknown_is_an_error {
        known(&live, &merchant_id)?;
    }
    let title = |product: &ProductId| {
        live.products
            .get(product.as_str())
            .map(|(_, title)| title.clone())
    };
    let alerts = live
        .stock
        .alerts_of(&merchant_id)
        .into_iter()
        .map(|alert| AlertRow {
            alert_id: alert.alert_id.to_string(),
            raised_at: label(alert.at),
            stock: CoverRow::of(&alert.low, title(&alert.low.product_id)),
        })
        .collect();
    let running_low = live
        .stock
        .running_low(&merchant_id, now_ms(), &reports.config.stock)
        .iter()
        .map(|low| CoverRow::of(low, title(&low.product_id)))
        .collect();
    Ok(AlertsAnswer {
        merchant_id,
        alerts,
        running_low,
    })
}

/// `404 unknown_merchant` for a shop no event has named (asked for by an admin key, which may
/// name any id).
fn known(live: &Live, merchant_id: &str) -> Result<(), ApiError> {
    if live.knows(merchant_id) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnknownMerchant,
        format!("no event has named merchant {merchant_id:?}"),
    ))
}
