//! The learner and the engine end to end on events built here, with a real arroy index in a
//! temporary directory: planted neighbours recovered, filters honoured, cold starts, the
//! session and for-you answers, order independence, replays, bounds and the index swap.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use model::payload::{
    CartChanged, OrderLine, OrderPlaced, ProductDeactivated, ProductUpserted, ProductViewed,
    SearchPerformed, StockAdjusted,
};
use model::{
    CustomerId, Envelope, Event, MerchantId, Money, OrderId, Pincode, ProductId, SessionId,
    WarehouseId,
};

use crate::embed;
use crate::engine::{Answer, Asked, Engine, Filters, ServeConfig, Source};
use crate::learn::{LearnConfig, Learner};
use crate::vectors::Store;

const T0: i64 = 1_790_000_000_000;
const MINUTE: i64 = 60_000;

fn envelope(at: i64, merchant: &str, event: Event) -> Envelope {
    Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new(merchant), event)
}

fn product(id: &str, merchant: &str, category: &str) -> Vec<Envelope> {
    vec![
        envelope(
            T0,
            merchant,
            Event::ProductUpserted(ProductUpserted {
                product_id: ProductId::new(id),
                category: category.into(),
                brand: "Brand".into(),
                title: format!("Product {id}"),
                description: String::new(),
                attributes: BTreeMap::new(),
                price: Money::inr(10_000),
            }),
        ),
        stock(id, merchant, 10),
    ]
}

fn stock(id: &str, merchant: &str, on_hand: i64) -> Envelope {
    envelope(
        T0,
        merchant,
        Event::StockAdjusted(StockAdjusted {
            product_id: ProductId::new(id),
            warehouse_id: WarehouseId::new("w-1"),
            delta: on_hand,
            on_hand,
            reason: "count".into(),
        }),
    )
}

fn view(session: &str, customer: Option<&str>, id: &str, at: i64) -> Envelope {
    envelope(
        at,
        "marketplace",
        Event::ProductViewed(ProductViewed {
            session_id: SessionId::new(session),
            customer_id: customer.map(CustomerId::new),
            product_id: ProductId::new(id),
        }),
    )
}

fn cart(session: &str, id: &str, at: i64) -> Envelope {
    envelope(
        at,
        "marketplace",
        Event::CartAdded(CartChanged {
            session_id: SessionId::new(session),
            customer_id: None,
            product_id: ProductId::new(id),
            quantity: 1,
        }),
    )
}

fn order(id: &str, customer: &str, lines: &[&str], at: i64) -> Envelope {
    envelope(
        at,
        "m-1",
        Event::OrderPlaced(OrderPlaced {
            order_id: OrderId::new(id),
            customer_id: CustomerId::new(customer),
            session_id: None,
            lines: lines
                .iter()
                .map(|p| OrderLine {
                    product_id: ProductId::new(*p),
                    quantity: 1,
                    unit_price: Money::inr(10_000),
                    gst_bps: None,
                })
                .collect(),
            delivery_pincode: Pincode::parse("560034").unwrap(),
            total: Money::inr(10_000 * lines.len() as i64),
        }),
    )
}

/// A catalog of 40 products in 4 categories over 2 merchants, and sessions in which
/// product 2k is viewed with 2k+1 (the planted pairs), with a third, random product.
fn planted() -> Vec<Envelope> {
    let mut events = Vec::new();
    for i in 0..40 {
        events.extend(product(
            &format!("p-{i}"),
            if i % 2 == 0 { "m-1" } else { "m-2" },
            &format!("c-{}", i / 10),
        ));
    }
    let mut noise = 7u64;
    for s in 0..400 {
        let pair = (s % 20) * 2;
        noise = noise
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let random = (noise >> 33) % 40;
        let at = T0 + s as i64 * MINUTE * 60;
        let session = format!("s-{s}");
        events.push(view(&session, None, &format!("p-{pair}"), at));
        events.push(view(&session, None, &format!("p-{random}"), at + MINUTE));
        events.push(view(
            &session,
            None,
            &format!("p-{}", pair + 1),
            at + 2 * MINUTE,
        ));
    }
    events
}

fn learn(events: &[Envelope]) -> Learner {
    let mut learner = Learner::default();
    for e in events {
        learner.apply(e, &LearnConfig::default());
    }
    learner
}

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn fixture(events: &[Envelope]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let learner = learn(events);
    let store = Store::open(dir.path()).unwrap();
    let edges = learner
        .viewed
        .edges(learner.now, LearnConfig::default().decay());
    store.rebuild(&embed::embed(&edges, 8, 1), 8, 1).unwrap();
    Fixture {
        _dir: dir,
        engine: Engine {
            learner: Arc::new(RwLock::new(learner)),
            vectors: Arc::new(store),
            learn: LearnConfig::default(),
            serve: ServeConfig::default(),
            deliverability: None,
        },
    }
}

