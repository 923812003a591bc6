//! The `/v1` HTTP API of the orders core (axum): thin handlers that authenticate the caller,
//! parse the body strictly and call [`crate::catalog`], [`crate::orders`],
//! [`crate::lifecycle`] and [`crate::payments`]. Every error is
//! `{"error": {"code", "message"}}` with a stable code; see [`ApiError::status_for`].

pub mod auth;
mod catalog_routes;
mod collector_routes;
pub mod openapi;
mod order_routes;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use model::api::ErrorBody;
use serde::de::DeserializeOwned;

use crate::catalog::CatalogError;
use crate::lifecycle::{AddressRules, LifecycleError};
use crate::orders::{OrderError, OrderRules};
use crate::payments::{PaymentError, Payments};
use crate::store::{Store, StoreError};
use auth::{Caller, Limiter, Role};
pub use collector_routes::Collector;

/// Everything the handlers share.
#[derive(Clone)]
pub struct CoreState {
    pub store: Store,
    pub rules: Arc<OrderRules>,
    pub payments: Payments,
    pub address: AddressRules,
    pub limiter: Arc<Limiter>,
    /// UTC ms; tests pass a fixed clock to step through refund windows.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// `POST /v1/events` answers 503 without one.
    pub collector: Option<Collector>,
}

impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreState")
            .field("backend", &self.store.backend())
            .field("payments", &self.payments)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl CoreState {
    fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// The orders core's routes.
pub fn router(state: CoreState) -> Router {
    Router::new()
        .merge(catalog_routes::routes())
        .merge(order_routes::routes())
        .merge(collector_routes::routes())
        .merge(openapi::routes())
        .fallback(|| async {
            ApiError::new(
                "not_found",
                "no such endpoint; see GET /v1/openapi.json or /docs",
            )
        })
        .with_state(state)
}

/// An error answer: HTTP status, stable machine code, a message for a person.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Self::status_for(code),
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The status of each code: 400 malformed request, 401/403 who may call, 404 unknown
    /// thing, 409 the state does not allow it now, 422 a business rule refuses the content,
    /// 429/503 come back later.
    pub fn status_for(code: &str) -> StatusCode {
        match code {
            "invalid_json" | "invalid_parameter" | "missing_idempotency_key" => {
                StatusCode::BAD_REQUEST
            }
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" | "unknown_order" | "unknown_product" | "unknown_merchant" => {
                StatusCode::NOT_FOUND
            }
            "out_of_stock"
            | "illegal_transition"
            | "idempotency_conflict"
            | "cancellation_window_closed"
            | "already_paid"
            | "reservation_expired"
            | "address_change_closed"
            | "refund_exceeds_captured"
            | "nothing_captured"
            | "product_inactive"
            | "already_exists" => StatusCode::CONFLICT,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            "payment_unavailable" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error answering a request");
        Self::new(
            "internal",
            "internal error; the details are in the server log",
        )
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ErrorBody::coded(self.code, self.message))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Store(error) => error.into(),
            error => ApiError::new(error.code(), error.to_string()),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::Store(error) => error.into(),
            error => ApiError::new(error.code(), error.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Store(error) => error.into(),
            error => ApiError::new(error.code(), error.to_string()),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Lifecycle(error) => error.into(),
            error => ApiError::new(error.code(), error.to_string()).retry_after(5),
        }
    }
}

/// Parses a JSON body strictly, naming the field that is wrong.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let message = if path == "." {
                format!("request body: {inner}")
            } else {
                format!("request body at `{path}`: {inner}")
            };
            ApiError::new("invalid_json", message)
        })
        .and_then(|value| {
            deserializer
                .end()
                .map_err(|e| ApiError::new("invalid_json", format!("request body: {e}")))?;
            Ok(value)
        })
}

impl FromRequestParts<CoreState> for Caller {
    type Rejection = ApiError;

    /// `Authorization: Bearer <key>`; each call takes a token from the key's bucket.
    async fn from_request_parts(parts: &mut Parts, state: &CoreState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    "unauthorized",
                    "send your API key as `Authorization: Bearer sk_...`",
                )
            })?;
        let caller = auth::lookup(&state.store, key)
            .await?
            .ok_or_else(|| ApiError::new("unauthorized", "unknown or revoked API key"))?;
        state
            .limiter
            .take(&caller.key_hash, Instant::now())
            .map_err(|wait| {
                ApiError::new(
                    "rate_limited",
                    format!("too many requests; retry in {wait} s"),
                )
                .retry_after(wait)
            })?;
        Ok(caller)
    }
}

/// Refuses callers whose role is not among `roles`.
pub(crate) fn require(caller: &Caller, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&caller.role) {
        return Ok(());
    }
    let allowed: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    Err(ApiError::new(
        "forbidden",
        format!("this call needs a {} key", allowed.join(" or ")),
    ))
}
