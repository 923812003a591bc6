//! The recommendation routes. Every parameter is checked and a wrong one named in a 400;
//! unknown ids are not errors (they get the cold-start answer). Answers are computed off the
//! I/O threads, at most `max_in_flight` at once; the rest get 503 with Retry-After.

use runtime::now_ms;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use model::api::ErrorCode;
use model::limits::NAME_CHARS;
use model::{CustomerId, MerchantId, Pincode, ProductId, SessionId};
use runtime::http::{ApiError, parse_json, query_pairs};
use serde::Deserialize;
use tokio::sync::Semaphore;
use utoipa::OpenApi;

use crate::RecommendConfig;
use crate::engine::{Answer, Asked, Engine, Filters, Refused};

/// Most items a session request may carry, and most results.
pub const MAX_ITEMS: usize = 100;

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
}

pub(crate) fn routes(engine: Arc<Engine>, config: &RecommendConfig) -> Router {
    Router::new()
        .route("/v1/recommendations/similar", get(similar))
        .route("/v1/recommendations/bought-together", get(bought_together))
        .route(
            "/v1/recommendations/session",
            get(live_session).post(session),
        )
        .route("/v1/recommendations/for-you", get(for_you))
        .with_state(AppState {
            engine,
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(similar, bought_together, session, live_session, for_you),
    tags((name = "recommendations", description = "what else a shopper should see"))
)]
struct ApiDoc;

pub(crate) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// An id as the API accepts it: 1-100 characters, no spaces or control characters.
fn id(name: &str, text: &str) -> Result<String, ApiError> {
    let chars = text.chars().count();
    if chars == 0 || chars > NAME_CHARS || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid(format!(
            "{name} {text:?} is not an id: 1-{NAME_CHARS} characters without spaces"
        )));
    }
    Ok(text.to_owned())
}

fn limit(text: &str) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .ok()
        .filter(|v| (1..=MAX_ITEMS).contains(v))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "limit {text:?} must be a whole number from 1 to {MAX_ITEMS}"
            ))
        })
}

fn pincode(text: &str) -> Result<Pincode, ApiError> {
    Pincode::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "pincode {text:?} is not a pincode: six digits, the first 1-9"
        ))
    })
}

fn in_stock(text: &str) -> Result<bool, ApiError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid(format!(
            "in_stock {text:?} must be true or false"
        ))),
    }
}

fn exclusions(text: &str, into: &mut Vec<ProductId>) -> Result<(), ApiError> {
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        into.push(ProductId::new(id("exclude", part)?));
    }
    if into.len() > MAX_ITEMS {
        return Err(ApiError::invalid(format!(
            "exclude lists {} products; the most is {MAX_ITEMS}",
            into.len()
        )));
    }
    Ok(())
}

/// The query string's parameters: the one id this route is about (`subject`), and the
/// filters every route takes.
fn parse(raw: Option<&str>, subject: &str) -> Result<(Option<String>, Asked), ApiError> {
    let pairs = query_pairs(raw)?;
    let mut asked = Asked {
        limit: 10,
        filters: Filters {
            in_stock: true,
            ..Filters::default()
        },
        now_ms: now_ms(),
    };
    let mut about = None;
    for (name, value) in pairs {
        match name.as_str() {
            n if !subject.is_empty() && n == subject => about = Some(id(&name, &value)?),
            "limit" => asked.limit = limit(&value)?,
            "merchant_id" => {
                asked.filters.merchant = Some(MerchantId::new(id(&name, &value)?));
            }
            "pincode" => asked.filters.pincode = Some(pincode(&value)?),
            "in_stock" => asked.filters.in_stock = in_stock(&value)?,
            "exclude" => exclusions(&value, &mut asked.filters.exclude)?,
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter {other:?}; this route takes {}limit, merchant_id, pincode, in_stock and exclude",
                    if subject.is_empty() {
                        String::new()
                    } else {
                        format!("{subject}, ")
                    }
                )));
            }
        }
    }
    Ok((about, asked))
}

fn required(value: Option<String>, name: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

fn refused(error: Refused) -> ApiError {
    match error {
        Refused::NoDeliverability => ApiError::new(ErrorCode::Unavailable, error.to_string()),
        Refused::Failed(error) => ApiError::internal(error),
    }
}

/// Runs `work` on a blocking thread when a permit is free; 503 otherwise.
async fn bounded(
    state: &AppState,
    work: impl FnOnce(&Engine) -> Result<Answer, Refused> + Send + 'static,
) -> Result<Json<Answer>, ApiError> {
    let permit = Arc::clone(&state.permits)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Overloaded,
                "recommendations are answering as many requests as they can; retry shortly",
            )
            .retry_after(1)
        })?;
    let engine = Arc::clone(&state.engine);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work(&engine)
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
    .map_err(refused)
}