fn asked(limit: usize) -> Asked {
    Asked {
        limit,
        filters: Filters {
            in_stock: true,
            ..Filters::default()
        },
        now_ms: T0,
    }
}

fn ids(answer: &Answer) -> Vec<&str> {
    answer.items.iter().map(|i| i.product_id.as_str()).collect()
}

#[test]
fn planted_neighbours_are_the_top_similar_item() {
    let f = fixture(&planted());
    for k in 0..20 {
        let answer = f
            .engine
            .similar(&ProductId::new(format!("p-{}", 2 * k)), &asked(5))
            .unwrap();
        assert!(answer.known);
        assert_eq!(ids(&answer)[0], format!("p-{}", 2 * k + 1), "{answer:?}");
        assert_eq!(answer.items[0].source, Source::CoVisitation);
    }
}

#[test]
fn filters_keep_the_shop_the_stock_and_the_exclusions() {
    let mut events = planted();
    events.push(stock("p-3", "m-2", 0));
    events.push(envelope(
        T0 + 1,
        "m-2",
        Event::ProductDeactivated(ProductDeactivated {
            product_id: ProductId::new("p-5"),
            reason: "gone".into(),
        }),
    ));
    let f = fixture(&events);
    // p-3 is out of stock and p-5 deactivated: neither is shown.
    for seed in ["p-2", "p-4"] {
        let answer = f.engine.similar(&ProductId::new(seed), &asked(20)).unwrap();
        assert!(!ids(&answer).contains(&"p-3") && !ids(&answer).contains(&"p-5"));
    }
    let mut out_of_stock_too = asked(20);
    out_of_stock_too.filters.in_stock = false;
    let answer = f
        .engine
        .similar(&ProductId::new("p-2"), &out_of_stock_too)
        .unwrap();
    assert_eq!(ids(&answer)[0], "p-3");

    let mut shop = asked(20);
    shop.filters.merchant = Some(MerchantId::new("m-1"));
    shop.filters.exclude = vec![ProductId::new("p-10")];
    let answer = f.engine.similar(&ProductId::new("p-0"), &shop).unwrap();
    assert!(!answer.items.is_empty());
    for item in &answer.items {
        let n: usize = item.product_id.as_str()[2..].parse().unwrap();
        assert_eq!(n % 2, 0, "{} is not m-1's", item.product_id.as_str());
        assert_ne!(item.product_id.as_str(), "p-10");
    }

    let mut deliver = asked(5);
    deliver.filters.pincode = Pincode::parse("560034");
    assert!(matches!(
        f.engine.similar(&ProductId::new("p-0"), &deliver),
        Err(crate::engine::Refused::NoDeliverability)
    ));
}

#[test]
fn unknown_ids_get_trending_and_say_so() {
    let f = fixture(&planted());
    let answer = f
        .engine
        .similar(&ProductId::new("never-seen"), &asked(5))
        .unwrap();
    assert!(!answer.known);
    assert_eq!(answer.items.len(), 5);
    assert!(
        answer
            .items
            .iter()
            .all(|i| i.source == Source::TrendingGlobal)
    );

    let answer = f
        .engine
        .for_you(&CustomerId::new("nobody"), &asked(3))
        .unwrap();
    assert!(!answer.known && answer.items.len() == 3);

    // A product that is in the catalog but never viewed: trending in its category first.
    let mut events = planted();
    events.extend(product("p-new", "m-1", "c-2"));
    let f = fixture(&events);
    let answer = f
        .engine
        .similar(&ProductId::new("p-new"), &asked(5))
        .unwrap();
    assert_eq!(answer.items[0].source, Source::TrendingCategory);
    assert!(answer.items.iter().take(5).all(|i| {
        let n: usize = i.product_id.as_str()[2..].parse().unwrap();
        n / 10 == 2
    }));
}

