//! The payload of each event type, grouped by the topic that carries it. Every struct refuses
//! unknown fields so a producer's typo is an error, not silently lost data.

mod behaviour;
mod catalog;
mod commerce;
mod logistics;

pub use behaviour::{CartChanged, ProductClicked, ProductViewed, SearchPerformed, Wishlisted};
pub use catalog::{ProductDeactivated, ProductUpserted};
pub use commerce::{
    MerchantNotified, NotificationSent, OrderAddressChanged, OrderCancelled, OrderConfirmed,
    OrderDelivered, OrderFailed, OrderLine, OrderPacked, OrderPlaced, OrderShipped,
    PaymentCaptured, PaymentFailed, PayoutSettled, RefundIssued, ReleaseReason, SOLD_REASON,
    ShipmentCreated, ShipmentDelivered, StockAdjusted, StockLow, StockReleased, StockReserved,
};
pub use logistics::{
    COVERAGE_ENTRIES, CourierSpeed, CourierUpserted, CoverageEntry, CoverageUpserted, HolidaysSet,
    NATIONAL, WarehouseUpserted,
};
