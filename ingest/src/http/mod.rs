//! The `/v1` HTTP API of the orders core (axum): thin handlers that authenticate the caller,
//! parse the body strictly and call [`crate::catalog`], [`crate::orders`],
//! [`crate::lifecycle`] and [`crate::payments`]. Every error is the front door's
//! [`ApiError`], its code from [`model::api::ErrorCode`].

pub mod auth;
mod catalog_routes;
mod collector_routes;
pub mod openapi;
mod order_routes;
mod warehouse_routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use model::api::ErrorCode;
use runtime::http::auth::{Authenticator, Keys};
pub use runtime::http::{ApiError, parse_json};

use crate::catalog::CatalogError;
use crate::lifecycle::{AddressRules, LifecycleError};
use crate::orders::{OrderError, OrderRules};
use crate::payments::{PaymentError, Payments};
use crate::store::{Store, StoreError};
use auth::{Caller, Limiter, Role};
pub use collector_routes::Collector;

/// The JSON bodies the routes take, each parsed by [`parse_json`] exactly as its route does:
/// for clients in Rust and for the fuzz target.
pub mod requests {
    pub use super::catalog_routes::{KeyRequest, MerchantRequest, ProductRequest, StockRequest};
    pub use super::order_routes::{AddressRequest, CancelRequest, RefundRequest};
    pub use super::warehouse_routes::WarehouseRequest;
    pub use crate::lifecycle::ShipRequest;
    pub use crate::orders::PlaceOrder;
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct CoreState {
    pub store: Store,
    pub rules: Arc<OrderRules>,
    pub payments: Payments,
    pub address: AddressRules,
    pub limiter: Arc<Limiter>,
    /// Where callers' keys are found: this core's database.
    pub keys: Arc<dyn Keys>,
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

/// The orders core's routes, for the front door.
pub fn router(state: CoreState) -> Router {
    Router::new()
        .merge(catalog_routes::routes())
        .merge(order_routes::routes())
        .merge(collector_routes::routes())
        .merge(warehouse_routes::routes())
        .with_state(state)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EventTooLarge { .. } => {
                ApiError::new(ErrorCode::PayloadTooLarge, error.to_string())
            }
            error => ApiError::internal(error),
        }
    }
}

/// Refuses text over its limit (`model::limits`) with a 400 naming the field.
pub(crate) fn check_length(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    model::limits::check_chars(field, value, max)
        .map_err(|message| ApiError::new(ErrorCode::InvalidParameter, message))
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

/// Callers are authenticated from this core's database, which is always current.
impl FromRef<CoreState> for Authenticator {
    fn from_ref(state: &CoreState) -> Authenticator {
        Authenticator {
            keys: Arc::clone(&state.keys),
            limiter: Arc::clone(&state.limiter),
        }
    }
}

/// Refuses callers whose role is not among `roles`.
pub(crate) fn require(caller: &Caller, roles: &[Role]) -> Result<(), ApiError> {
    caller.require(roles)
}
