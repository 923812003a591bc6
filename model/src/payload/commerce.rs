//! Payloads of the transactional core: inventory, orders, payments and shipments.

use serde::{Deserialize, Serialize};

use crate::{
    CourierId, CustomerId, Money, OrderId, PaymentId, PayoutId, Pincode, ProductId, RefundId,
    SessionId, ShipmentId, WarehouseId,
};

/// Stock on hand changed by a receipt, a count or a correction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockAdjusted {
    pub product_id: ProductId,
    pub warehouse_id: WarehouseId,
    /// Signed change applied by this adjustment.
    pub delta: i64,
    /// Units on hand after the adjustment.
    pub on_hand: i64,
    pub reason: String,
}

/// The reason a [`StockAdjusted`] carries when a paid order's reserved units leave stock,
/// followed by the order id: how a reader tells sales from receipts and counts.
pub const SOLD_REASON: &str = "sold: order ";

/// A product's stock will run out before a restock could arrive: available units cover fewer
/// days of its trailing sales than the warehouse's restock lead time. Raised once each time
/// the cover falls below the lead time, not once per sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockLow {
    pub product_id: ProductId,
    pub warehouse_id: WarehouseId,
    /// On hand minus reserved, when the alert was raised.
    pub available: i64,
    /// Units sold in the trailing `velocity_days`: the velocity is their quotient.
    pub units_sold: i64,
    pub velocity_days: u32,
    pub restock_lead_days: u32,
}

impl StockLow {
    /// Units sold per day over the trailing window.
    pub fn daily_velocity(&self) -> f64 {
        self.units_sold as f64 / f64::from(self.velocity_days.max(1))
    }

    /// Days the available units last at that velocity; `None` when nothing sold in the window
    /// (then they do not run out).
    pub fn days_of_cover(&self) -> Option<f64> {
        (self.units_sold > 0).then(|| self.available.max(0) as f64 / self.daily_velocity())
    }
}

/// Units held for an order until payment or `expires_at` (UTC ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReserved {
    pub product_id: ProductId,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: u32,
    pub expires_at: i64,
}

/// Why a reservation gave its units back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    PaymentFailed,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReleased {
    pub product_id: ProductId,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: u32,
    pub reason: ReleaseReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: u32,
    pub unit_price: Money,
    /// The GST rate the core carved out of this line, in basis points (1800 = 18 %), so a
    /// finance export reports the tax charged, not today's rate. Absent on events from
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gst_bps: Option<u32>,
}

/// A buyer placed an order; stock is reserved and payment is pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// The session the order came from, when it came through the storefront.
    pub session_id: Option<SessionId>,
    pub lines: Vec<OrderLine>,
    pub delivery_pincode: Pincode,
    pub total: Money,
}

/// Payment was captured; the merchant may pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderConfirmed {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPacked {
    pub order_id: OrderId,
    pub warehouse_id: WarehouseId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
    pub courier_id: CourierId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderDelivered {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
}

/// The order was cancelled; `refund` is what the cancellation policy returns to the buyer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub reason: String,
    pub refund: Money,
}

/// The order could not proceed (payment failed, reservation expired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFailed {
    pub order_id: OrderId,
    pub reason: String,
}

/// The buyer moved the delivery before the order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAddressChanged {
    pub order_id: OrderId,
    pub previous_pincode: Pincode,
    pub delivery_pincode: Pincode,
}

/// One message to a customer about a change to their order, as the notifier delivered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSent {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// `log`, `webhook`, ...: which notifier delivered it.
    pub channel: String,
    /// The template used, named after the order event that caused it (`order.shipped`).
    pub template: String,
    pub text: String,
    /// The `event_id` of the order event this notifies about: one notification per event.
    pub source_event_id: String,
}

/// One message to a merchant about its own shop (a product running low), as the notifier
/// delivered it; the envelope names the merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantNotified {
    /// `log`, `webhook`, ...: which notifier delivered it.
    pub channel: String,
    /// Named after the event that caused it (`inventory.stock_low`).
    pub template: String,
    pub text: String,
    /// The `event_id` of the event this tells about: one message per event and channel.
    pub source_event_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentCaptured {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub provider: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefundIssued {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
}

/// Money paid out to a merchant for a period (UTC ms bounds), net of refunds and fees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutSettled {
    pub payout_id: PayoutId,
    pub period_start: i64,
    pub period_end: i64,
    pub gross: Money,
    pub refunds: Money,
    pub fees: Money,
    pub net: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentCreated {
    pub shipment_id: ShipmentId,
    pub order_id: OrderId,
    pub warehouse_id: WarehouseId,
    pub courier_id: CourierId,
    pub origin_pincode: Pincode,
    pub destination_pincode: Pincode,
    /// Delivery date promised to the buyer (UTC ms).
    pub promised_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentDelivered {
    pub shipment_id: ShipmentId,
    pub order_id: OrderId,
}
