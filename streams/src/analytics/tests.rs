//! The live fold and its answers on events built here: what is counted for whom, order
//! independence, the window's bound, and the query cap.

use std::collections::BTreeMap;

use model::payload::{
    CartChanged, OrderCancelled, OrderLine, OrderPlaced, PaymentCaptured, ProductClicked,
    ProductUpserted, ProductViewed, RefundIssued, SearchPerformed,
};
use model::{
    CustomerId, Envelope, Event, MerchantId, Money, OrderId, PaymentId, Pincode, ProductId,
    RefundId, SessionId,
};

use super::live::{Live, LiveConfig, MINUTE_MS};
use super::query::{self, Grain, Range, parse_time};

fn t0() -> i64 {
    parse_time("2026-12-04T10:00").unwrap()
}

fn at(minutes: i64, merchant: &str, event: Event) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        t0() + minutes * MINUTE_MS,
        MerchantId::new(merchant),
        event,
    )
}

fn product(id: &str, merchant: &str) -> Envelope {
    at(
        -600,
        merchant,
        Event::ProductUpserted(ProductUpserted {
            product_id: ProductId::new(id),
            category: "apparel".into(),
            brand: "Fabindia".into(),
            title: format!("Kurta {id}"),
            description: String::new(),
            attributes: BTreeMap::new(),
            price: Money::inr(50_000),
        }),
    )
}

fn order(minutes: i64, merchant: &str, id: &str, lines: &[(&str, u32)]) -> Envelope {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(p, q)| OrderLine {
            product_id: ProductId::new(*p),
            quantity: *q,
            unit_price: Money::inr(50_000),
            gst_bps: None,
        })
        .collect();
    let total = lines.iter().map(|l| 50_000 * i64::from(l.quantity)).sum();
    at(
        minutes,
        merchant,
        Event::OrderPlaced(OrderPlaced {
            order_id: OrderId::new(id),
            customer_id: CustomerId::new("c-1"),
            session_id: None,
            lines,
            delivery_pincode: Pincode::parse("560034").unwrap(),
            total: Money::inr(total),
        }),
    )
}

fn view(minutes: i64, storefront: &str, product: &str) -> Envelope {
    at(
        minutes,
        storefront,
        Event::ProductViewed(ProductViewed {
            session_id: SessionId::new("s-1"),
            customer_id: None,
            product_id: ProductId::new(product),
        }),
    )
}

fn cart(minutes: i64, product: &str) -> Envelope {
    at(
        minutes,
        model::MARKETPLACE,
        Event::CartAdded(CartChanged {
            session_id: SessionId::new("s-1"),
            customer_id: None,
            product_id: ProductId::new(product),
            quantity: 1,
        }),
    )
}

fn search(minutes: i64, merchant: &str, query: &str, results: &[&str]) -> Envelope {
    at(
        minutes,
        merchant,
        Event::SearchPerformed(SearchPerformed {
            session_id: SessionId::new("s-1"),
            customer_id: None,
            query: query.into(),
            filters: BTreeMap::new(),
            pincode: None,
            results: results.iter().map(|p| ProductId::new(*p)).collect(),
        }),
    )
}

fn click(minutes: i64, query: &str, product: &str) -> Envelope {
    at(
        minutes,
        model::MARKETPLACE,
        Event::ProductClicked(ProductClicked {
            session_id: SessionId::new("s-1"),
            customer_id: None,
            product_id: ProductId::new(product),
            position: 0,
            query: query.into(),
        }),
    )
}

