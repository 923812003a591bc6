//! `GET /v1/search` and `GET /v1/suggest`. Every parameter is checked and a wrong one named
//! in a 400; searches run off the I/O threads, at most `max_in_flight` at once (the rest get
//! 503 with Retry-After rather than a queue); every answered search is published as
//! `search.performed` with the ids shown, in order.

use runtime::now_ms;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use bus::Producer;
use model::api::ErrorCode;
use model::payload::SearchPerformed;
use model::{CustomerId, Envelope, Event, MARKETPLACE, MerchantId, Pincode, SessionId, codec};
use prometheus_client::metrics::counter::Counter;
use runtime::http::{ApiError, query_pairs};
use runtime::metrics::Registry;
use tokio::sync::Semaphore;
use utoipa::OpenApi;

use crate::SearchConfig;
use crate::collect::FacetSet;
use crate::engine::{Answer, Engine, Refused, Request, Sort, Suggestion};

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    max_query_chars: usize,
    max_per_page: usize,
    producer: Producer,
    emitted: Counter,
    emit_failed: Counter,
}

pub(crate) fn routes(
    engine: Arc<Engine>,
    config: &SearchConfig,
    producer: Producer,
    registry: &Registry,
) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/suggest", get(suggest))
        .with_state(AppState {
            engine,
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            max_query_chars: config.max_query_chars,
            max_per_page: config.max_per_page,
            producer,
            emitted: registry.counter(
                "shopstream_search_performed_published",
                "search.performed events published",
                "search",
            ),
            emit_failed: registry.counter(
                "shopstream_search_performed_failed",
                "search.performed events the broker did not take (the search was answered)",
                "search",
            ),
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(search, suggest),
    tags((name = "search", description = "product search for the storefront"))
)]
struct ApiDoc;

pub(crate) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Comma-separated values, trimmed, empty ones dropped.
fn values(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn rupees(name: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 1e12)
        .map(|v| (v * 100.0).round() as i64)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{name} {text:?} must be an amount in rupees, 0 or more (e.g. 499 or 499.50)"
            ))
        })
}

fn whole(name: &str, text: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{name} {text:?} must be a whole number from {min} to {max}"
            ))
        })
}

fn non_empty(name: &str, text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid(format!("{name} must not be empty")));
    }
    Ok(text.to_owned())
}

/// Who searched, for `search.performed`.
#[derive(Debug, Default)]
struct Shopper {
    session_id: Option<SessionId>,
    customer_id: Option<CustomerId>,
}

fn parse_search(
    state: &AppState,
    raw: Option<&str>,
) -> Result<(Request, Shopper, BTreeMap<String, String>), ApiError> {
    let mut request = Request {
        page: 1,
        per_page: 20,
        facets: FacetSet {
            category: true,
            brand: true,
            price: true,
            ..FacetSet::default()
        },
        now_ms: now_ms(),
        ..Request::default()
    };
    let mut q = None;
    let mut shopper = Shopper::default();
    let mut shown_filters = BTreeMap::new();
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "q" => q = Some(value.clone()),
            "merchant_id" => {
                request.filters.merchant = Some(MerchantId::new(non_empty(&name, &value)?));
            }
            "category" => request.filters.categories.extend(values(&value)),
            "brand" => request.filters.brands.extend(values(&value)),
            "price_min" => request.filters.price_min = Some(rupees(&name, &value)?),
            "price_max" => request.filters.price_max = Some(rupees(&name, &value)?),
            "in_stock" => {
                request.filters.in_stock = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "in_stock {value:?} must be true or false"
                        )));
                    }
                });
            }
            "pincode" => {
                request.pincode = Some(Pincode::parse(&value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "pincode {value:?} is not a pincode: six digits, the first 1-9"
                    ))
                })?);
            }
            "sort" => {
                request.sort = Sort::parse(&value).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UnknownSort,
                        format!(
                            "sort {value:?} is not one of relevance, price_asc, price_desc, popularity, newest"
                        ),
                    )
                })?;
            }
            "page" => request.page = whole(&name, &value, 1, 10_000)?,
            "per_page" => request.per_page = whole(&name, &value, 1, state.max_per_page)?,
            "facets" => request.facets = facet_set(&value)?,
            "session_id" => shopper.session_id = Some(SessionId::new(non_empty(&name, &value)?)),
            "customer_id" => {
                shopper.customer_id = Some(CustomerId::new(non_empty(&name, &value)?));
            }
            other => match other.strip_prefix("attr.") {
                Some(attribute) if !attribute.is_empty() => request
                    .filters
                    .attributes
                    .entry(attribute.to_lowercase())
                    .or_default()
                    .extend(values(&value)),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "unknown parameter {other:?}; see /v1/openapi.json for /v1/search's parameters"
                    )));
                }
            },
        }
        if !matches!(
            name.as_str(),
            "q" | "page" | "per_page" | "facets" | "session_id" | "customer_id" | "sort"
        ) {
            shown_filters.insert(name, value);
        }
    }
    request.q = query_text(q, state.max_query_chars)?;
    Ok((request, shopper, shown_filters))
}

