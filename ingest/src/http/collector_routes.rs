//! `POST /v1/events`: one JSON event (`Content-Type: application/json`) or an NDJSON batch.
//! Valid lines go to their topics, invalid ones to the DLQ with the reason, and the answer
//! waits until the broker acknowledged every one of them; if it does not in time, 503 with
//! Retry-After and the client sends the batch again (event ids make the resend harmless).

use model::api::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::future::{BoxFuture, FutureExt as _, join_all};
use model::dlq::Reason;
use serde::Serialize;

use super::auth::{Caller, Role};
use super::{ApiError, CoreState, require};
use crate::collector::{self, CollectorConfig};

/// The collector's way to Kafka.
#[derive(Clone)]
pub struct Collector {
    pub producer: Arc<bus::Producer>,
    pub config: CollectorConfig,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(super) fn routes() -> Router<CoreState> {
    Router::new().route("/v1/events", post(collect))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct LineResult {
    line: usize,
    /// `accepted` (on its topic) or `rejected` (in the DLQ with `code`).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BatchAnswer {
    accepted: usize,
    rejected: usize,
    results: Vec<LineResult>,
}

type Ack = BoxFuture<'static, bus::Result<bus::Delivered>>;

/// The click and search collector: one JSON envelope or NDJSON, one envelope per line. Answers after the broker acknowledged every line; rejected lines go to the `dlq` topic with the reason.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "collector",
    request_body(
        description = "envelopes, one per line (see model/tests/golden/); or one envelope as application/json",
        content((String = "application/x-ndjson"), ("application/json"))
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "per-line results", body = BatchAnswer),
        (status = 413, description = "body over the limit (`payload_too_large`)", body = model::api::ErrorBody),
        (status = 422, description = "a single application/json envelope that is not an event we accept, with the decoder's code (e.g. `missing_field`); NDJSON lines are answered per line in a 200", body = model::api::ErrorBody),
        (status = 503, description = "the broker did not acknowledge in time (`unavailable`); resend", body = model::api::ErrorBody),
    )
)]
pub(super) async fn collect(
    State(state): State<CoreState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require(&caller, &[Role::Storefront, Role::Collector, Role::Admin])?;
    let collector = state
        .collector
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "this server runs no collector"))?;
    let config = &collector.config;
    let bytes = axum::body::to_bytes(body, config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the body exceeds {} bytes; split the batch",
                    config.max_body_bytes
                ),
            )
        })?;
    let single = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let items: Vec<(usize, &[u8])> = if single {
        vec![(1, &bytes[..])]
    } else {
        collector::lines(&bytes).collect()
    };
    if items.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "the body holds no events",
        ));
    }
    if items.len() > config.max_lines {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} lines; at most {} per request",
                items.len(),
                config.max_lines
            ),
        ));
    }

    // The rate limit counts events, not requests: the call itself took one token.
    if items.len() > 1 {
        state
            .limiter
            .take_n(&caller.key_hash, items.len() - 1, std::time::Instant::now())
            .map_err(|wait| {
                ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{} events are over this key's rate; retry in {wait} s",
                        items.len()
                    ),
                )
                .retry_after(wait)
            })?;
    }
    let only = caller.bound_merchant();
    let now = state.now();
    let unavailable = |detail: String| {
        tracing::warn!(%detail, "collector cannot reach the broker");
        ApiError::new(ErrorCode::Unavailable,
            format!("the event bus did not acknowledge the batch ({detail}); nothing was accepted, send it again"),
        )
        .retry_after(5)
    };
    let mut acks: Vec<Ack> = Vec::with_capacity(items.len());
    let mut results = Vec::with_capacity(items.len());
    for (line, bytes) in items {
        match collector::validate(bytes, now, config, only) {
            Ok(envelope) => {
                let payload = model::codec::encode(&envelope);
                let ack = collector
                    .producer
                    .enqueue(bus::OutRecord {
                        topic: envelope.topic(),
                        key: envelope.key().as_bytes(),
                        payload: &payload,
                        headers: &[],
                    })
                    .map_err(|e| unavailable(e.to_string()))?;
                acks.push(ack.boxed());
                results.push(LineResult {
                    line,
                    status: "accepted",
                    event_id: Some(envelope.event_id.to_string()),
                    code: None,
                    message: None,
                });
            }
            Err(rejection) => {
                let reason = Reason::new(rejection.code.as_str(), rejection.message.clone());
                let ack = collector
                    .producer
                    .enqueue_dead_letter(b"", bytes, "collector", "http:/v1/events", &reason)
                    .map_err(|e| unavailable(e.to_string()))?;
                acks.push(ack.boxed());
                results.push(LineResult {
                    line,
                    status: "rejected",
                    event_id: None,
                    code: Some(rejection.code.as_str()),
                    message: Some(format!("line {line}: {}", rejection.message)),
                });
            }
        }
    }
    let timeout = Duration::from_millis(config.ack_timeout_ms);
    let acked = tokio::time::timeout(timeout, join_all(acks))
        .await
        .map_err(|_| {
            unavailable(format!(
                "no acknowledgement within {} ms",
                config.ack_timeout_ms
            ))
        })?;
    if let Some(error) = acked.into_iter().find_map(Result::err) {
        return Err(unavailable(error.to_string()));
    }

    let rejected = results.iter().filter(|r| r.status == "rejected").count();
    if single && rejected == 1 {
        let only = &results[0];
        return Err(ApiError::new(
            only.code
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::InvalidEvent),
            only.message.clone().unwrap_or_default(),
        ));
    }
    let answer = BatchAnswer {
        accepted: results.len() - rejected,
        rejected,
        results,
    };
    Ok((StatusCode::OK, Json(answer)).into_response())
}