/// Two shops' day: m-1 sells p-1 and p-2, m-2 sells p-9; a refund and a cancellation.
fn day() -> Vec<Envelope> {
    vec![
        product("p-1", "m-1"),
        product("p-2", "m-1"),
        product("p-9", "m-2"),
        view(1, model::MARKETPLACE, "p-1"),
        view(2, model::MARKETPLACE, "p-1"),
        view(3, "m-1", "p-2"),
        view(4, model::MARKETPLACE, "p-9"),
        cart(5, "p-1"),
        order(6, "m-1", "o-1", &[("p-1", 2), ("p-2", 1)]),
        at(
            6,
            "m-1",
            Event::PaymentCaptured(PaymentCaptured {
                payment_id: PaymentId::new("pay-1"),
                order_id: OrderId::new("o-1"),
                amount: Money::inr(150_000),
                provider: "sim".into(),
            }),
        ),
        order(70, "m-1", "o-2", &[("p-1", 1)]),
        order(71, "m-2", "o-3", &[("p-9", 4)]),
        at(
            80,
            "m-1",
            Event::RefundIssued(RefundIssued {
                refund_id: RefundId::new("r-1"),
                payment_id: PaymentId::new("pay-1"),
                order_id: OrderId::new("o-1"),
                amount: Money::inr(105_000),
            }),
        ),
        at(
            80,
            "m-1",
            Event::OrderCancelled(OrderCancelled {
                order_id: OrderId::new("o-1"),
                reason: "ordered twice".into(),
                refund: Money::inr(105_000),
            }),
        ),
        search(90, "m-1", "Cotton  Kurta", &["p-1"]),
        search(91, "m-1", "cotton kurta", &["p-1"]),
        search(92, "m-1", "silk saree", &[]),
        // A marketplace-wide search is no one shop's.
        search(93, model::MARKETPLACE, "kurta", &["p-1", "p-9"]),
        click(94, "cotton kurta", "p-1"),
    ]
}

fn fold(events: &[Envelope]) -> Live {
    let mut live = Live::default();
    for event in events {
        live.apply(event, &LiveConfig::default());
    }
    live
}

fn range(grain: Grain) -> Range {
    let from = parse_time("2026-12-04").unwrap();
    Range::new(from, from + 24 * 60 * MINUTE_MS, grain, i64::MAX).unwrap()
}

#[test]
fn each_shop_sees_its_own_orders_clicks_and_searches() {
    let live = fold(&day());
    let m1 = live.shops.get("m-1");
    let sales = query::sales(m1, &range(Grain::Hour));
    assert_eq!(sales.totals.orders, 2);
    assert_eq!(sales.totals.units, 4);
    assert_eq!(sales.totals.gmv["INR"], 200_000);
    assert_eq!(sales.totals.refunded["INR"], 105_000);
    assert_eq!(sales.totals.net["INR"], 95_000);
    assert_eq!(sales.totals.aov["INR"], 100_000);
    assert_eq!(sales.totals.cancellations, 1);
    // 24 hourly points; the 10:00 hour holds o-1, the 11:00 hour o-2.
    assert_eq!(sales.series.len(), 24);
    let ten = sales
        .series
        .iter()
        .find(|p| p.start == "2026-12-04T10:00+05:30")
        .unwrap();
    assert_eq!((ten.orders, ten.units), (1, 3));

    // Views on the marketplace storefront count for the product's shop.
    let funnel = query::funnel(m1, &range(Grain::Day));
    assert_eq!(
        (
            funnel.totals.views,
            funnel.totals.cart_adds,
            funnel.totals.orders
        ),
        (3, 1, 2)
    );
    assert!((funnel.totals.conversion - 2.0 / 3.0).abs() < 1e-9);
    let m2 = query::funnel(live.shops.get("m-2"), &range(Grain::Day));
    assert_eq!((m2.totals.views, m2.totals.orders), (1, 1));

    let products = query::top_products(m1, &range(Grain::Day), |_| None, 10);
    assert_eq!(products[0].product_id, "p-1");
    assert_eq!((products[0].units, products[0].views), (3, 2));

    let searches = query::search(m1, &range(Grain::Day), 10);
    assert_eq!(searches.series.totals.searches, 3);
    assert_eq!(searches.series.totals.zero_result_searches, 1);
    assert_eq!(searches.series.totals.clicks, 1);
    assert_eq!(searches.top_queries[0].query, "cotton kurta");
    assert_eq!(searches.top_queries[0].searches, 2);
    assert_eq!(searches.top_queries[0].clicks, 1);
    assert_eq!(searches.zero_result_queries[0].query, "silk saree");

    let refunds = query::cancellations(m1, &range(Grain::Day));
    assert_eq!(refunds.by_reason["ordered twice"], 1);
    assert_eq!(refunds.refund_tiers["70%"], 1);
    assert!(live.knows("m-2") && !live.knows("m-3"));
}