fn query_text(q: Option<String>, max_chars: usize) -> Result<String, ApiError> {
    let q = q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "q is required and must not be empty",
        ));
    }
    if q.chars().count() > max_chars {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "q is {} characters; the most is {max_chars}",
                q.chars().count()
            ),
        ));
    }
    Ok(q)
}

fn facet_set(text: &str) -> Result<FacetSet, ApiError> {
    let mut set = FacetSet::default();
    for name in values(text) {
        match name.as_str() {
            "category" => set.category = true,
            "brand" => set.brand = true,
            "price" => set.price = true,
            "attributes" => set.all_attributes = true,
            other => match other.strip_prefix("attr.") {
                Some(attribute) if !attribute.is_empty() => {
                    set.attributes.push(attribute.to_lowercase());
                }
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownFacet,
                        format!(
                            "facets: {other:?} is not one of category, brand, price, attributes, attr.<name>"
                        ),
                    ));
                }
            },
        }
    }
    Ok(set)
}

fn refused(error: Refused) -> ApiError {
    match error {
        Refused::NoWords => ApiError::new(ErrorCode::InvalidQuery, error.to_string()),
        Refused::UnknownAttribute(_) => {
            ApiError::new(ErrorCode::UnknownAttribute, error.to_string())
        }
        Refused::PageOutOfRange { .. } => {
            ApiError::new(ErrorCode::PageOutOfRange, error.to_string())
        }
        Refused::NoDeliverability => ApiError::new(ErrorCode::Unavailable, error.to_string()),
        Refused::Index(error) => ApiError::internal(error),
    }
}

/// Runs `work` on a blocking thread when a permit is free; 503 otherwise.
async fn bounded<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, Refused> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = Arc::clone(&state.permits)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Overloaded,
                "search is answering as many queries as it can; retry shortly",
            )
            .retry_after(1)
        })?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(refused)
}

/// Search the catalog.
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "search",
    params(
        ("q" = String, Query, description = "what the shopper typed (1-200 characters); typos are tolerated, the last word may be unfinished"),
        ("merchant_id" = Option<String>, Query, description = "only this shop's products (the whole marketplace when absent)"),
        ("category" = Option<String>, Query, description = "categories, comma-separated or repeated (any of them)"),
        ("brand" = Option<String>, Query, description = "brands, comma-separated or repeated (any of them)"),
        ("price_min" = Option<f64>, Query, description = "lowest price, rupees, inclusive"),
        ("price_max" = Option<f64>, Query, description = "highest price, rupees, inclusive"),
        ("in_stock" = Option<bool>, Query, description = "only products with (true) or without (false) stock on hand"),
        ("pincode" = Option<String>, Query, description = "only what can be delivered to this pincode; adds deliverable_by"),
        ("sort" = Option<String>, Query, description = "relevance (default), price_asc, price_desc, popularity, newest"),
        ("page" = Option<u32>, Query, description = "1-based page (default 1)"),
        ("per_page" = Option<u32>, Query, description = "results per page, 1-100 (default 20)"),
        ("facets" = Option<String>, Query, description = "facets to count: category, brand, price, attributes, attr.<name> (default category,brand,price)"),
        ("session_id" = Option<String>, Query, description = "the shopper's session, recorded on search.performed"),
        ("customer_id" = Option<String>, Query, description = "the signed-in customer, recorded on search.performed"),
    ),
    responses(
        (status = 200, description = "`{total, total_exact, hits: [{product_id, merchant_id, title, brand, category, price, in_stock, score, highlights, deliverable_by?}], facets, corrected_query?}`; filter by an attribute with `attr.<name>=<value>`", content_type = "application/json"),
        (status = 400, description = "a parameter is wrong: `invalid_query`, `invalid_parameter`, `unknown_sort`, `unknown_facet`, `unknown_attribute`, `page_out_of_range`; the message names it", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After) or no serviceability for `pincode` (`unavailable`)", body = model::api::ErrorBody),
    )
)]
async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Answer>, ApiError> {
    let (request, shopper, filters) = parse_search(&state, raw.as_deref())?;
    let engine = Arc::clone(&state.engine);
    let asked = request.clone();
    let answer = bounded(&state, move || engine.search(&asked)).await?;
    publish(&state, &request, shopper, filters, &answer);
    Ok(Json(answer))
}

