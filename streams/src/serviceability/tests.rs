use model::calendar::{IstDate, Weekday};
use model::geo::Directory;
use model::payload::{
    CourierSpeed, CourierUpserted, CoverageEntry, CoverageUpserted, HolidaysSet, OrderPlaced,
    ShipmentCreated, ShipmentDelivered, StockAdjusted, StockReserved, WarehouseUpserted,
};
use model::{
    CourierId, Envelope, Event, MerchantId, Money, OrderId, Pincode, ProductId, ShipmentId,
    WarehouseId,
};
use std::sync::OnceLock;

use super::learn::{LearnConfig, Learnt, Level, Regions};
use super::network::Network;
use model::deliver::Undeliverable;

use super::promise::{Inputs, PromiseConfig};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn regions() -> &'static Regions {
    static REGIONS: OnceLock<Regions> = OnceLock::new();
    REGIONS.get_or_init(|| Regions::new(Directory::load()))
}

fn pin(text: &str) -> Pincode {
    Pincode::parse(text).unwrap()
}

fn date(text: &str) -> IstDate {
    IstDate::parse(text).unwrap()
}

/// `hh:mm` IST on `day`, in UTC milliseconds.
fn at(day: &str, hour: i64, minute: i64) -> i64 {
    date(day).start_utc_ms() + hour * 60 * MINUTE + minute * MINUTE
}

fn envelope(time: i64, event: Event) -> Envelope {
    Envelope::new(uuid::Uuid::now_v7(), time, MerchantId::new("m-1"), event)
}

fn entry(pincode: &str) -> CoverageEntry {
    CoverageEntry {
        pincode: pin(pincode),
        prepaid: true,
        cash_on_delivery: true,
        pickup: true,
        out_of_delivery_area: false,
    }
}

fn delhi_warehouse() -> WarehouseUpserted {
    WarehouseUpserted {
        warehouse_id: WarehouseId::new("w-1"),
        pincode: pin("110001"),
        cutoff_minute: 14 * 60,
        handling_days: 1,
        working_days: Weekday::MON_TO_SAT.to_vec(),
        holidays: vec![],
        radius_km: None,
        restock_lead_days: 5,
    }
}

/// A Delhi warehouse (cut-off 14:00, one handling day) holding 5 of p-1, a courier covering
/// Delhi 110001 and Bengaluru 560034, and Republic Day as a national holiday.
fn network() -> Network {
    let mut network = Network::default();
    let events = [
        Event::WarehouseUpserted(delhi_warehouse()),
        Event::CourierUpserted(CourierUpserted {
            courier_id: CourierId::new("cr-1"),
            name: "Dakshin Express".into(),
            speed: CourierSpeed::Standard,
            working_days: Weekday::MON_TO_SAT.to_vec(),
        }),
        Event::CoverageUpserted(
            CoverageUpserted::new(CourierId::new("cr-1"), 110, vec![entry("110001")]).unwrap(),
        ),
        Event::CoverageUpserted(
            CoverageUpserted::new(CourierId::new("cr-1"), 560, vec![entry("560034")]).unwrap(),
        ),
        Event::HolidaysSet(HolidaysSet {
            region: "IN".into(),
            dates: vec![date("2026-01-26")],
        }),
        Event::StockAdjusted(StockAdjusted {
            product_id: ProductId::new("p-1"),
            warehouse_id: WarehouseId::new("w-1"),
            delta: 5,
            on_hand: 5,
            reason: "receipt".into(),
        }),
    ];
    for event in events {
        network.apply(&envelope(0, event)).unwrap();
    }
    network
}

/// Ships order `n` from w-1 to `destination` on `shipped` and delivers it `days` courier
/// working days later.
fn delivery(n: usize, destination: &str, shipped: IstDate, days: u32) -> [Envelope; 3] {
    let order_id = OrderId::new(format!("o-{n}"));
    let shipment_id = ShipmentId::new(format!("sh-{n}"));
    let calendar =
        model::calendar::WorkCalendar::monday_to_saturday().with_holidays([date("2026-01-26")]);
    let delivered = calendar.after_working_days(shipped, days);
    let placed = envelope(
        shipped.start_utc_ms() - DAY + 10 * 60 * MINUTE,
        Event::OrderPlaced(OrderPlaced {
            order_id: order_id.clone(),
            customer_id: "c-1".into(),
            session_id: None,
            lines: vec![],
            delivery_pincode: pin(destination),
            total: Money::inr(100),
        }),
    );
    let created = envelope(
        shipped.start_utc_ms() + 15 * 60 * MINUTE,
        Event::ShipmentCreated(ShipmentCreated {
            shipment_id: shipment_id.clone(),
            order_id: order_id.clone(),
            warehouse_id: WarehouseId::new("w-1"),
            courier_id: CourierId::new("cr-1"),
            origin_pincode: pin("110001"),
            destination_pincode: pin(destination),
            promised_at: 0,
        }),
    );
    let arrived = envelope(
        delivered.start_utc_ms() + 11 * 60 * MINUTE,
        Event::ShipmentDelivered(ShipmentDelivered {
            shipment_id,
            order_id,
        }),
    );
    [placed, created, arrived]
}

