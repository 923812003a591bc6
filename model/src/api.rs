//! The stable table of HTTP error codes. Every HTTP shell answers errors with
//! `{"error": {"code": "...", "message": "..."}}`, the status and code taken from here, so
//! clients can branch on `code` and show `message` to a person.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A query parameter or body field is missing or out of range.
    InvalidParameter,
    /// The path names nothing we have.
    NotFound,
    /// The service is at its admission limit; retry after the indicated delay.
    Overloaded,
    /// A dependency (broker, store) is unreachable; retry later.
    Unavailable,
    /// A bug on our side; details are in our logs, not in the answer.
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidParameter => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Overloaded | ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::coded(code.as_str(), message)
    }

    /// A domain-specific code (`out_of_stock`, `cancellation_window_closed`, ...) that the
    /// stage owning the rule documents next to the rule.
    pub fn coded(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}