/// Publishes what the search showed; the answer never waits for the broker.
fn publish(
    state: &AppState,
    request: &Request,
    shopper: Shopper,
    filters: BTreeMap<String, String>,
    answer: &Answer,
) {
    let merchant = request
        .filters
        .merchant
        .clone()
        .unwrap_or_else(|| MerchantId::new(MARKETPLACE));
    let event_id = uuid::Uuid::now_v7();
    let envelope = Envelope::new(
        event_id,
        request.now_ms,
        merchant,
        Event::SearchPerformed(SearchPerformed {
            session_id: shopper
                .session_id
                .unwrap_or_else(|| SessionId::new(format!("anonymous-{}", event_id.simple()))),
            customer_id: shopper.customer_id,
            query: answer
                .corrected_query
                .clone()
                .unwrap_or_else(|| request.q.clone()),
            filters,
            pincode: request.pincode,
            results: answer.hits.iter().map(|h| h.product_id.clone()).collect(),
        }),
    );
    let payload = codec::encode(&envelope);
    let sent = state.producer.enqueue(bus::OutRecord {
        topic: envelope.topic(),
        key: envelope.key().as_bytes(),
        payload: &payload,
        headers: &[],
    });
    let (emitted, failed) = (state.emitted.clone(), state.emit_failed.clone());
    match sent {
        Ok(acknowledged) => {
            tokio::spawn(async move {
                match acknowledged.await {
                    Ok(_) => {
                        emitted.inc();
                    }
                    Err(error) => {
                        failed.inc();
                        tracing::warn!(%error, "search.performed not published");
                    }
                };
            });
        }
        Err(error) => {
            failed.inc();
            tracing::warn!(%error, "search.performed not published");
        }
    }
}

/// Complete what a shopper is typing.
#[utoipa::path(
    get,
    path = "/v1/suggest",
    tag = "search",
    params(
        ("q" = String, Query, description = "what has been typed so far (1-200 characters)"),
        ("merchant_id" = Option<String>, Query, description = "complete within this shop"),
        ("limit" = Option<u32>, Query, description = "most completions, 1-20 (default 10)"),
    ),
    responses(
        (status = 200, description = "`{suggestions: [{text, kind}]}`, kind is query, brand, category or title, best first", content_type = "application/json"),
        (status = 400, description = "`invalid_query` or `invalid_parameter`, naming the parameter", body = model::api::ErrorBody),
        (status = 503, description = "at the admission limit (`overloaded`, with Retry-After)", body = model::api::ErrorBody),
    )
)]
async fn suggest(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Suggestions>, ApiError> {
    let (mut q, mut merchant, mut limit) = (None, None, 10);
    for (name, value) in query_pairs(raw.as_deref())? {
        match name.as_str() {
            "q" => q = Some(value),
            "merchant_id" => merchant = Some(MerchantId::new(non_empty(&name, &value)?)),
            "limit" => limit = whole(&name, &value, 1, 20)?,
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter {other:?}; /v1/suggest takes q, merchant_id and limit"
                )));
            }
        }
    }
    let q = query_text(q, state.max_query_chars)?;
    let engine = Arc::clone(&state.engine);
    let suggestions = bounded(&state, move || {
        engine.suggest(&q, merchant.as_ref(), limit, now_ms())
    })
    .await?;
    Ok(Json(Suggestions { suggestions }))
}

#[derive(Debug, serde::Serialize)]
struct Suggestions {
    suggestions: Vec<Suggestion>,
}