/// Transit days 3, 4, 5 in shares 60/25/15 over `count` deliveries.
fn spread(count: usize) -> Vec<u32> {
    (0..count)
        .map(|i| match i % 20 {
            0..=11 => 3,
            12..=16 => 4,
            _ => 5,
        })
        .collect()
}

fn learn(network: &Network, config: &LearnConfig, days: &[u32], destination: &str) -> Learnt {
    let mut learnt = Learnt::default();
    let calendar = model::calendar::WorkCalendar::monday_to_saturday();
    let first = date("2026-03-02");
    for (n, &transit) in days.iter().enumerate() {
        let shipped = calendar.after_working_days(first, (n / 4) as u32);
        for envelope in delivery(n, destination, shipped, transit) {
            learnt.apply(&envelope, network, regions(), config);
        }
    }
    learnt
}

#[test]
fn a_lane_with_enough_deliveries_answers_its_own_quantiles() {
    let network = network();
    let config = LearnConfig::default();
    let learnt = learn(&network, &config, &spread(100), "560034");
    let estimate = learnt
        .transit(
            pin("110001"),
            pin("560034"),
            &CourierId::new("cr-1"),
            regions(),
            &config,
        )
        .unwrap();
    assert_eq!(estimate.level, Level::Pincode);
    assert_eq!(estimate.deliveries, 100);
    assert_eq!(estimate.days.quantile(0.5), 3);
    assert_eq!(estimate.days.quantile(0.8), 4);
    assert_eq!(estimate.days.quantile(0.9), 5);
    assert_eq!(learnt.counts.deliveries, 100);
}

#[test]
fn a_sparse_lane_falls_back_level_by_level() {
    let network = network();
    let config = LearnConfig::default();
    let learnt = learn(&network, &config, &spread(100), "560034");
    let courier = CourierId::new("cr-1");
    let transit = |destination| {
        learnt
            .transit(
                pin("110001"),
                pin(destination),
                &courier,
                regions(),
                &config,
            )
            .unwrap()
            .level
    };
    // Another pincode of the same district (Bengaluru Urban), of the same state only
    // (Ramanagara), and of another state in the same 1,000-2,000 km band (Hyderabad): each
    // answered from a wider level.
    assert_eq!(transit("560001"), Level::District);
    assert_eq!(transit("561101"), Level::State);
    assert_eq!(transit("500001"), Level::DistanceBand);
    // Thiruvananthapuram is beyond 2,000 km, a band no delivery has taught.
    assert_eq!(transit("695001"), Level::Default);
    let unknown_courier = learnt
        .transit(
            pin("110001"),
            pin("560034"),
            &CourierId::new("cr-x"),
            regions(),
            &config,
        )
        .unwrap();
    assert_eq!(unknown_courier.level, Level::Default);
    assert!(
        learnt
            .transit(pin("110001"), pin("999999"), &courier, regions(), &config)
            .is_none()
    );
}

#[test]
fn a_delivery_counts_once_and_one_without_its_shipment_not_at_all() {
    let network = network();
    let config = LearnConfig::default();
    let mut learnt = Learnt::default();
    let [placed, created, arrived] = delivery(1, "560034", date("2026-03-02"), 3);
    for envelope in [&placed, &created, &arrived, &arrived] {
        learnt.apply(envelope, &network, regions(), &config);
    }
    let [_, _, orphan] = delivery(2, "560034", date("2026-03-02"), 3);
    learnt.apply(&orphan, &network, regions(), &config);
    assert_eq!(learnt.counts.deliveries, 1);
    assert_eq!(learnt.counts.duplicates, 1);
    assert_eq!(learnt.counts.orphans, 1);
    assert_eq!(learnt.counts.handlings, 1);
}

