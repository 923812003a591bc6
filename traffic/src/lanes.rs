//! Deliveries drawn from the truth ([`crate::delivery`]) as the events the pipeline carries,
//! for backtests and tests of what the serviceability stage learns: a world of warehouses,
//! couriers and destination pincodes, the network's reference events, and each order's
//! `order.placed`, `shipment.created` and `shipment.delivered` at their drawn times.

use model::calendar::{Weekday, WorkCalendar};
use model::geo::Place;
use model::payload::{
    CourierUpserted, CoverageEntry, CoverageUpserted, HolidaysSet, OrderPlaced, ShipmentCreated,
    ShipmentDelivered, WarehouseUpserted,
};
use model::{CourierId, Envelope, Event, MerchantId, Money, OrderId, ShipmentId, WarehouseId};
use rand::Rng;

use crate::delivery;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// One generated order's truth.
pub struct Truth {
    pub placed_at: i64,
    pub shipped_at: i64,
    pub delivered_at: i64,
    /// Index into [`Lanes::warehouses`].
    pub warehouse: usize,
    /// Index into [`Lanes::couriers`].
    pub courier: usize,
    pub destination: Place,
}

fn envelope(time: i64, event: Event) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        time,
        MerchantId::new("m-bench"),
        event,
    )
}

/// Every warehouse of a [`Lanes`] world stops taking same-day orders at 14:00 IST.
pub const CUTOFF_MINUTE: u32 = 14 * 60;

fn mon_sat() -> Vec<Weekday> {
    Weekday::MON_TO_SAT.to_vec()
}

/// The reference events: national holidays, couriers covering every pincode in `places`, and
/// the warehouses (cut-off 14:00, handling `declared` days).
pub fn network(lanes: &Lanes) -> Vec<Envelope> {
    let (warehouses, couriers, places) = (&lanes.warehouses, &lanes.couriers, &lanes.places);
    let mut events = vec![Event::HolidaysSet(HolidaysSet {
        region: "IN".into(),
        dates: delivery::national_holidays(),
    })];
    let mut by_district: std::collections::BTreeMap<u32, Vec<CoverageEntry>> = Default::default();
    let mut seen = std::collections::BTreeSet::new();
    for place in places {
        if seen.insert(place.pincode) {
            by_district
                .entry(place.pincode.number() / 1000)
                .or_default()
                .push(CoverageEntry {
                    pincode: place.pincode,
                    prepaid: true,
                    cash_on_delivery: true,
                    pickup: true,
                    out_of_delivery_area: false,
                });
        }
    }
    for (i, courier) in couriers.iter().enumerate() {
        events.push(Event::CourierUpserted(CourierUpserted {
            courier_id: courier.clone(),
            name: format!("Courier {i}"),
            speed: delivery::courier_speed(i),
            working_days: mon_sat(),
        }));
        for (district, entries) in &by_district {
            if let Ok(coverage) = CoverageUpserted::new(courier.clone(), *district, entries.clone())
            {
                events.push(Event::CoverageUpserted(coverage));
            }
        }
    }
    for (id, place, declared) in warehouses {
        events.push(Event::WarehouseUpserted(WarehouseUpserted {
            warehouse_id: id.clone(),
            pincode: place.pincode,
            cutoff_minute: CUTOFF_MINUTE,
            handling_days: *declared,
            working_days: mon_sat(),
            holidays: Vec::new(),
            radius_km: None,
            restock_lead_days: 5,
        }));
    }
    events.into_iter().map(|event| envelope(0, event)).collect()
}

/// Ten units of product `p-<i>` at the `i`-th warehouse, for each warehouse: stock that
/// serviceability can promise from.
pub fn stock(lanes: &Lanes) -> Vec<Envelope> {
    lanes
        .warehouses
        .iter()
        .enumerate()
        .map(|(i, (warehouse_id, _, _))| {
            envelope(
                lanes.start,
                Event::StockAdjusted(model::payload::StockAdjusted {
                    product_id: model::ProductId::new(format!("p-{i}")),
                    warehouse_id: warehouse_id.clone(),
                    delta: 10,
                    on_hand: 10,
                    reason: "receipt".into(),
                }),
            )
        })
        .collect()
}

/// A world of warehouses, couriers and destination pincodes, and orders drawn from the truth
/// over 180 days from [`Lanes::start`] (2026-01-01).
#[derive(Debug)]
pub struct Lanes {
    /// Id, place and declared handling days.
    pub warehouses: Vec<(WarehouseId, Place, u32)>,
    pub couriers: Vec<CourierId>,
    /// The destinations, then the warehouses' places.
    pub places: Vec<Place>,
    pub truths: Vec<Truth>,
    pub start: i64,
}