#[test]
fn any_order_and_any_replay_split_end_in_the_same_numbers() {
    let events = day();
    let straight = fold(&events);
    // The catalog first (the job reads it ahead), then one topic after another in the
    // reverse of their order: a partition keeps its order, topics do not (a payment may
    // arrive after its order's cancellation).
    let mut by_topic = events[3..].to_vec();
    by_topic.sort_by_key(|e| std::cmp::Reverse(e.topic().name()));
    let shuffled: Vec<Envelope> = events[..3].iter().cloned().chain(by_topic).collect();
    assert_ne!(shuffled, events);
    let reordered = fold(&shuffled);
    assert_eq!(straight.shops, reordered.shops);
    // A consumer with a backlog may read clicks before their products' upserts: the clicks
    // wait for the catalog to name the shop.
    let catalog_last: Vec<Envelope> = events[3..].iter().chain(&events[..3]).cloned().collect();
    let late_catalog = fold(&catalog_last);
    assert_eq!(straight.shops, late_catalog.shops);
    assert_eq!(late_catalog.unattributed, 0);
}

#[test]
fn the_window_bounds_memory_and_counts_what_is_too_old() {
    let config = LiveConfig {
        window_hours: 2,
        ..LiveConfig::default()
    };
    let mut live = Live::default();
    live.apply(&product("p-1", "m-1"), &config);
    for minute in 0..(10 * 60) {
        live.apply(&view(minute, "m-1", "p-1"), &config);
    }
    let (minutes, _) = live.sizes();
    // Pruned each hour: at most the window plus the hour being filled.
    assert!(minutes <= 3 * 60, "{minutes} minute buckets");
    live.apply(&view(0, "m-1", "p-1"), &config);
    assert_eq!(live.too_old, 1);
    assert!(live.window_start(&config) >= t0() + 7 * 60 * MINUTE_MS);
}

#[test]
fn queries_past_the_daily_cap_are_summed_as_other() {
    let config = LiveConfig {
        queries_per_day: 2,
        ..LiveConfig::default()
    };
    let mut live = Live::default();
    for (i, q) in ["a", "b", "c", "d", "a"].iter().enumerate() {
        live.apply(&search(i as i64, "m-1", q, &[]), &config);
    }
    let report = query::search(live.shops.get("m-1"), &range(Grain::Day), 10);
    assert_eq!(report.top_queries.len(), 2);
    assert_eq!(report.top_queries[0].searches, 2);
    assert_eq!(report.other_queries, 2);
    assert_eq!(report.series.totals.searches, 5);
}

#[test]
fn a_range_starting_inside_a_minute_counts_that_whole_minute() {
    let live = fold(&day());
    // o-1 is placed at 10:06; a range from 10:06:30 still holds it, in total and in its point.
    let from = t0() + 6 * MINUTE_MS + 30_000;
    let range = Range::new(from, from + 10 * MINUTE_MS, Grain::Minute, i64::MAX).unwrap();
    let sales = query::sales(live.shops.get("m-1"), &range);
    assert_eq!(sales.totals.orders, 1);
    assert_eq!(sales.series[0].orders, 1);
    assert_eq!(sales.series[0].start, "2026-12-04T10:06+05:30");
}

fn shipped(
    minutes: i64,
    merchant: &str,
    order: &str,
    courier: &str,
    promised_in_minutes: i64,
) -> Envelope {
    at(
        minutes,
        merchant,
        Event::ShipmentCreated(model::payload::ShipmentCreated {
            shipment_id: model::ShipmentId::new(format!("sh-{order}")),
            order_id: OrderId::new(order),
            warehouse_id: model::WarehouseId::new("w-1"),
            courier_id: model::CourierId::new(courier),
            origin_pincode: Pincode::parse("110001").unwrap(),
            destination_pincode: Pincode::parse("560034").unwrap(),
            promised_at: t0() + promised_in_minutes * MINUTE_MS,
        }),
    )
}

