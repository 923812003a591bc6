//! `GET /v1/trending?scope=&key=&window=&limit=` and `GET /metrics`.

use std::sync::{Arc, RwLock};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::MerchantId;
use model::api::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use super::view::{Audience, TrendingAnswer, TrendingView};
use crate::runtime::metrics::Metrics;
use crate::runtime::window::Hopping;

#[derive(Clone)]
struct AppState {
    view: Arc<RwLock<TrendingView>>,
    metrics: Arc<Metrics>,
    max_limit: usize,
}

/// An error answer from the stable table in [`model::api`].
#[derive(Debug)]
struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidParameter,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
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

/// The trending routes and `/metrics`, with a JSON 404 for every other path.
pub fn router(view: Arc<RwLock<TrendingView>>, metrics: Arc<Metrics>, max_limit: usize) -> Router {
    let state = AppState {
        view,
        metrics,
        max_limit,
    };
    Router::new()
        .route("/v1/trending", get(trending))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            ApiError {
                code: ErrorCode::NotFound,
                message: "no such endpoint; try GET /v1/trending or GET /metrics".into(),
            }
        })
        .with_state(state)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render("trending"),
    )
        .into_response()
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