impl std::fmt::Debug for Truth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Truth")
            .field("placed_at", &self.placed_at)
            .field("destination", &self.destination.pincode)
            .finish_non_exhaustive()
    }
}

/// Draws `orders` from `warehouses` (at random delivering pincodes, declaring 0, 1 or 2
/// handling days), `couriers` (speed classes as [`delivery::courier_speed`]) to
/// `destinations` random pincodes.
pub fn draw(
    rng: &mut impl Rng,
    orders: usize,
    warehouses: usize,
    couriers: usize,
    destinations: usize,
) -> Lanes {
    let all: Vec<Place> = model::geo::places()
        .into_iter()
        .filter(|p| p.delivery)
        .collect();
    let pick = |rng: &mut dyn rand::RngCore| all[rng.random_range(0..all.len())].clone();
    let warehouses: Vec<(WarehouseId, Place, u32)> = (0..warehouses)
        .map(|i| {
            (
                WarehouseId::new(format!("w-{i:03}")),
                pick(rng),
                (i % 3) as u32,
            )
        })
        .collect();
    let couriers: Vec<CourierId> = (0..couriers)
        .map(|i| CourierId::new(format!("cr-{i:02}")))
        .collect();
    let targets: Vec<Place> = (0..destinations).map(|_| pick(rng)).collect();
    let calendar: WorkCalendar = delivery::calendar();
    // 2026-01-01 00:00 IST.
    let start = 1_767_205_800_000;
    let mut truths = Vec::with_capacity(orders);
    for _ in 0..orders {
        let placed_at = start + rng.random_range(0..180 * DAY);
        let warehouse = rng.random_range(0..warehouses.len());
        let courier = rng.random_range(0..couriers.len());
        let destination = targets[rng.random_range(0..targets.len())].clone();
        let (_, origin, declared) = &warehouses[warehouse];
        let handling = delivery::draw_handling(rng, *declared);
        let speed = delivery::courier_speed(courier);
        let transit = delivery::draw_transit(
            rng,
            delivery::base_transit_days(origin, &destination, speed),
        );
        let starts = delivery::handling_starts(&calendar, placed_at, CUTOFF_MINUTE);
        let shipped = calendar.after_working_days(starts, handling);
        // Handed over in the evening, after any same-day order; delivered in the day.
        let shipped_at = (shipped.start_utc_ms() + 20 * HOUR).max(placed_at + HOUR);
        let delivered = calendar.after_working_days(shipped, transit);
        let delivered_at = delivered.start_utc_ms() + rng.random_range(9..20) * HOUR;
        truths.push(Truth {
            placed_at,
            shipped_at,
            delivered_at,
            warehouse,
            courier,
            destination,
        });
    }
    let mut places = targets;
    places.extend(warehouses.iter().map(|(_, place, _)| place.clone()));
    truths.sort_by_key(|truth| truth.placed_at);
    Lanes {
        warehouses,
        couriers,
        places,
        truths,
        start,
    }
}

/// Every order's events that happened before `until`, in event-time order.
pub fn events_before(lanes: &Lanes, until: i64) -> Vec<Envelope> {
    let mut events = Vec::new();
    for (n, truth) in lanes.truths.iter().enumerate() {
        let (warehouse_id, origin, _) = &lanes.warehouses[truth.warehouse];
        let order_id = OrderId::new(format!("o-{n}"));
        let shipment_id = ShipmentId::new(format!("sh-{n}"));
        let placed = Event::OrderPlaced(OrderPlaced {
            order_id: order_id.clone(),
            customer_id: "c-1".into(),
            session_id: None,
            lines: Vec::new(),
            delivery_pincode: truth.destination.pincode,
            total: Money::inr(100),
        });
        let created = Event::ShipmentCreated(ShipmentCreated {
            shipment_id: shipment_id.clone(),
            order_id: order_id.clone(),
            warehouse_id: warehouse_id.clone(),
            courier_id: lanes.couriers[truth.courier].clone(),
            origin_pincode: origin.pincode,
            destination_pincode: truth.destination.pincode,
            promised_at: truth.placed_at + 4 * DAY,
        });
        let delivered = Event::ShipmentDelivered(ShipmentDelivered {
            shipment_id,
            order_id,
        });
        for (time, event) in [
            (truth.placed_at, placed),
            (truth.shipped_at, created),
            (truth.delivered_at, delivered),
        ] {
            if time < until {
                events.push(envelope(time, event));
            }
        }
    }
    events.sort_by_key(|e| e.event_time);
    events
}
