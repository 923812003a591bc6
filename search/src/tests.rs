//! The engine end to end on a real index in a temporary directory: typo tolerance, prefixes,
//! synonyms, units, facets, filters, sorts, corrections, highlights, the click prior and
//! restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use model::payload::{
    ProductClicked, ProductDeactivated, ProductUpserted, SearchPerformed, StockAdjusted,
};
use model::{Envelope, Event, MerchantId, Money, ProductId, SessionId, WarehouseId};

use crate::collect::FacetSet;
use crate::engine::{Engine, Refused, Request, Sort};
use crate::index::{Indexer, Opened, SearchIndex};
use crate::prior::{Prior, PriorConfig};
use crate::query::{Filters, RankConfig};
use crate::text::Vocabulary;

struct Product {
    id: &'static str,
    merchant: &'static str,
    title: &'static str,
    brand: &'static str,
    category: &'static str,
    description: &'static str,
    attributes: &'static [(&'static str, &'static str)],
    rupees: i64,
    stock: i64,
}

const CATALOG: &[Product] = &[
    Product {
        id: "p-1",
        merchant: "m-1",
        title: "Kalaa Indigo Kurta",
        brand: "Kalaa",
        category: "apparel",
        description: "Hand block printed cotton.",
        attributes: &[("size", "M"), ("colour", "indigo")],
        rupees: 999,
        stock: 5,
    },
    Product {
        id: "p-2",
        merchant: "m-1",
        title: "Kalaa Block Print Saree",
        brand: "Kalaa",
        category: "apparel",
        description: "Six yards of mulmul.",
        attributes: &[("size", "Free"), ("colour", "maroon")],
        rupees: 2499,
        stock: 0,
    },
    Product {
        id: "p-3",
        merchant: "m-2",
        title: "Urban Loom Cotton Kurta",
        brand: "Urban Loom",
        category: "apparel",
        description: "Everyday wear.",
        attributes: &[("size", "L"), ("colour", "white")],
        rupees: 799,
        stock: 3,
    },
    Product {
        id: "p-4",
        merchant: "m-2",
        title: "Annapurna Farms Stone Ground Atta 1000 g",
        brand: "Annapurna Farms",
        category: "grocery",
        description: "Whole wheat flour.",
        attributes: &[("weight", "1 kg")],
        rupees: 299,
        stock: 40,
    },
    Product {
        id: "p-5",
        merchant: "m-3",
        title: "Paduka Kolhapuri Chappal",
        brand: "Paduka",
        category: "footwear",
        description: "Tan leather.",
        attributes: &[("size", "8")],
        rupees: 1299,
        stock: 7,
    },
    Product {
        id: "p-6",
        merchant: "m-3",
        title: "Voltix 5G Smartphone 128 GB",
        brand: "Voltix",
        category: "electronics",
        description: "A phone.",
        attributes: &[("storage", "128 GB")],
        rupees: 14999,
        stock: 9,
    },
    Product {
        id: "p-7",
        merchant: "m-3",
        title: "Craftwala Brass Lamp",
        brand: "Craftwala",
        category: "home",
        description: "Looks lovely beside a kurta on a festive table.",
        attributes: &[("material", "brass")],
        rupees: 1899,
        stock: 2,
    },
    Product {
        id: "p-8",
        merchant: "m-1",
        title: "Biba Street Linen Kurta",
        brand: "Biba Street",
        category: "apparel",
        description: "Breezy linen.",
        attributes: &[("size", "M"), ("colour", "white")],
        rupees: 1499,
        stock: 4,
    },
];

fn envelope(n: usize, merchant: &str, event: Event) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        1_790_000_000_000 + n as i64 * 1_000,
        MerchantId::new(merchant),
        event,
    )
}

fn upsert(n: usize, p: &Product) -> Envelope {
    envelope(
        n,
        p.merchant,
        Event::ProductUpserted(ProductUpserted {
            product_id: ProductId::new(p.id),
            category: p.category.into(),
            brand: p.brand.into(),
            title: p.title.into(),
            description: p.description.into(),
            attributes: p
                .attributes
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            price: Money::inr(p.rupees * 100),
        }),
    )
}

