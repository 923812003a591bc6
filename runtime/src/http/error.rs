//! The one error answer of every route: a code from [`model::api::ErrorCode`] (which fixes
//! the status), a message telling the caller what to fix, and Retry-After where waiting helps.
//! Internal details are logged, never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::api::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 400 `invalid_parameter`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    /// 500 `internal`: logs `error` and answers without it.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error answering a request");
        Self::new(
            ErrorCode::Internal,
            "internal error; the details are in the server log",
        )
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Parses a JSON body strictly, naming the field that is wrong.
/// A query string as name and value pairs, in order (repeated names kept); a string that
/// cannot be decoded is a 400 naming the problem.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| ApiError::invalid(format!("query string: {e}")))
}

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
            ApiError::new(ErrorCode::InvalidJson, message)
        })
        .and_then(|value| {
            deserializer
                .end()
                .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?;
            Ok(value)
        })
}
