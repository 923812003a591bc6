use std::collections::HashMap;

use model::{Event, EventType, codec, geo};

use super::*;

fn small(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        rate: 500.0,
        products: 300,
        customers: 2_000,
        ..GeneratorConfig::default()
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_events() {
    let encode = |seed| -> Vec<Vec<u8>> {
        Generator::new(small(seed))
            .unwrap()
            .take(5_000)
            .map(|e| codec::encode(&e))
            .collect()
    };
    assert_eq!(encode(7), encode(7));
    assert_ne!(encode(7), encode(8));
}

#[test]
fn output_is_in_event_time_order_and_decodes() {
    let mut last = i64::MIN;
    for envelope in Generator::new(small(1)).unwrap().take(20_000) {
        assert!(envelope.event_time >= last, "event time went backwards");
        last = envelope.event_time;
        assert_eq!(codec::decode(&codec::encode(&envelope)).unwrap(), envelope);
    }
}

#[test]
fn the_catalog_comes_first_then_every_kind_of_traffic() {
    let config = small(3);
    let products = config.products;
    let events: Vec<_> = Generator::new(config).unwrap().take(200_000).collect();
    assert!(events[..products * 2].iter().all(|e| matches!(
        e.event_type(),
        EventType::ProductUpserted | EventType::StockAdjusted
    )));
    let mut seen: HashMap<EventType, usize> = HashMap::new();
    for event in &events {
        *seen.entry(event.event_type()).or_default() += 1;
    }
    for expected in [
        EventType::SearchPerformed,
        EventType::ProductViewed,
        EventType::ProductClicked,
        EventType::CartAdded,
        EventType::CartRemoved,
        EventType::Wishlisted,
        EventType::OrderPlaced,
        EventType::StockReserved,
        EventType::PaymentCaptured,
        EventType::PaymentFailed,
        EventType::OrderConfirmed,
        EventType::OrderFailed,
        EventType::OrderCancelled,
        EventType::RefundIssued,
        EventType::OrderPacked,
        EventType::ShipmentCreated,
        EventType::OrderShipped,
    ] {
        assert!(
            seen.contains_key(&expected),
            "no {expected} in 200k events: {seen:?}"
        );
    }
    // Views dominate orders, as on every storefront.
    assert!(seen[&EventType::ProductViewed] > 5 * seen[&EventType::OrderPlaced]);
}

#[test]
fn the_mean_rate_holds_over_a_day() {
    let config = GeneratorConfig {
        rate: 5.0,
        ..small(4)
    };
    let start = config.start_ms;
    let mut generator = Generator::new(config).unwrap();
    let day_end = start + 24 * HOUR_MS;
    let traffic = generator
        .by_ref()
        .skip(600)
        .take_while(|e| e.event_time < day_end)
        .filter(|e| e.topic() == model::Topic::Clicks || e.topic() == model::Topic::Searches)
        .count();
    // Session steps are ~all the traffic at a 5/s mean over 86,400 s; allow for follow-ups.
    let expected = 5.0 * 86_400.0;
    assert!(
        (0.7 * expected..1.3 * expected).contains(&(traffic as f64)),
        "{traffic}"
    );
}

#[test]
fn hyperlocal_orders_deliver_within_the_radius() {
    let config = GeneratorConfig {
        hyperlocal_share: 1.0,
        ..small(5)
    };
    let radius = config.hyperlocal_radius_km;
    let generator = Generator::new(config).unwrap();
    let places: HashMap<u32, (f64, f64)> = geo::places()
        .into_iter()
        .map(|p| (p.pincode.number(), (p.latitude, p.longitude)))
        .collect();
    let world = generator.world().clone();
    let mut orders = 0;
    for envelope in generator.take(100_000) {
        if let Event::OrderPlaced(order) = &envelope.event {
            let merchant = world
                .merchants
                .iter()
                .find(|m| m.id == envelope.merchant_id)
                .unwrap();
            let store = merchant.store.as_ref().unwrap();
            if store.nearby.is_empty() {
                continue;
            }
            let km = geo::distance_km(
                places[&store.pincode.number()],
                places[&order.delivery_pincode.number()],
            );
            assert!(km <= radius + 1e-9, "{km} km");
            orders += 1;
        }
    }
    assert!(orders > 0);
}

#[test]
fn order_totals_match_their_lines() {
    for envelope in Generator::new(small(6)).unwrap().take(50_000) {
        if let Event::OrderPlaced(order) = envelope.event {
            let sum: i64 = order
                .lines
                .iter()
                .map(|l| l.unit_price.amount_minor * i64::from(l.quantity))
                .sum();
            assert_eq!(sum, order.total.amount_minor);
            assert!(!order.lines.is_empty());
        }
    }
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let error = Generator::new(GeneratorConfig {
        rate: 0.0,
        ..GeneratorConfig::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("generator.rate"), "{error}");
}

#[test]
fn the_network_registers_every_warehouse_and_store_and_couriers_cover_most_districts() {
    let generator = Generator::new(small(4)).unwrap();
    let network = generator.network();
    assert!(network.iter().all(|e| e.topic() == model::Topic::Logistics));
    let warehouses = network
        .iter()
        .filter(|e| e.event_type() == EventType::WarehouseUpserted)
        .count();
    assert_eq!(warehouses, generator.world().warehouses.len());
    let stores = generator
        .world()
        .merchants
        .iter()
        .filter(|m| m.store.is_some())
        .count();
    assert!(stores > 0);
    let couriers = generator.world().couriers.len();
    let districts = network
        .iter()
        .filter(|e| e.event_type() == EventType::CoverageUpserted)
        .count();
    let sorting_districts: std::collections::BTreeSet<u32> = geo::places()
        .iter()
        .filter(|p| p.delivery)
        .map(|p| p.pincode.number() / 1000)
        .collect();
    // Each courier skips about one district in ten.
    let all = couriers * sorting_districts.len();
    assert!(
        (all * 8 / 10..all).contains(&districts),
        "{districts} of {all} courier districts"
    );
    assert_eq!(network, Generator::new(small(4)).unwrap().network());
}

#[test]
fn the_history_is_delivered_before_the_start_and_keeps_the_live_events_unchanged() {
    let config = small(5);
    let start = config.start_ms;
    let live: Vec<_> = Generator::new(config.clone())
        .unwrap()
        .take(5_000)
        .collect();
    let generator = Generator::new(config).unwrap();
    let history = generator.history(2_000, 30);
    assert!(history.len() > 2 * 1_500, "{}", history.len());
    assert!(history.iter().all(|e| e.event_time < start));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].event_time <= w[1].event_time)
    );
    let delivered = history
        .iter()
        .filter(|e| e.event_type() == EventType::ShipmentDelivered)
        .count();
    assert_eq!(delivered * 2, history.len());
    assert_eq!(generator.take(5_000).collect::<Vec<_>>(), live);
}