fn stock(n: usize, p: &Product, on_hand: i64) -> Envelope {
    envelope(
        n,
        p.merchant,
        Event::StockAdjusted(StockAdjusted {
            product_id: ProductId::new(p.id),
            warehouse_id: WarehouseId::new("w-1"),
            delta: on_hand,
            on_hand,
            reason: "count".into(),
        }),
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    indexer: Indexer,
    engine: Engine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (index, payload, opened) = SearchIndex::open(dir.path()).unwrap();
    assert_eq!(opened, Opened::Created);
    let mut indexer = Indexer::new(Arc::clone(&index), payload, 20 << 20).unwrap();
    for (n, p) in CATALOG.iter().enumerate() {
        assert!(indexer.take("catalog/0", n as i64 * 2));
        indexer.apply(&upsert(n, p)).unwrap();
        assert!(indexer.take("inventory/0", n as i64));
        indexer.apply(&stock(n, p, p.stock)).unwrap();
    }
    indexer.commit().unwrap();
    let engine = Engine {
        index,
        prior: Arc::new(RwLock::new(Prior::default())),
        vocabulary: Vocabulary::load(None).unwrap(),
        rank: RankConfig::default(),
        prior_config: PriorConfig::default(),
        deliverability: None,
        pincode_window: 500,
    };
    Fixture {
        _dir: dir,
        indexer,
        engine,
    }
}

fn ask(q: &str) -> Request {
    Request {
        q: q.into(),
        page: 1,
        per_page: 20,
        now_ms: 1_790_000_100_000,
        ..Request::default()
    }
}

fn ids(engine: &Engine, request: &Request) -> Vec<String> {
    engine
        .search(request)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.product_id.to_string())
        .collect()
}

#[test]
fn typos_are_tolerated_by_word_length() {
    let f = fixture();
    // Five letters: one typo (a transposition counts as one).
    assert!(ids(&f.engine, &ask("kutra ")).contains(&"p-1".to_owned()));
    // Nine or more: two.
    assert_eq!(ids(&f.engine, &ask("smartfone ")), ["p-6"]);
    // Four letters: none, so the query as typed finds nothing and is corrected.
    let answer = f.engine.search(&ask("atat ")).unwrap();
    assert_eq!(answer.corrected_query.as_deref(), Some("atta"));
    assert_eq!(answer.hits[0].product_id.as_str(), "p-4");
}

#[test]
fn the_last_word_may_be_unfinished() {
    let f = fixture();
    assert_eq!(ids(&f.engine, &ask("kolhapuri chap")), ["p-5"]);
    assert_eq!(ids(&f.engine, &ask("voltix smartph")), ["p-6"]);
    // A finished word (a space after it) is not a prefix.
    assert!(
        ids(&f.engine, &ask("voltix smartph ")).is_empty()
            || f.engine
                .search(&ask("voltix smartph "))
                .unwrap()
                .corrected_query
                .is_some()
    );
}

#[test]
fn transliterations_synonyms_and_units_match() {
    let f = fixture();
    assert_eq!(ids(&f.engine, &ask("sari ")), ["p-2"]);
    assert_eq!(ids(&f.engine, &ask("aata 1kg")), ["p-4"]);
    assert_eq!(ids(&f.engine, &ask("atta 1 kg")), ["p-4"]);
    assert_eq!(
        ids(&f.engine, &ask("chappals for men"))
            .first()
            .map(String::as_str),
        Some("p-5")
    );
}

#[test]
fn title_matches_rank_above_description_matches() {
    let f = fixture();
    let found = ids(&f.engine, &ask("kurta "));
    assert_eq!(found.last().map(String::as_str), Some("p-7"), "{found:?}");
    assert_eq!(found.len(), 4);
}

#[test]
fn facets_count_the_filtered_set_and_filters_combine() {
    let f = fixture();
    let mut request = ask("kurta ");
    request.facets = FacetSet {
        category: true,
        brand: true,
        price: true,
        attributes: vec!["size".into()],
        ..FacetSet::default()
    };
    let answer = f.engine.search(&request).unwrap();
    let brands: BTreeMap<_, _> = answer.facets["brand"]
        .iter()
        .map(|c| (c.value.clone(), c.count))
        .collect();
    assert_eq!(brands["Kalaa"], 1);
    assert_eq!(brands["Craftwala"], 1);
    let sizes: BTreeMap<_, _> = answer.facets["attr.size"]
        .iter()
        .map(|c| (c.value.clone(), c.count))
        .collect();
    assert_eq!(sizes["m"], 2);
    // OR within a facet, AND across.
    request.filters = Filters {
        brands: vec!["kalaa".into(), "Urban Loom".into()],
        ..Filters::default()
    };
    let mut found = ids(&f.engine, &request);
    found.sort();
    assert_eq!(found, ["p-1", "p-3"]);
    request
        .filters
        .attributes
        .insert("size".into(), vec!["M".into()]);
    assert_eq!(ids(&f.engine, &request), ["p-1"]);
    let answer = f.engine.search(&request).unwrap();
    assert_eq!(
        answer.facets["brand"].len(),
        1,
        "facets count the filtered set"
    );
    request.filters = Filters {
        price_max: Some(1_000 * 100),
        merchant: Some(MerchantId::new("m-2")),
        ..Filters::default()
    };
    assert_eq!(ids(&f.engine, &request), ["p-3"]);
}

