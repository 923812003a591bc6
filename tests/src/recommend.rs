//! Recommendations' test fixtures: the stage's settings for tests, and a catalog with
//! sessions in which products are viewed in planted pairs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use model::payload::{ProductUpserted, ProductViewed, StockAdjusted};
use model::{Envelope, Event, MerchantId, Money, ProductId, SessionId, WarehouseId};

pub const T0: i64 = 1_790_000_000_000;
const MINUTE: i64 = 60_000;

/// Checkpoints and vector rebuilds often enough for a test to watch them.
pub fn config(dir: PathBuf) -> recommend::RecommendConfig {
    recommend::RecommendConfig {
        dir: Some(dir),
        checkpoint_interval_ms: 200,
        rebuild_interval_ms: 500,
        ..recommend::RecommendConfig::default()
    }
}

fn envelope(at: i64, merchant: &str, event: Event) -> Envelope {
    Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new(merchant), event)
}

/// Product `p-{i}` of merchant `m-1` (even i) or `m-2` (odd), category `c-{i / 10}`, with
/// stock.
pub fn catalog(products: usize) -> Vec<Envelope> {
    let mut events = Vec::new();
    for i in 0..products {
        let merchant = if i % 2 == 0 { "m-1" } else { "m-2" };
        let id = ProductId::new(format!("p-{i}"));
        events.push(envelope(
            T0,
            merchant,
            Event::ProductUpserted(ProductUpserted {
                product_id: id.clone(),
                category: format!("c-{}", i / 10),
                brand: "Brand".into(),
                title: format!("Product {i}"),
                description: String::new(),
                attributes: BTreeMap::new(),
                price: Money::inr(10_000),
            }),
        ));
        events.push(envelope(
            T0,
            merchant,
            Event::StockAdjusted(StockAdjusted {
                product_id: id,
                warehouse_id: WarehouseId::new("w-1"),
                delta: 10,
                on_hand: 10,
                reason: "count".into(),
            }),
        ));
    }
    events
}

pub fn view(session: &str, product: &str, at: i64) -> Envelope {
    envelope(
        at,
        "marketplace",
        Event::ProductViewed(ProductViewed {
            session_id: SessionId::new(session),
            customer_id: None,
            product_id: ProductId::new(product),
        }),
    )
}

/// `sessions` sessions over `products` products: each views `p-{2k}`, a random product and
/// `p-{2k+1}`, so the planted neighbour of every even product is the next one.
pub fn planted_sessions(products: usize, sessions: usize, seed: u64) -> Vec<Envelope> {
    let mut state = seed | 1;
    let mut events = Vec::with_capacity(sessions * 3);
    for s in 0..sessions {
        let pair = (s % (products / 2)) * 2;
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let random = (state >> 33) as usize % products;
        let at = T0 + s as i64 * 60 * MINUTE;
        let session = format!("s-{seed}-{s}");
        events.push(view(&session, &format!("p-{pair}"), at));
        events.push(view(&session, &format!("p-{random}"), at + MINUTE));
        events.push(view(&session, &format!("p-{}", pair + 1), at + 2 * MINUTE));
    }
    events
}