#[test]
fn a_checkpointed_learner_resumes_with_the_same_state() {
    let network = network();
    let config = LearnConfig {
        max_pincode_lanes: 3,
        max_open: 5,
        ..LearnConfig::default()
    };
    let days = spread(60);
    let straight = learn(&network, &config, &days, "560034");
    let saved = serde_json::to_vec(&learn(&network, &config, &days[..30], "560034")).unwrap();
    let mut resumed: Learnt = serde_json::from_slice(&saved).unwrap();
    let calendar = model::calendar::WorkCalendar::monday_to_saturday();
    for (n, &transit) in days.iter().enumerate().skip(30) {
        let shipped = calendar.after_working_days(date("2026-03-02"), (n / 4) as u32);
        for envelope in delivery(n, "560034", shipped, transit) {
            resumed.apply(&envelope, &network, regions(), &config);
        }
    }
    assert_eq!(
        serde_json::to_vec(&resumed).unwrap(),
        serde_json::to_vec(&straight).unwrap()
    );
}

#[test]
fn an_order_after_the_cutoff_on_saturday_ships_after_sunday() {
    let network = network();
    let learn_config = LearnConfig::default();
    let learnt = learn(&network, &learn_config, &spread(100), "560034");
    let promise = PromiseConfig {
        quantile: 0.9,
        alternatives: 3,
    };
    let inputs = Inputs {
        network: &network,
        learnt: &learnt,
        regions: regions(),
        learn: &learn_config,
        promise: &promise,
    };
    let warehouse = network.warehouse(&WarehouseId::new("w-1")).unwrap();
    let courier = CourierId::new("cr-1");
    // Saturday 7 March 2026 at 15:00 IST, after the 14:00 cut-off: handling starts Monday 9th,
    // one handling day (learnt: most orders ship the day after) ships Tuesday 10th, 5 transit
    // days (the 90th percentile) deliver Monday 16th.
    let lane = inputs
        .lane(at("2026-03-07", 15, 0), warehouse, &courier, pin("560034"))
        .unwrap();
    assert_eq!(lane.handling_starts, date("2026-03-09"));
    assert_eq!(lane.ships_on, date("2026-03-10"));
    assert_eq!(lane.deliver_by, date("2026-03-16"));
    assert!(lane.handling_learnt);
    assert!(lane.probability >= 0.9, "{}", lane.probability);
    assert_eq!((lane.p50_days, lane.p90_days), (4, 6));
    // Before the cut-off the same day starts handling on Saturday itself.
    let early = inputs
        .lane(at("2026-03-07", 13, 59), warehouse, &courier, pin("560034"))
        .unwrap();
    assert_eq!(early.handling_starts, date("2026-03-07"));
    assert_eq!(early.deliver_by, date("2026-03-14"));
    // Republic Day (Monday 26 January) is skipped like a Sunday.
    let holiday = inputs
        .lane(at("2026-01-24", 15, 0), warehouse, &courier, pin("560034"))
        .unwrap();
    assert_eq!(holiday.handling_starts, date("2026-01-27"));
}

#[test]
fn items_are_refused_with_the_reason() {
    let mut network = network();
    let learn_config = LearnConfig::default();
    let learnt = Learnt::default();
    let promise = PromiseConfig::default();
    network
        .apply(&envelope(
            1,
            Event::StockReserved(StockReserved {
                product_id: ProductId::new("p-1"),
                warehouse_id: WarehouseId::new("w-1"),
                order_id: OrderId::new("o-9"),
                quantity: 4,
                expires_at: 0,
            }),
        ))
        .unwrap();
    let inputs = Inputs {
        network: &network,
        learnt: &learnt,
        regions: regions(),
        learn: &learn_config,
        promise: &promise,
    };
    let now = at("2026-03-04", 10, 0);
    let p1 = ProductId::new("p-1");
    assert_eq!(
        inputs.options(&p1, 2, pin("560034"), now),
        Err(Undeliverable::NoStock),
        "4 of 5 are held by an open order"
    );
    let one = inputs.options(&p1, 1, pin("560034"), now).unwrap();
    assert_eq!(one[0].courier_id, Some(CourierId::new("cr-1")));
    assert_eq!(
        one[0].deliver_by,
        date("2026-03-13"),
        "1 handling + 7 default days"
    );
    assert_eq!(
        inputs.options(&p1, 1, pin("400001"), now),
        Err(Undeliverable::NotServiceable)
    );
    assert_eq!(
        inputs.options(&p1, 1, pin("999999"), now),
        Err(Undeliverable::UnknownPincode)
    );
}