#[test]
fn unknown_attributes_and_pages_past_the_end_are_refused() {
    let f = fixture();
    let mut request = ask("kurta");
    request
        .filters
        .attributes
        .insert("sleeve".into(), vec!["long".into()]);
    assert!(
        matches!(f.engine.search(&request), Err(Refused::UnknownAttribute(name)) if name == "sleeve")
    );
    let mut request = ask("kurta");
    request.page = 3;
    request.per_page = 2;
    assert!(matches!(
        f.engine.search(&request),
        Err(Refused::PageOutOfRange { page: 3, last: 2 })
    ));
    // Query syntax is text.
    assert!(f.engine.search(&ask("kurta AND title:* OR \"(")).is_ok());
}

#[test]
fn sorts_order_by_price_and_age() {
    let f = fixture();
    let mut request = ask("kurta ");
    request.sort = Sort::PriceAsc;
    assert_eq!(ids(&f.engine, &request), ["p-3", "p-1", "p-8", "p-7"]);
    request.sort = Sort::Newest;
    assert_eq!(ids(&f.engine, &request), ["p-8", "p-7", "p-3", "p-1"]);
}

#[test]
fn stock_deactivation_and_reprice_change_results_after_commit() {
    let mut f = fixture();
    let mut request = ask("saree ");
    request.filters.in_stock = Some(true);
    let found = f.engine.search(&request).unwrap();
    assert!(found.hits.is_empty(), "{found:?}");
    f.indexer.take("inventory/0", 100);
    f.indexer.apply(&stock(100, &CATALOG[1], 6)).unwrap();
    f.indexer.commit().unwrap();
    assert_eq!(ids(&f.engine, &request), ["p-2"]);
    f.indexer.take("catalog/0", 100);
    f.indexer
        .apply(&envelope(
            101,
            "m-1",
            Event::ProductDeactivated(ProductDeactivated {
                product_id: ProductId::new("p-2"),
                reason: "discontinued".into(),
            }),
        ))
        .unwrap();
    f.indexer.commit().unwrap();
    assert!(ids(&f.engine, &ask("saree ")).is_empty());
}

#[test]
fn matched_words_are_highlighted_and_escaped() {
    let f = fixture();
    let answer = f.engine.search(&ask("indigo kurta")).unwrap();
    assert_eq!(
        answer.hits[0].highlights["title"],
        "Kalaa <mark>Indigo</mark> <mark>Kurta</mark>"
    );
}

/// Shoppers who search "kurta" and always click the third result.
fn click_third(engine: &Engine, searches: usize) -> Vec<String> {
    for n in 0..searches {
        let shown = ids(engine, &ask("kurta"));
        let mut prior = engine.prior.write().unwrap();
        let session = SessionId::new(format!("s-{n}"));
        prior.learn(
            &envelope(
                n,
                "m-1",
                Event::SearchPerformed(SearchPerformed {
                    session_id: session.clone(),
                    customer_id: None,
                    query: "kurta".into(),
                    filters: BTreeMap::new(),
                    pincode: None,
                    results: shown.iter().map(|id| ProductId::new(id.clone())).collect(),
                }),
            ),
            &engine.prior_config,
        );
        prior.learn(
            &envelope(
                n,
                "m-1",
                Event::ProductClicked(ProductClicked {
                    session_id: session,
                    customer_id: None,
                    product_id: ProductId::new(shown[2].clone()),
                    position: 2,
                    query: "kurta".into(),
                }),
            ),
            &engine.prior_config,
        );
    }
    ids(engine, &ask("kurta"))
}

#[test]
fn clicks_move_a_result_up_within_a_few_searches() {
    let f = fixture();
    let before = ids(&f.engine, &ask("kurta"));
    let third = before[2].clone();
    let after = click_third(&f.engine, 5);
    let moved = after.iter().position(|id| *id == third).unwrap();
    assert!(
        moved < 2,
        "{third} still at {moved}: before {before:?}, after {after:?}"
    );
}

#[test]
fn the_prior_is_bounded_and_never_pushes_down() {
    let f = fixture();
    let config = &f.engine.prior_config;
    let most = 1.0 + config.ctr_weight + config.sales_weight;
    click_third(&f.engine, 200);
    let prior = f.engine.prior.read().unwrap();
    let query = crate::prior::query_key("kurta");
    for p in CATALOG {
        let boost = prior.boost(query, crate::schema::product_key(p.id), 0, config);
        assert!((1.0..=most).contains(&boost), "{}: {boost}", p.id);
    }
    drop(prior);
    // The exact match nobody clicked stays first over the heavily clicked.
    assert_eq!(ids(&f.engine, &ask("kalaa indigo kurta"))[0], "p-1");
}

