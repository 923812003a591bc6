//! What happens to an order after checkout: stock reservation, payment, then either failure,
//! cancellation under the refund policy, or packing, shipping and delivery, each at a believable
//! delay in event time. Also the opening catalog and stock published before traffic starts.

use std::cmp::Ordering;

use model::payload::*;
use model::{
    CustomerId, Event, Money, OrderId, PaymentId, Pincode, RefundId, SessionId, ShipmentId,
};
use rand::Rng;

use crate::catalog::CATEGORIES;
use crate::world::World;
use crate::{Generator, HOUR_MS, MINUTE_MS};

const SECOND_MS: i64 = 1_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How long a reservation holds stock while payment is pending.
const RESERVATION_MS: i64 = 15 * MINUTE_MS;

/// A follow-up event due at `due_ms`. Ordered so the heap pops the earliest first and, among
/// equal times, the one scheduled first: the output never depends on heap internals.
#[derive(Debug)]
pub(crate) struct Scheduled {
    pub due_ms: i64,
    pub sequence: u64,
    pub merchant: usize,
    pub event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due_ms, other.sequence).cmp(&(self.due_ms, self.sequence))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.sequence) == (other.due_ms, other.sequence)
    }
}

impl Eq for Scheduled {}

/// Every product's upsert and opening stock, by merchant, in product order.
pub(crate) fn opening_catalog(world: &World) -> Vec<(usize, Event)> {
    let mut events = Vec::with_capacity(world.products.len() * 2);
    for product in &world.products {
        let merchant = &world.merchants[product.merchant];
        events.push((
            product.merchant,
            Event::ProductUpserted(ProductUpserted {
                product_id: product.id.clone(),
                category: CATEGORIES[product.category].name.to_owned(),
                brand: product.brand.to_owned(),
                title: product.title.clone(),
                description: product.description.clone(),
                attributes: product.attributes.clone(),
                price: Money::inr(product.price_minor),
            }),
        ));
        events.push((
            product.merchant,
            Event::StockAdjusted(StockAdjusted {
                product_id: product.id.clone(),
                warehouse_id: world.warehouses[merchant.warehouse].id.clone(),
                delta: product.initial_stock,
                on_hand: product.initial_stock,
                reason: "opening_stock".into(),
            }),
        ));
    }
    events
}

/// The refund the cancellation policy grants `elapsed_ms` after placing: 70 % within 10
/// minutes, 40 % within 30, and no cancellation after that.
fn refund_share_percent(elapsed_ms: i64) -> Option<i64> {
    match elapsed_ms {
        ms if ms <= 10 * MINUTE_MS => Some(70),
        ms if ms <= 30 * MINUTE_MS => Some(40),
        _ => None,
    }
}

impl Generator {
    /// Emits `order.placed` now and schedules everything that follows from it.
    pub(crate) fn place_order(
        &mut self,
        merchant: usize,
        customer_id: CustomerId,
        session_id: Option<SessionId>,
        cart: &[(usize, u32)],
        delivery_pincode: Pincode,
    ) -> Event {
        let now = self.clock_ms as i64;
        let sequence = self.next_order;
        self.next_order += 1;
        let order_id = OrderId::new(format!("o-{sequence:09}"));
        let warehouse = &self.world.warehouses[self.world.merchants[merchant].warehouse];
        let (warehouse_id, origin) = (warehouse.id.clone(), warehouse.pincode);
        let lines: Vec<OrderLine> = cart
            .iter()
            .map(|&(product, quantity)| OrderLine {
                product_id: self.world.products[product].id.clone(),
                quantity,
                unit_price: Money::inr(self.world.products[product].price_minor),
            })
            .collect();
        let total_minor: i64 = lines
            .iter()
            .map(|l| l.unit_price.amount_minor * i64::from(l.quantity))
            .sum();
        let total = Money::inr(total_minor);

        for line in &lines {
            self.schedule(
                now,
                merchant,
                Event::StockReserved(StockReserved {
                    product_id: line.product_id.clone(),
                    warehouse_id: warehouse_id.clone(),
                    order_id: order_id.clone(),
                    quantity: line.quantity,
                    expires_at: now + RESERVATION_MS,
                }),
            );
        }

        let payment_id = PaymentId::new(format!("pay-{sequence:09}"));
        let paid_at = now + self.rng.random_range(2..30) * SECOND_MS;
        let provider = if self.rng.random_bool(0.8) {
            "upi-sim"
        } else {
            "card-sim"
        };
        if self.rng.random_bool(0.08) {
            self.schedule(
                paid_at,
                merchant,
                Event::PaymentFailed(PaymentFailed {
                    payment_id,
                    order_id: order_id.clone(),
                    amount: total,
                    provider: provider.into(),
                    reason: "declined_by_bank".into(),
                }),
            );
            self.release_lines(
                paid_at,
                merchant,
                &order_id,
                &warehouse_id,
                &lines,
                ReleaseReason::PaymentFailed,
            );
            self.schedule(
                paid_at,
                merchant,
                Event::OrderFailed(OrderFailed {
                    order_id: order_id.clone(),
                    reason: "payment_failed".into(),
                }),
            );
        } else {
            self.schedule(
                paid_at,
                merchant,
                Event::PaymentCaptured(PaymentCaptured {
                    payment_id: payment_id.clone(),
                    order_id: order_id.clone(),
                    amount: total,
                    provider: provider.into(),
                }),
            );
            self.schedule(
                paid_at,
                merchant,
                Event::OrderConfirmed(OrderConfirmed {
                    order_id: order_id.clone(),
                    payment_id: payment_id.clone(),
                }),
            );
            let cancel_after = self.rng.random_range(1..40) * MINUTE_MS;
            let refund_percent = refund_share_percent(cancel_after);
            match refund_percent {
                Some(percent) if self.rng.random_bool(0.06) => {
                    let cancelled_at = now + cancel_after;
                    let refund = Money::inr(total_minor * percent / 100);
                    self.schedule(
                        cancelled_at,
                        merchant,
                        Event::OrderCancelled(OrderCancelled {
                            order_id: order_id.clone(),
                            reason: "customer_request".into(),
                            refund,
                        }),
                    );
                    self.schedule(
                        cancelled_at,
                        merchant,
                        Event::RefundIssued(RefundIssued {
                            refund_id: RefundId::new(format!("rf-{sequence:09}")),
                            payment_id,
                            order_id: order_id.clone(),
                            amount: refund,
                        }),
                    );
                    self.release_lines(
                        cancelled_at,
                        merchant,
                        &order_id,
                        &warehouse_id,
                        &lines,
                        ReleaseReason::Cancelled,
                    );
                }
                _ => self.schedule_delivery(
                    now,
                    merchant,
                    &order_id,
                    warehouse_id,
                    origin,
                    delivery_pincode,
                ),
            }
        }

        Event::OrderPlaced(OrderPlaced {
            order_id,
            customer_id,
            session_id,
            lines,
            delivery_pincode,
            total,
        })
    }