#[test]
fn a_hyperlocal_store_delivers_the_same_day_within_its_radius_only() {
    let mut network = network();
    network
        .apply(&envelope(
            1,
            Event::WarehouseUpserted(WarehouseUpserted {
                warehouse_id: WarehouseId::new("store-1"),
                pincode: pin("560034"),
                cutoff_minute: 20 * 60,
                handling_days: 0,
                working_days: Weekday::ALL.to_vec(),
                holidays: vec![],
                radius_km: Some(5.0),
                restock_lead_days: 2,
            }),
        ))
        .unwrap();
    network
        .apply(&envelope(
            2,
            Event::StockAdjusted(StockAdjusted {
                product_id: ProductId::new("p-2"),
                warehouse_id: WarehouseId::new("store-1"),
                delta: 3,
                on_hand: 3,
                reason: "receipt".into(),
            }),
        ))
        .unwrap();
    let learn_config = LearnConfig::default();
    let learnt = Learnt::default();
    let promise = PromiseConfig::default();
    let inputs = Inputs {
        network: &network,
        learnt: &learnt,
        regions: regions(),
        learn: &learn_config,
        promise: &promise,
    };
    let sunday_evening = at("2026-03-08", 18, 0);
    let p2 = ProductId::new("p-2");
    let near = inputs
        .options(&p2, 1, pin("560095"), sunday_evening)
        .unwrap();
    assert_eq!(near[0].courier_id, None);
    assert_eq!(near[0].deliver_by, date("2026-03-08"));
    assert_eq!(
        inputs.options(&p2, 1, pin("110001"), sunday_evening),
        Err(Undeliverable::OutsideRadius)
    );
}

#[test]
fn a_shipment_read_before_its_order_still_teaches_handling() {
    let network = network();
    let config = LearnConfig::default();
    let mut learnt = Learnt::default();
    // The orders and shipments topics are read side by side: either may be ahead.
    let [placed, created, arrived] = delivery(1, "560034", date("2026-03-03"), 3);
    for envelope in [&created, &placed, &arrived] {
        learnt.apply(envelope, &network, regions(), &config);
    }
    assert_eq!(learnt.counts.handlings, 1);
    assert_eq!(learnt.counts.deliveries, 1);
}

#[test]
fn handling_seen_before_its_warehouse_is_registered_is_learnt_when_it_is() {
    let config = LearnConfig::default();
    let mut late = Network::default();
    let mut learnt = Learnt::default();
    for envelope in delivery(1, "560034", date("2026-03-03"), 3) {
        learnt.apply(&envelope, &late, regions(), &config);
    }
    assert_eq!(learnt.counts.handlings, 0);
    let registered = envelope(0, Event::WarehouseUpserted(delhi_warehouse()));
    late.apply(&registered).unwrap();
    learnt.apply(&registered, &late, regions(), &config);
    assert_eq!(learnt.counts.handlings, 1);
}

/// A checkpoint written before the learnt state was packed (f32 weights, lanes and delivered
/// shipments as lists of pairs, open shipments keyed by id; trimmed from the demo's) loads,
/// and the shipment it held open is matched by its id.
#[test]
fn a_checkpoint_from_before_the_packing_loads_and_resumes() {
    let saved = include_str!("testdata/checkpoint_before_packing.json");
    let mut state: super::State = serde_json::from_str(saved).unwrap();
    assert_eq!(state.learnt.lanes(), [3, 3, 3, 3]);
    assert_eq!(state.learnt.counts.deliveries, 17_971);
    let positions = state.positions.clone();
    let delivered = envelope(
        at("2026-10-04", 12, 0),
        Event::ShipmentDelivered(ShipmentDelivered {
            shipment_id: ShipmentId::new("sh-000000001"),
            order_id: OrderId::new("o-1"),
        }),
    );
    state
        .apply(&delivered, regions(), &LearnConfig::default())
        .unwrap();
    assert_eq!(state.learnt.counts.deliveries, 17_972);
    assert_eq!(state.learnt.counts.orphans, 0);
    // Saved in the new layout and loaded again, it is the same state.
    let again: super::State = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
    assert_eq!(again, state);
    assert_eq!(again.positions, positions);
}