fn delivered(minutes: i64, merchant: &str, order: &str) -> Envelope {
    at(
        minutes,
        merchant,
        Event::ShipmentDelivered(model::payload::ShipmentDelivered {
            shipment_id: model::ShipmentId::new(format!("sh-{order}")),
            order_id: OrderId::new(order),
        }),
    )
}

#[test]
fn deliveries_count_against_their_promise_by_courier_and_state_even_past_the_window() {
    let config = LiveConfig::default();
    let day = 24 * 60;
    let mut live = Live::default();
    // Shipped three days before the deliveries: older than the 48-hour window.
    for envelope in [
        order(-3 * day - 10, "m-1", "o-1", &[("p-1", 1)]),
        shipped(-3 * day, "m-1", "o-1", "bluedart", 0),
        shipped(-3 * day, "m-1", "o-2", "bluedart", 60),
        shipped(-3 * day, "m-1", "o-3", "delhivery", 0),
        shipped(-3 * day, "m-2", "o-9", "delhivery", 0),
        order(0, "m-1", "o-x", &[("p-1", 1)]),
        delivered(-5, "m-1", "o-1"),
        delivered(30, "m-1", "o-2"),
        delivered(31, "m-1", "o-unknown"),
    ] {
        live.apply(&envelope, &config);
    }
    let range = Range::new(
        t0() - 60 * MINUTE_MS,
        t0() + 120 * MINUTE_MS,
        Grain::Hour,
        t0() + day * MINUTE_MS,
    )
    .unwrap();
    let open = live.shipments.get("m-1").into_iter().flatten();
    let report =
        super::delivery::report(live.shops.get("m-1"), &range, open, t0() + 90 * MINUTE_MS);
    assert_eq!((report.totals.delivered, report.totals.on_time), (2, 2));
    assert_eq!(report.totals.tat_p50_days, Some(2));
    assert_eq!(report.by_courier.len(), 1);
    assert_eq!(report.by_courier[0].name, "bluedart");
    assert_eq!(report.by_state[0].name, "Karnataka");
    // o-3 is past its promise and still on its way; m-2's shipment is not m-1's.
    assert_eq!(report.late.len(), 1);
    assert_eq!(report.late[0].order_id, "o-3");
    assert_eq!(report.late[0].delivered_at, None);
    assert!(
        !live.shipments.contains_key("o-1"),
        "a delivered shipment is forgotten"
    );
}

#[test]
fn a_late_delivery_is_listed_with_both_dates() {
    let config = LiveConfig::default();
    let mut live = Live::default();
    for envelope in [
        shipped(-100, "m-1", "o-1", "bluedart", -10),
        delivered(0, "m-1", "o-1"),
    ] {
        live.apply(&envelope, &config);
    }
    let range = Range::new(
        t0() - 60 * MINUTE_MS,
        t0() + 60 * MINUTE_MS,
        Grain::Hour,
        t0() + 60 * MINUTE_MS,
    )
    .unwrap();
    let report = super::delivery::report(live.shops.get("m-1"), &range, std::iter::empty(), t0());
    assert_eq!((report.totals.delivered, report.totals.on_time), (1, 0));
    assert!(report.totals.mean_slack_hours < 0.0);
    assert_eq!(report.late.len(), 1);
    assert_eq!(
        report.late[0].delivered_at.as_deref(),
        Some("2026-12-04T10:00+05:30")
    );
}

#[test]
fn shipments_past_the_cap_are_counted_not_watched() {
    let config = LiveConfig {
        max_shipments: 2,
        ..LiveConfig::default()
    };
    let mut live = Live::default();
    for order in ["o-1", "o-2", "o-3"] {
        live.apply(&shipped(0, "m-1", order, "bluedart", 60), &config);
    }
    assert_eq!(live.shipments["m-1"].len(), 2);
    assert_eq!(live.shipments_unwatched, 1);
    // A delivery makes room.
    live.apply(&delivered(1, "m-1", "o-1"), &config);
    live.apply(&shipped(2, "m-1", "o-4", "bluedart", 60), &config);
    assert!(live.shipments["m-1"].contains_key("o-4"));
}
