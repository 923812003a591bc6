//! The business rules of the orders core as pure functions over values: no database, no clock,
//! no network. The storage and HTTP layers call these inside their transactions.

pub mod cancellation;
pub mod pricing;
pub mod radius;
pub mod settlement;
pub mod status;
pub mod stock;

pub use cancellation::{CancellationPolicy, CancellationRefused, RefundTier};
pub use pricing::{
    FxRate, GstRates, LineInput, OrderTotals, PricedLine, PricingError, price_order,
};
pub use radius::{DEFAULT_RADIUS_KM, RadiusError, check_radius};
pub use settlement::{FeeSchedule, Payout, RefundLedger, SettlementError, settle};
pub use status::{IllegalTransition, OrderAction, OrderStatus};
pub use stock::{StockError, StockLevel};