#[test]
fn bought_together_comes_from_carts_and_orders() {
    let mut events = planted();
    for n in 0..5 {
        events.push(order(
            &format!("o-{n}"),
            "c-9",
            &["p-0", "p-7"],
            T0 + n * MINUTE,
        ));
    }
    events.push(cart("s-x", "p-0", T0));
    events.push(cart("s-x", "p-9", T0 + MINUTE));
    let f = fixture(&events);
    let answer = f
        .engine
        .bought_together(&ProductId::new("p-0"), &asked(2))
        .unwrap();
    assert_eq!(ids(&answer), ["p-7", "p-9"]);
    assert!(
        answer
            .items
            .iter()
            .all(|i| i.source == Source::BoughtTogether)
    );
}

#[test]
fn session_next_items_follow_the_latest_item() {
    let f = fixture(&planted());
    let answer = f
        .engine
        .session(&[ProductId::new("p-0"), ProductId::new("p-12")], &asked(3))
        .unwrap();
    // The latest item's planted partner leads; the session's own items are not shown.
    assert_eq!(ids(&answer)[0], "p-13");
    assert!(!ids(&answer).contains(&"p-0") && !ids(&answer).contains(&"p-12"));
    assert!(ids(&answer).contains(&"p-1"));

    let live = f
        .engine
        .live_session(&SessionId::new("s-6"), &asked(3))
        .unwrap();
    assert!(live.known);
    assert_eq!(live.items[0].source, Source::Session);
}

fn search(session: &str, customer: Option<&str>, results: &[&str], at: i64) -> Envelope {
    envelope(
        at,
        "marketplace",
        Event::SearchPerformed(SearchPerformed {
            session_id: SessionId::new(session),
            customer_id: customer.map(CustomerId::new),
            query: "kurta".into(),
            filters: BTreeMap::new(),
            pincode: None,
            results: results.iter().map(|p| ProductId::new(*p)).collect(),
        }),
    )
}

#[test]
fn a_search_seeds_its_session_but_never_pairs_its_results() {
    let mut events = planted();
    let before = learn(&events);
    // A shopper who has only searched: the top results stand for what they want.
    events.push(search(
        "s-q",
        Some("c-q"),
        &["p-4", "p-30", "p-31", "p-36"],
        T0 + 999 * MINUTE,
    ));
    let f = fixture(&events);
    let live = f
        .engine
        .live_session(&SessionId::new("s-q"), &asked(3))
        .unwrap();
    assert!(live.known, "{live:?}");
    assert_eq!(live.items[0].source, Source::Session);
    // The top result weighs most: its planted partner leads. The results shown are not news.
    assert_eq!(ids(&live)[0], "p-5", "{live:?}");
    assert!(
        !ids(&live)
            .iter()
            .any(|p| ["p-4", "p-30", "p-31"].contains(p))
    );
    let for_you = f
        .engine
        .for_you(&CustomerId::new("c-q"), &asked(3))
        .unwrap();
    assert!(for_you.known, "{for_you:?}");

    // Result lists are similar by text, not by what shoppers did: no pairs, no popularity.
    let after = f.engine.learner.read().unwrap();
    let decay = LearnConfig::default().decay();
    for item in ["p-4", "p-30", "p-31", "p-36"] {
        let n = after.ids.get(&ProductId::new(item)).unwrap();
        assert_eq!(
            after.viewed.neighbours(n, before.now, decay),
            before.viewed.neighbours(n, before.now, decay),
            "{item}"
        );
    }
    assert_eq!(after.interactions, before.interactions);
    assert_eq!(after.searches, 1);
    // Only the configured top three stand for the search.
    let p36 = after.ids.get(&ProductId::new("p-36")).unwrap();
    assert!(!after.sessions["s-q"].items.iter().any(|t| t.item == p36));
}

#[test]
fn for_you_leaves_out_what_was_bought() {
    let mut events = planted();
    events.push(view("s-c", Some("c-1"), "p-20", T0 + 999 * MINUTE));
    events.push(view("s-c", Some("c-1"), "p-24", T0 + 1000 * MINUTE));
    events.push(order("o-c", "c-1", &["p-25"], T0 + 1001 * MINUTE));
    let f = fixture(&events);
    let answer = f
        .engine
        .for_you(&CustomerId::new("c-1"), &asked(5))
        .unwrap();
    assert!(answer.known);
    assert!(!ids(&answer).contains(&"p-25"), "{answer:?}");
    assert!(ids(&answer).contains(&"p-21"));
    assert_eq!(answer.items[0].source, Source::ForYou);
}

