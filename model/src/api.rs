//! The stable table of HTTP error codes. Every HTTP shell answers errors with
//! `{"error": {"code": "...", "message": "..."}}`, the status and code taken from here, so
//! clients can branch on `code` and show `message` to a person.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $status:literal $code:literal;)*) => {
        /// Every machine code an HTTP answer can carry, with its status. Clients branch on
        /// the code; the status follows from it (400 malformed request, 401/403 who may call,
        /// 404 unknown thing, 409 the state does not allow it now, 422 a business rule refuses
        /// the content, 429/503 come back later, 500 our bug). There is no catch-all: a new
        /// code is a new row here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// A query parameter or body field is missing or out of range.
    InvalidParameter = 400 "invalid_parameter";
    /// A series grain too fine for the range asked (it would hold too many points).
    GrainTooFine = 400 "grain_too_fine";
    /// The body is not JSON of the documented shape; the message names the field.
    InvalidJson = 400 "invalid_json";
    /// A search's `q` is empty, over the length limit, or has no words.
    InvalidQuery = 400 "invalid_query";
    /// `sort` is not one of the documented orders.
    UnknownSort = 400 "unknown_sort";
    /// `facets` names a facet search does not count.
    UnknownFacet = 400 "unknown_facet";
    /// An `attr.<name>` filter or facet names an attribute no product has.
    UnknownAttribute = 400 "unknown_attribute";
    /// `page` is beyond the last page of results.
    PageOutOfRange = 400 "page_out_of_range";
    /// A collector line is not an event we accept.
    InvalidEvent = 400 "invalid_event";
    /// Order placement needs an `Idempotency-Key` header.
    MissingIdempotencyKey = 400 "missing_idempotency_key";
    /// No API key, or an unknown or revoked one.
    Unauthorized = 401 "unauthorized";
    /// The key's role or merchant may not do this.
    Forbidden = 403 "forbidden";
    /// The path names nothing we have.
    NotFound = 404 "not_found";
    UnknownOrder = 404 "unknown_order";
    UnknownProduct = 404 "unknown_product";
    UnknownMerchant = 404 "unknown_merchant";
    /// An analytics metric that does not exist.
    UnknownMetric = 404 "unknown_metric";
    /// No API key with that id (or not one the caller may manage).
    UnknownKey = 404 "unknown_key";
    /// The path exists but not with this method.
    MethodNotAllowed = 405 "method_not_allowed";
    OutOfStock = 409 "out_of_stock";
    IllegalTransition = 409 "illegal_transition";
    IdempotencyConflict = 409 "idempotency_conflict";
    CancellationWindowClosed = 409 "cancellation_window_closed";
    AlreadyPaid = 409 "already_paid";
    ReservationExpired = 409 "reservation_expired";
    AddressChangeClosed = 409 "address_change_closed";
    RefundExceedsCaptured = 409 "refund_exceeds_captured";
    NothingCaptured = 409 "nothing_captured";
    ProductInactive = 409 "product_inactive";
    AlreadyExists = 409 "already_exists";
    /// The body is over the route's limit.
    PayloadTooLarge = 413 "payload_too_large";
    /// A product id another shop already uses (ids are one namespace on the platform).
    ProductIdTaken = 409 "product_id_taken";
    /// A warehouse id another shop already uses.
    WarehouseIdTaken = 409 "warehouse_id_taken";
    DuplicateProduct = 422 "duplicate_product";
    InvalidOrder = 422 "invalid_order";
    InvalidAmount = 422 "invalid_amount";
    InvalidStockChange = 422 "invalid_stock_change";
    OutsideDeliveryRadius = 422 "outside_delivery_radius";
    UnknownPincode = 422 "unknown_pincode";
    /// A range reaching back before what the live analytics hold.
    OutsideLiveWindow = 422 "outside_live_window";
    /// A collected event is not JSON.
    MalformedJson = 422 "malformed_json";
    UnknownEventType = 422 "unknown_event_type";
    UnsupportedSchemaVersion = 422 "unsupported_schema_version";
    MissingField = 422 "missing_field";
    InvalidField = 422 "invalid_field";
    /// Orders, payments and the like come from the orders core, not the collector.
    NotCollectable = 422 "not_collectable";
    EventTimeInFuture = 422 "event_time_in_future";
    EventTimeTooOld = 422 "event_time_too_old";
    /// Over the caller's rate (per key, or per address before a key is known); see
    /// Retry-After.
    RateLimited = 429 "rate_limited";
    /// A bug on our side; details are in our logs, not in the answer.
    Internal = 500 "internal";
    /// No payment provider could take the payment now.
    PaymentUnavailable = 503 "payment_unavailable";
    /// A dependency (broker, store) is unreachable, or the stage is not running here.
    Unavailable = 503 "unavailable";
    /// The service is at its admission limit; retry after the indicated delay.
    Overloaded = 503 "overloaded";
    /// The request took longer than the server's request timeout.
    Timeout = 503 "timeout";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

    /// An error answer with a code the table does not hold: for clients and tests reading
    /// answers, never for servers writing them.
    pub fn coded(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.status()));
        }
    }
}
