//! The closed set of event types. One table below says, for each type, its payload, its wire
//! name, its topic and its partition key; everything else is generated from it so the four can
//! never disagree.

use serde_json::value::RawValue;

use crate::Topic;
use crate::payload::*;

macro_rules! events {
    ($($variant:ident($payload:ty) = $name:literal on $topic:ident keyed |$p:ident| $key:expr;)*) => {
        /// Every event shopstream knows, with its typed payload.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($payload),)*
        }

        /// The `event_type` tag on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant,)*
        }

        impl EventType {
            pub const ALL: &[EventType] = &[$(EventType::$variant,)*];

            /// The wire name, `<topic-ish group>.<what happened>`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }

            pub fn topic(self) -> Topic {
                match self {
                    $(EventType::$variant => Topic::$topic,)*
                }
            }
        }

        impl Event {
            pub fn event_type(&self) -> EventType {
                match self {
                    $(Event::$variant(_) => EventType::$variant,)*
                }
            }

            /// The Kafka key: the id this event type's row in the table names, so everything about
            /// one order (or product, session, payout) lands on one partition in order.
            pub fn partition_key(&self) -> &str {
                match self {
                    $(Event::$variant($p) => $key.as_str(),)*
                }
            }

            pub(crate) fn payload_to_json(&self) -> serde_json::Result<Box<RawValue>> {
                match self {
                    $(Event::$variant(payload) => serde_json::value::to_raw_value(payload),)*
                }
            }

            pub(crate) fn payload_from_json(
                event_type: EventType,
                payload: &RawValue,
            ) -> serde_json::Result<Event> {
                match event_type {
                    $(EventType::$variant => serde_json::from_str(payload.get()).map(Event::$variant),)*
                }
            }
        }
    };
}

events! {
    ProductUpserted(ProductUpserted) = "catalog.product_upserted" on Catalog keyed |p| p.product_id;
    ProductDeactivated(ProductDeactivated) = "catalog.product_deactivated" on Catalog keyed |p| p.product_id;
    StockAdjusted(StockAdjusted) = "inventory.stock_adjusted" on Inventory keyed |p| p.product_id;
    StockReserved(StockReserved) = "inventory.stock_reserved" on Inventory keyed |p| p.product_id;
    StockReleased(StockReleased) = "inventory.stock_released" on Inventory keyed |p| p.product_id;
    OrderPlaced(OrderPlaced) = "order.placed" on Orders keyed |p| p.order_id;
    OrderConfirmed(OrderConfirmed) = "order.confirmed" on Orders keyed |p| p.order_id;
    OrderPacked(OrderPacked) = "order.packed" on Orders keyed |p| p.order_id;
    OrderShipped(OrderShipped) = "order.shipped" on Orders keyed |p| p.order_id;
    OrderDelivered(OrderDelivered) = "order.delivered" on Orders keyed |p| p.order_id;
    OrderCancelled(OrderCancelled) = "order.cancelled" on Orders keyed |p| p.order_id;
    OrderFailed(OrderFailed) = "order.failed" on Orders keyed |p| p.order_id;
    PaymentCaptured(PaymentCaptured) = "payment.captured" on Payments keyed |p| p.order_id;
    PaymentFailed(PaymentFailed) = "payment.failed" on Payments keyed |p| p.order_id;
    RefundIssued(RefundIssued) = "payment.refund_issued" on Payments keyed |p| p.order_id;
    PayoutSettled(PayoutSettled) = "payment.payout_settled" on Payments keyed |p| p.payout_id;
    ShipmentCreated(ShipmentCreated) = "shipment.created" on Shipments keyed |p| p.order_id;
    ShipmentDelivered(ShipmentDelivered) = "shipment.delivered" on Shipments keyed |p| p.order_id;
    SearchPerformed(SearchPerformed) = "search.performed" on Searches keyed |p| p.session_id;
    ProductViewed(ProductViewed) = "click.product_viewed" on Clicks keyed |p| p.session_id;
    ProductClicked(ProductClicked) = "click.product_clicked" on Clicks keyed |p| p.session_id;
    CartAdded(CartChanged) = "click.cart_added" on Clicks keyed |p| p.session_id;
    CartRemoved(CartChanged) = "click.cart_removed" on Clicks keyed |p| p.session_id;
    Wishlisted(Wishlisted) = "click.wishlisted" on Clicks keyed |p| p.session_id;
    OrderAddressChanged(OrderAddressChanged) = "order.address_changed" on Orders keyed |p| p.order_id;
    NotificationSent(NotificationSent) = "notification.sent" on Notifications keyed |p| p.order_id;
    WarehouseUpserted(WarehouseUpserted) = "logistics.warehouse_upserted" on Logistics keyed |p| p.warehouse_id;
    CourierUpserted(CourierUpserted) = "logistics.courier_upserted" on Logistics keyed |p| p.courier_id;
    CoverageUpserted(CoverageUpserted) = "logistics.coverage_upserted" on Logistics keyed |p| p.key();
    HolidaysSet(HolidaysSet) = "logistics.holidays_set" on Logistics keyed |p| p.region;
    StockLow(StockLow) = "inventory.stock_low" on Inventory keyed |p| p.product_id;
    MerchantNotified(MerchantNotified) = "notification.merchant_sent" on Notifications keyed |p| p.source_event_id;
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    pub fn topic(&self) -> Topic {
        self.event_type().topic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_name_parses_back_to_its_type() {
        for &event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
        }
        assert_eq!(EventType::parse("order.teleported"), None);
    }

    #[test]
    fn no_event_type_is_routed_to_the_dead_letter_topic() {
        assert!(EventType::ALL.iter().all(|t| t.topic() != Topic::Dlq));
    }
}