#[test]
fn a_backfill_counts_the_same_in_any_order() {
    let events = planted();
    let forward = learn(&events);
    let mut reversed: Vec<Envelope> = events.iter().take(80).cloned().collect();
    reversed.extend(events.iter().skip(80).rev().cloned());
    let backward = learn(&reversed);
    let decay = LearnConfig::default().decay();
    for item in 0..40u32 {
        let a = forward.viewed.neighbours(item, forward.now, decay);
        let b = backward.viewed.neighbours(item, backward.now, decay);
        let a: BTreeMap<u32, f32> = a.into_iter().collect();
        for (n, w) in b {
            let close = a
                .get(&n)
                .is_some_and(|v| (v - w).abs() <= 1e-3 * v.max(1.0));
            assert!(close, "item {item} neighbour {n}: {w} vs {:?}", a.get(&n));
        }
    }
}

#[test]
fn replays_below_the_positions_are_skipped_and_a_checkpoint_restores_answers() {
    let mut learner = Learner::default();
    assert!(learner.take("clicks/0", 0));
    assert!(learner.take("clicks/0", 1));
    assert!(!learner.take("clicks/0", 1));
    assert!(!learner.take("clicks/0", 0));

    let f = fixture(&planted());
    let before = f.engine.similar(&ProductId::new("p-4"), &asked(5)).unwrap();
    let saved = serde_json::to_vec(&*f.engine.learner.read().unwrap()).unwrap();
    let mut restored: Learner = serde_json::from_slice(&saved).unwrap();
    restored.ids.reindex();
    *f.engine.learner.write().unwrap() = restored;
    let after = f.engine.similar(&ProductId::new("p-4"), &asked(5)).unwrap();
    assert_eq!(ids(&before), ids(&after));
}

#[test]
fn sessions_customers_and_neighbour_lists_stay_bounded() {
    let config = LearnConfig {
        max_sessions: 100,
        max_customers: 50,
        neighbours: 5,
        ..LearnConfig::default()
    };
    let mut learner = Learner::default();
    for p in 0..300 {
        for e in product(&format!("p-{p}"), "m-1", "c-0") {
            learner.apply(&e, &config);
        }
    }
    for s in 0..1_000 {
        for k in 0..4 {
            let e = view(
                &format!("s-{s}"),
                Some(&format!("c-{s}")),
                &format!("p-{}", (s * 7 + k * 13) % 300),
                T0 + s * 1_000 + k,
            );
            learner.apply(&e, &config);
        }
    }
    assert!(learner.interactions == 4_000 && learner.unknown_products == 0);
    assert!(learner.sessions.len() <= 100);
    assert!(learner.customers.len() <= 50);
    let decay = config.decay();
    assert!((0..300u32).all(|i| learner.viewed.neighbours(i, learner.now, decay).len() <= 10));
}

#[test]
fn clicks_on_products_the_catalog_never_announced_are_not_learnt() {
    let mut learner = learn(&planted());
    let before = learner.sizes();
    for s in 0..100 {
        learner.apply(
            &view("s-made-up", None, &format!("made-up-{s}"), T0),
            &LearnConfig::default(),
        );
    }
    assert_eq!(learner.unknown_products, 100);
    assert_eq!(learner.sizes().items, before.items);
    assert_eq!(learner.sizes().viewed_edges, before.viewed_edges);
}

#[test]
fn embedding_neighbours_answer_for_rarely_seen_items() {
    // p-40 was viewed once, next to p-0: co-visitation knows only p-0, the vectors place
    // it near p-0's partner p-1 as well.
    let mut events = planted();
    events.extend(product("p-40", "m-1", "c-0"));
    events.push(view("s-rare", None, "p-0", T0 + 5_000 * MINUTE));
    events.push(view("s-rare", None, "p-40", T0 + 5_001 * MINUTE));
    let f = fixture(&events);
    let answer = f
        .engine
        .similar(&ProductId::new("p-40"), &asked(5))
        .unwrap();
    assert_eq!(ids(&answer)[0], "p-0");
    assert!(
        answer.items.iter().any(|i| i.source == Source::Embedding),
        "{answer:?}"
    );
}

#[test]
fn queries_during_rebuilds_see_a_whole_index() {
    let learner = learn(&planted());
    let edges = learner
        .viewed
        .edges(learner.now, LearnConfig::default().decay());
    let vectors = embed::embed(&edges, 8, 1);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.rebuild(&vectors, 8, 1).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let found = store.nearest_to_item(r, 10).unwrap();
                    // Every item of a whole index has a vector and nine neighbours.
                    assert_eq!(found.map(|f| f.len()), Some(10));
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for _ in 0..10 {
        store.rebuild(&vectors, 8, 1).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(answered > 0);
    assert_eq!(store.generation(), 11);
    // Only the current index is left on disk.
    let left: HashSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
