//! `GET /v1/trending?window=5m&limit=10`.

use std::sync::{Arc, RwLock};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::api::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use super::{Board, TrendingAnswer};

#[derive(Clone)]
struct AppState {
    board: Arc<RwLock<Board>>,
    default_window_ms: i64,
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
    window: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct TrendingResponse {
    /// The window as asked, e.g. "5m".
    window: String,
    #[serde(flatten)]
    answer: TrendingAnswer,
}

/// The trending routes, with a JSON 404 for every other path.
pub fn router(board: Arc<RwLock<Board>>, default_window_ms: i64, max_limit: usize) -> Router {
    let state = AppState {
        board,
        default_window_ms,
        max_limit,
    };
    Router::new()
        .route("/v1/trending", get(trending))
        .fallback(|| async {
            ApiError {
                code: ErrorCode::NotFound,
                message: "no such endpoint; try GET /v1/trending".into(),
            }
        })
        .with_state(state)
}

async fn trending(
    State(state): State<AppState>,
    query: Result<Query<TrendingQuery>, QueryRejection>,
) -> Result<Json<TrendingResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let board = state
        .board
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (bucket_ms, retain_ms) = (board.bucket_ms(), board.retain_ms());
    let window_ms = match &query.window {
        None => state.default_window_ms,
        Some(text) => parse_window(text)
            .filter(|ms| *ms > 0 && ms % bucket_ms == 0 && *ms <= retain_ms)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "window {text:?} must be a duration such as 30s, 5m or 1h, a whole number of \
                     {} buckets, at most {}",
                    format_window(bucket_ms),
                    format_window(retain_ms)
                ))
            })?,
    };
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
    let answer = board.top(window_ms, limit);
    Ok(Json(TrendingResponse {
        window: format_window(window_ms),
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
