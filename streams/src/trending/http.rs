//! `GET /v1/trending?scope=&key=&window=&limit=`.

use std::sync::{Arc, RwLock};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use model::MerchantId;
use runtime::http::ApiError;
use runtime::window::Hopping;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use super::view::{Audience, TrendingAnswer, TrendingView};

#[derive(Clone)]
struct AppState {
    view: Arc<RwLock<TrendingView>>,
    max_limit: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrendingQuery {
    scope: Option<String>,
    key: Option<String>,
    window: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct TrendingResponse {
    scope: &'static str,
    key: Option<String>,
    /// The window as asked, e.g. "5m".
    window: String,
    #[serde(flatten)]
    answer: TrendingAnswer,
}

/// `GET /v1/trending`, for the front door.
pub(super) fn routes(view: Arc<RwLock<TrendingView>>, max_limit: usize) -> Router {
    Router::new()
        .route("/v1/trending", get(trending))
        .with_state(AppState { view, max_limit })
}

#[derive(OpenApi)]
#[openapi(
    paths(trending),
    tags((name = "trending", description = "top products per window and audience"))
)]
struct ApiDoc;

/// The OpenAPI description of [`routes`].
pub(super) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

fn audience(
    scope: Option<&str>,
    key: Option<String>,
) -> Result<(&'static str, Audience), ApiError> {
    let scope = scope.unwrap_or("global");
    let keyed = |name: &'static str| {
        key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            ApiError::invalid(format!(
                "scope={name} needs key=<{name}>, e.g. scope={name}&key=..."
            ))
        })
    };
    match scope {
        "global" if key.is_none() => Ok(("global", Audience::Global)),
        "global" => Err(ApiError::invalid("scope=global takes no key")),
        "category" => Ok(("category", Audience::Category(keyed("category")?))),
        "city" => Ok(("city", Audience::City(keyed("city")?))),
        "merchant" => Ok((
            "merchant",
            Audience::Merchant(MerchantId::new(keyed("merchant")?)),
        )),
        other => Err(ApiError::invalid(format!(
            "scope {other:?} must be one of global, category, city, merchant"
        ))),
    }
}

/// The top products of the newest whole window for an audience, with how fast each rises
/// against the window before. Needs no API key.
#[utoipa::path(
    get,
    path = "/v1/trending",
    tag = "trending",
    params(
        ("scope" = Option<String>, Query, description = "global (default), merchant, city or category"),
        ("key" = Option<String>, Query, description = "the merchant id, city (India Post district) or category; not with global"),
        ("window" = Option<String>, Query, description = "a configured window, e.g. 5m (default: the first), 1h, 24h"),
        ("limit" = Option<u32>, Query, description = "how many products, 1 to trending.max_limit (default 10)"),
    ),
    responses(
        (status = 200, description = "the window's top products, best first, and `other`: what products past `trending.max_products_per_pane` added (absent for a category)", content_type = "application/json"),
        (status = 400, description = "a parameter is missing or out of range (`invalid_parameter`)", body = model::api::ErrorBody),
    )
)]
async fn trending(
    State(state): State<AppState>,
    query: Result<Query<TrendingQuery>, QueryRejection>,
) -> Result<Json<TrendingResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let (scope, audience) = audience(query.scope.as_deref(), query.key.clone())?;
    let view = state
        .view
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let windows: Vec<Hopping> = view.windows().copied().collect();
    let window = match &query.window {
        None => windows.first().copied(),
        Some(text) => {
            parse_window(text).and_then(|ms| windows.iter().find(|w| w.size_ms() == ms).copied())
        }
    }
    .ok_or_else(|| {
        let known: Vec<String> = windows.iter().map(|w| format_window(w.size_ms())).collect();
        ApiError::invalid(format!(
            "window {:?} must be one of {}",
            query.window.as_deref().unwrap_or_default(),
            known.join(", ")
        ))
    })?;
    let limit = match &query.limit {
        None => 10.min(state.max_limit),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=state.max_limit).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "limit {text:?} must be a whole number from 1 to {}",
                    state.max_limit
                ))
            })?,
    };
    let answer = view.top(&window, &audience, limit);
    Ok(Json(TrendingResponse {
        scope,
        key: query.key,
        window: format_window(window.size_ms()),
        answer,
    }))
}

/// `250ms`, `30s`, `5m`, `1h` -> milliseconds.
fn parse_window(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(unit_ms)
}

fn format_window(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print() {
        assert_eq!(parse_window("5m"), Some(300_000));
        assert_eq!(parse_window("1h"), Some(3_600_000));
        assert_eq!(parse_window("250ms"), Some(250));
        for bad in ["", "5", "m", "5x", "-5m", "5 m"] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
        assert_eq!(format_window(300_000), "5m");
        assert_eq!(format_window(90_000), "90s");
    }
}