    fn release_lines(
        &mut self,
        at: i64,
        merchant: usize,
        order_id: &OrderId,
        warehouse_id: &model::WarehouseId,
        lines: &[OrderLine],
        reason: ReleaseReason,
    ) {
        for line in lines {
            self.schedule(
                at,
                merchant,
                Event::StockReleased(StockReleased {
                    product_id: line.product_id.clone(),
                    warehouse_id: warehouse_id.clone(),
                    order_id: order_id.clone(),
                    quantity: line.quantity,
                    reason,
                }),
            );
        }
    }

    /// Packing within hours, shipping the same day, delivery in days; hyperlocal stores do it
    /// all within the hour.
    fn schedule_delivery(
        &mut self,
        placed_at: i64,
        merchant: usize,
        order_id: &OrderId,
        warehouse_id: model::WarehouseId,
        origin: Pincode,
        destination: Pincode,
    ) {
        let hyperlocal = self.world.merchants[merchant].store.is_some();
        let (packed, shipped, delivered, promised) = if hyperlocal {
            let packed = placed_at + self.rng.random_range(5..15) * MINUTE_MS;
            let shipped = packed + self.rng.random_range(2..10) * MINUTE_MS;
            let delivered = shipped + self.rng.random_range(10..45) * MINUTE_MS;
            (packed, shipped, delivered, placed_at + HOUR_MS)
        } else {
            let packed = placed_at + self.rng.random_range(1..8) * HOUR_MS;
            let shipped = packed + self.rng.random_range(1..12) * HOUR_MS;
            let delivered = shipped
                + self.rng.random_range(1..6) * DAY_MS
                + self.rng.random_range(0..12) * HOUR_MS;
            (packed, shipped, delivered, placed_at + 4 * DAY_MS)
        };
        let sequence = self.next_order;
        let shipment_id = ShipmentId::new(format!("sh-{}", &order_id.as_str()[2..]));
        let courier_id =
            self.world.couriers[(sequence as usize) % self.world.couriers.len()].clone();
        self.schedule(
            packed,
            merchant,
            Event::OrderPacked(OrderPacked {
                order_id: order_id.clone(),
                warehouse_id: warehouse_id.clone(),
            }),
        );
        self.schedule(
            shipped,
            merchant,
            Event::ShipmentCreated(ShipmentCreated {
                shipment_id: shipment_id.clone(),
                order_id: order_id.clone(),
                warehouse_id,
                courier_id: courier_id.clone(),
                origin_pincode: origin,
                destination_pincode: destination,
                promised_at: promised,
            }),
        );
        self.schedule(
            shipped,
            merchant,
            Event::OrderShipped(OrderShipped {
                order_id: order_id.clone(),
                shipment_id: shipment_id.clone(),
                courier_id,
            }),
        );
        self.schedule(
            delivered,
            merchant,
            Event::ShipmentDelivered(ShipmentDelivered {
                shipment_id: shipment_id.clone(),
                order_id: order_id.clone(),
            }),
        );
        self.schedule(
            delivered,
            merchant,
            Event::OrderDelivered(OrderDelivered {
                order_id: order_id.clone(),
                shipment_id,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_policy_windows() {
        assert_eq!(
            refund_share_percent(9 * MINUTE_MS + 59 * SECOND_MS),
            Some(70)
        );
        assert_eq!(refund_share_percent(10 * MINUTE_MS + SECOND_MS), Some(40));
        assert_eq!(refund_share_percent(30 * MINUTE_MS + SECOND_MS), None);
    }
}