/// Products viewed together with this one, blended with its embedding neighbours.
#[utoipa::path(
    get,
    path = "/v1/recommendations/similar",
    tag = "recommendations",
    params(
        ("product_id" = String, Query, description = "the product on the page (unknown ids get trending items)"),
        Filtering,
    ),
    responses(
        (status = 200, description = "`{known, items: [{product_id, score, source, deliverable_by?}]}`; `source` is co_visitation, embedding, bought_together, session, for_you, trending_category or trending_global; `known` is false when the answer is the cold-start fallback", content_type = "application/json"),
        (status = 400, description = "a parameter is wrong (`invalid_parameter`); the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn similar(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Answer>, ApiError> {
    let (product, asked) = parse(raw.as_deref(), "product_id")?;
    let product = ProductId::new(required(product, "product_id")?);
    bounded(&state, move |engine| engine.similar(&product, &asked)).await
}

/// Products carted or ordered together with this one.
#[utoipa::path(
    get,
    path = "/v1/recommendations/bought-together",
    tag = "recommendations",
    params(
        ("product_id" = String, Query, description = "the product in the cart or on the page"),
        Filtering,
    ),
    responses(
        (status = 200, description = "`{known, items: [{product_id, score, source, deliverable_by?}]}`; `source` is co_visitation, embedding, bought_together, session, for_you, trending_category or trending_global; `known` is false when the answer is the cold-start fallback", content_type = "application/json"),
        (status = 400, description = "a parameter is wrong (`invalid_parameter`); the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn bought_together(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Answer>, ApiError> {
    let (product, asked) = parse(raw.as_deref(), "product_id")?;
    let product = ProductId::new(required(product, "product_id")?);
    bounded(&state, move |engine| {
        engine.bought_together(&product, &asked)
    })
    .await
}

/// The filters every route takes, for the OpenAPI document; `parse` reads them (strictly,
/// naming an unknown one), so the struct itself is never built.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Filtering {
    /// Most items, 1-100 (default 10).
    limit: Option<u32>,
    /// Only this shop's products.
    merchant_id: Option<String>,
    /// Only what can be delivered there; adds `deliverable_by`.
    pincode: Option<String>,
    /// Only products in stock (default true).
    in_stock: Option<bool>,
    /// Product ids not to show, comma-separated (at most 100).
    exclude: Option<String>,
}

/// A session's items, as the storefront knows them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    /// Product ids, oldest first (at most 100).
    items: Vec<String>,
    /// Most items, 1-100 (default 10).
    limit: Option<usize>,
    merchant_id: Option<String>,
    pincode: Option<String>,
    /// Only products in stock (default true).
    in_stock: Option<bool>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// The next items for a session's items (oldest first).
#[utoipa::path(
    post,
    path = "/v1/recommendations/session",
    tag = "recommendations",
    request_body = SessionBody,
    responses(
        (status = 200, description = "`{known, items: [{product_id, score, source, deliverable_by?}]}`; `source` is co_visitation, embedding, bought_together, session, for_you, trending_category or trending_global; `known` is false when the answer is the cold-start fallback", content_type = "application/json"),
        (status = 400, description = "the body is not `{items, limit?, merchant_id?, pincode?, in_stock?, exclude?}` or a field is wrong (`invalid_parameter`, `invalid_json`); the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn session(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Json<Answer>, ApiError> {
    let (_, mut asked) = parse(raw.as_deref(), "")?;
    let body: SessionBody = parse_json(&body)?;
    if body.items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(format!(
            "items lists {} products; the most is {MAX_ITEMS}",
            body.items.len()
        )));
    }
    let items = body
        .items
        .iter()
        .map(|p| id("items[]", p).map(ProductId::new))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(n) = body.limit {
        asked.limit = limit(&n.to_string())?;
    }
    if let Some(merchant) = body.merchant_id {
        asked.filters.merchant = Some(MerchantId::new(id("merchant_id", &merchant)?));
    }
    if let Some(code) = body.pincode {
        asked.filters.pincode = Some(pincode(&code)?);
    }
    if let Some(flag) = body.in_stock {
        asked.filters.in_stock = flag;
    }
    exclusions(&body.exclude.join(","), &mut asked.filters.exclude)?;
    bounded(&state, move |engine| engine.session(&items, &asked)).await
}

/// The next items for a live session the stream has seen.
#[utoipa::path(
    get,
    path = "/v1/recommendations/session",
    tag = "recommendations",
    params(
        ("session_id" = String, Query, description = "the storefront's session id (unknown sessions get trending items)"),
        Filtering,
    ),
    responses(
        (status = 200, description = "`{known, items: [{product_id, score, source, deliverable_by?}]}`; `source` is co_visitation, embedding, bought_together, session, for_you, trending_category or trending_global; `known` is false when the answer is the cold-start fallback", content_type = "application/json"),
        (status = 400, description = "a parameter is wrong (`invalid_parameter`); the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn live_session(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Answer>, ApiError> {
    let (session, asked) = parse(raw.as_deref(), "session_id")?;
    let session = SessionId::new(required(session, "session_id")?);
    bounded(&state, move |engine| engine.live_session(&session, &asked)).await
}

/// For a customer, from their recent interactions and favourite categories, without what
/// they already bought.
#[utoipa::path(
    get,
    path = "/v1/recommendations/for-you",
    tag = "recommendations",
    params(
        ("customer_id" = String, Query, description = "the signed-in customer (unknown customers get trending items)"),
        Filtering,
    ),
    responses(
        (status = 200, description = "`{known, items: [{product_id, score, source, deliverable_by?}]}`; `source` is co_visitation, embedding, bought_together, session, for_you, trending_category or trending_global; `known` is false when the answer is the cold-start fallback", content_type = "application/json"),
        (status = 400, description = "a parameter is wrong (`invalid_parameter`); the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn for_you(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Answer>, ApiError> {
    let (customer, asked) = parse(raw.as_deref(), "customer_id")?;
    let customer = CustomerId::new(required(customer, "customer_id")?);
    bounded(&state, move |engine| engine.for_you(&customer, &asked)).await
}