#[test]
fn a_restart_resumes_and_a_schema_change_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let (index, payload, _) = SearchIndex::open(dir.path()).unwrap();
    let mut indexer = Indexer::new(Arc::clone(&index), payload, 20 << 20).unwrap();
    assert!(indexer.take("catalog/0", 0));
    indexer.apply(&upsert(0, &CATALOG[0])).unwrap();
    indexer.commit().unwrap();
    let generation = indexer.payload.generation.clone();
    drop(indexer);
    drop(index);
    let (index, payload, opened) = SearchIndex::open(dir.path()).unwrap();
    assert_eq!(opened, Opened::Resumed);
    assert_eq!(payload.generation, generation);
    assert_eq!(payload.positions["catalog/0"], 1);
    assert_eq!(index.searcher().num_docs(), 1);
    let mut indexer = Indexer::new(Arc::clone(&index), payload, 20 << 20).unwrap();
    assert!(
        !indexer.take("catalog/0", 0),
        "a redelivered record is skipped"
    );
    indexer.payload.schema_version = 0;
    indexer.take("catalog/0", 1);
    indexer.commit().unwrap();
    drop(indexer);
    drop(index);
    let (index, payload, opened) = SearchIndex::open(dir.path()).unwrap();
    assert!(matches!(opened, Opened::Rebuilt { .. }), "{opened:?}");
    assert_ne!(payload.generation, generation);
    assert!(payload.positions.is_empty());
    assert_eq!(index.searcher().num_docs(), 0);
}

#[test]
fn suggestions_complete_from_queries_brands_and_titles() {
    let f = fixture();
    {
        let mut prior = f.engine.prior.write().unwrap();
        for n in 0..3 {
            prior.learn(
                &envelope(
                    n,
                    "m-1",
                    Event::SearchPerformed(SearchPerformed {
                        session_id: SessionId::new("s"),
                        customer_id: None,
                        query: "Kalaa kurta".into(),
                        filters: BTreeMap::new(),
                        pincode: None,
                        results: vec![],
                    }),
                ),
                &f.engine.prior_config,
            );
        }
    }
    let m1 = MerchantId::new("m-1");
    let got = f.engine.suggest("kal", Some(&m1), 5, 0).unwrap();
    assert_eq!(got[0].text, "kalaa kurta");
    assert_eq!(got[0].kind, "query");
    assert!(
        got.iter().any(|s| s.text == "kalaa" && s.kind == "brand"),
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|s| s.kind != "title" || s.text.contains("kalaa"))
    );
}

#[test]
fn the_prior_survives_its_checkpoint() {
    let f = fixture();
    click_third(&f.engine, 5);
    let prior = f.engine.prior.read().unwrap().clone();
    let text = serde_json::to_string(&prior).unwrap();
    let back: Prior = serde_json::from_str(&text).unwrap();
    let query = crate::prior::query_key("kurta");
    for p in CATALOG {
        let key = crate::schema::product_key(p.id);
        assert_eq!(
            back.boost(query, key, 0, &f.engine.prior_config),
            prior.boost(query, key, 0, &f.engine.prior_config),
            "{}",
            p.id
        );
    }
}

#[test]
fn the_word_as_typed_is_never_crowded_out_by_its_typos() {
    // 40 titles within two edits of each other: more than `max_expansions` (30) terms are in
    // reach of any one of them, and the one typed must still be found, first.
    let mut f = fixture();
    for i in 0..40usize {
        assert!(f.indexer.take("catalog/1", i as i64));
        let probe = envelope(
            100 + i,
            "m-9",
            Event::ProductUpserted(ProductUpserted {
                product_id: ProductId::new(format!("probe-{i}")),
                category: "home".into(),
                brand: "Probe".into(),
                title: format!("Probe Lamp zqprobe{i}x"),
                description: String::new(),
                attributes: BTreeMap::new(),
                price: Money::inr(10_000),
            }),
        );
        f.indexer.apply(&probe).unwrap();
    }
    f.indexer.commit().unwrap();
    for i in [0usize, 19, 37, 39] {
        let mut request = ask(&format!("zqprobe{i}x"));
        request.filters.in_stock = None;
        let found = ids(&f.engine, &request);
        assert_eq!(
            found.first().map(String::as_str),
            Some(format!("probe-{i}").as_str()),
            "{found:?}"
        );
    }
}
