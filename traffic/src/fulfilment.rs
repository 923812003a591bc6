//! What happens to an order after checkout: stock reservation, payment, then either failure,
//! cancellation under the refund policy, or packing, shipping and delivery, each at a believable
//! delay in event time. Also the opening catalog and stock published before traffic starts.

use std::cmp::Ordering;

use model::payload::*;
use model::{
    CustomerId, Envelope, Event, Money, OrderId, PaymentId, Pincode, RefundId, SessionId,
    ShipmentId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::CATEGORIES;
use crate::delivery;
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
                gst_bps: Some(
                    self.gst
                        .bps(CATEGORIES[self.world.products[product].category].name),
                ),
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

    /// Hyperlocal stores pack, ship and deliver within the hour. Warehouses start handling on
    /// the order's day before their cut-off (else the next working day), ship after their
    /// handling days plus a drawn delay, and the courier delivers after the lane's drawn
    /// transit (`crate::delivery`), Sundays and national holidays skipped. The promise is the
    /// truth's 90th percentile of handling and of transit.
    fn schedule_delivery(
        &mut self,
        placed_at: i64,
        merchant: usize,
        order_id: &OrderId,
        warehouse_id: model::WarehouseId,
        origin: Pincode,
        destination: Pincode,
    ) {
        let sequence = self.next_order;
        let courier = self.courier_for(sequence as usize, origin, destination);
        let hyperlocal = self.world.merchants[merchant].store.is_some();
        let (packed, shipped, delivered, promised) = if hyperlocal {
            let packed = placed_at + self.rng.random_range(5..15) * MINUTE_MS;
            let shipped = packed + self.rng.random_range(2..10) * MINUTE_MS;
            let delivered = shipped + self.rng.random_range(10..45) * MINUTE_MS;
            (packed, shipped, delivered, placed_at + HOUR_MS)
        } else {
            // Borrowed out of `self` for the call, which reads the world beside it.
            let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
            let times =
                self.courier_times(&mut rng, placed_at, merchant, courier, origin, destination);
            self.rng = rng;
            times
        };
        let shipment_id = ShipmentId::new(format!("sh-{}", &order_id.as_str()[2..]));
        let courier_id = self.world.couriers[courier].clone();
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

impl Generator {
    /// The first courier from `sequence` on (round robin) that covers both districts.
    fn courier_for(&self, sequence: usize, origin: Pincode, destination: Pincode) -> usize {
        let count = self.world.couriers.len();
        (0..count)
            .map(|step| (sequence + step) % count)
            .find(|&c| {
                crate::logistics::covers(c, origin.number() / 1000)
                    && crate::logistics::covers(c, destination.number() / 1000)
            })
            .unwrap_or(sequence % count)
    }

    /// Packed, shipped, delivered and promised times of a parcel sent by `courier`.
    fn courier_times(
        &self,
        rng: &mut impl Rng,
        placed_at: i64,
        merchant: usize,
        courier: usize,
        origin: Pincode,
        destination: Pincode,
    ) -> (i64, i64, i64, i64) {
        let warehouse = &self.world.warehouses[self.world.merchants[merchant].warehouse];
        let (cutoff, declared) = (warehouse.cutoff_minute, warehouse.handling_days);
        let base = match (self.places.get(origin), self.places.get(destination)) {
            (Some(from), Some(to)) => {
                delivery::base_transit_days(from, to, delivery::courier_speed(courier))
            }
            _ => 4,
        };
        let calendar = &self.calendar;
        let starts = delivery::handling_starts(calendar, placed_at, cutoff);
        let handling = delivery::draw_handling(rng, declared);
        let transit = delivery::draw_transit(rng, base);
        let ship_day = calendar.after_working_days(starts, handling);
        let day_start = ship_day.start_utc_ms();
        let earliest = (placed_at + HOUR_MS).max(day_start + 10 * HOUR_MS);
        let latest = day_start + 23 * HOUR_MS;
        let shipped = if earliest < latest {
            rng.random_range(earliest..latest)
        } else {
            earliest
        };
        let packed = placed_at + (shipped - placed_at) / 2;
        let arrival_day = calendar.after_working_days(ship_day, transit);
        let delivered =
            (arrival_day.start_utc_ms() + rng.random_range(9..21) * HOUR_MS).max(shipped + HOUR_MS);
        let promised_day =
            delivery::oracle_promise(calendar, placed_at, cutoff, declared, base, 0.9);
        // The end of the promised day, IST.
        let promised = promised_day.start_utc_ms() + DAY_MS - 1;
        (packed, shipped, delivered, promised)
    }
}

impl Generator {
    /// The shipments and deliveries of `orders` orders placed in the `days` before the start
    /// by the merchants that ship through couriers, drawn from the truth, in event-time order:
    /// the delivery history a demo starts from, so transit is learnt from its first minute (a
    /// parcel takes days; a demo runs minutes). Only the `shipments` topic: the orders
    /// themselves are not replayed, so trending and sales see only live traffic (handling is
    /// learnt from live orders). The history has a random stream of its own: the live events
    /// are the same with or without it.
    pub fn history(&self, orders: usize, days: u32) -> Vec<Envelope> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x4849_5354);
        let shippers: Vec<usize> = (0..self.world.merchants.len())
            .filter(|&m| {
                let merchant = &self.world.merchants[m];
                merchant.store.is_none() && !merchant.products.is_empty()
            })
            .collect();
        let mut events = Vec::with_capacity(orders * 2);
        if shippers.is_empty() {
            return events;
        }
        let start = self.config.start_ms;
        let span = i64::from(days.max(1)) * DAY_MS;
        for n in 0..orders {
            let merchant = shippers[rng.random_range(0..shippers.len())];
            let world = &self.world;
            let customer = &world.customers[rng.random_range(0..world.customers.len())];
            let warehouse = &world.warehouses[world.merchants[merchant].warehouse];
            let placed_at = start - span + rng.random_range(0..span);
            let courier = self.courier_for(n, warehouse.pincode, customer.pincode);
            let (_, shipped, delivered, promised) = self.courier_times(
                &mut rng,
                placed_at,
                merchant,
                courier,
                warehouse.pincode,
                customer.pincode,
            );
            if delivered >= start {
                continue;
            }
            let order_id = OrderId::new(format!("o-h{n:08}"));
            let shipment_id = ShipmentId::new(format!("sh-h{n:08}"));
            let follow = [
                (
                    shipped,
                    Event::ShipmentCreated(ShipmentCreated {
                        shipment_id: shipment_id.clone(),
                        order_id: order_id.clone(),
                        warehouse_id: warehouse.id.clone(),
                        courier_id: world.couriers[courier].clone(),
                        origin_pincode: warehouse.pincode,
                        destination_pincode: customer.pincode,
                        promised_at: promised,
                    }),
                ),
                (
                    delivered,
                    Event::ShipmentDelivered(ShipmentDelivered {
                        shipment_id,
                        order_id,
                    }),
                ),
            ];
            for (time, event) in follow {
                let random: [u8; 10] = rng.random();
                let event_id = uuid::Builder::from_unix_timestamp_millis(time as u64, &random);
                let merchant_id = world.merchants[merchant].id.clone();
                events.push(Envelope::new(
                    event_id.into_uuid(),
                    time,
                    merchant_id,
                    event,
                ));
            }
        }
        events.sort_by_key(|envelope| envelope.event_time);
        events
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
