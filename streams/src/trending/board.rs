//! The trending operator: pure, no I/O, no clock. Events go in; top-K answers come out.
//!
//! Event time is cut into fixed buckets. A window of `w` covers the `w / bucket` buckets ending
//! with the bucket of the newest event seen, so the answer depends only on the events, never on
//! when they arrived or on the wall clock. Buckets older than the longest window are dropped;
//! events that would land in them are counted as late and ignored.

use std::collections::{BTreeMap, HashMap, HashSet};

use model::{Envelope, Event, MerchantId, ProductId};
use serde::{Deserialize, Serialize};

/// Points each interaction adds to a product's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub view: u64,
    pub cart: u64,
    pub order: u64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            view: 1,
            cart: 3,
            order: 10,
        }
    }
}

/// Interactions with one product in one bucket or window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub views: u64,
    pub carts: u64,
    pub orders: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.views += other.views;
        self.carts += other.carts;
        self.orders += other.orders;
    }

    pub fn score(&self, weights: &Weights) -> u64 {
        self.views * weights.view + self.carts * weights.cart + self.orders * weights.order
    }
}

#[derive(Debug, Clone)]
struct ProductInfo {
    title: String,
    category: String,
    merchant_id: MerchantId,
    active: bool,
}

/// One product in a trending answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub product_id: String,
    /// From the catalog; absent if the product's catalog event has not been seen.
    pub title: Option<String>,
    pub category: Option<String>,
    pub merchant_id: Option<String>,
    pub score: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The top products over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingAnswer {
    pub window_ms: i64,
    /// End (exclusive) of the window in event time, UTC ms; null before any event.
    pub window_end_ms: Option<i64>,
    pub products: Vec<Entry>,
}

/// Trending state: per-bucket counts plus what the catalog says about each product.
#[derive(Debug, Clone)]
pub struct Board {
    bucket_ms: i64,
    retain_ms: i64,
    weights: Weights,
    buckets: BTreeMap<i64, HashMap<ProductId, Counts>>,
    newest_bucket: Option<i64>,
    catalog: HashMap<ProductId, ProductInfo>,
    late_events: u64,
}

impl Board {
    /// `retain_ms` is the longest window that can be asked for; both it and every window must
    /// be whole buckets.
    pub fn new(bucket_ms: i64, retain_ms: i64, weights: Weights) -> Self {
        Self {
            bucket_ms: bucket_ms.max(1),
            retain_ms: retain_ms.max(bucket_ms),
            weights,
            buckets: BTreeMap::new(),
            newest_bucket: None,
            catalog: HashMap::new(),
            late_events: 0,
        }
    }

    pub fn bucket_ms(&self) -> i64 {
        self.bucket_ms
    }

    pub fn retain_ms(&self) -> i64 {
        self.retain_ms
    }

    /// Events that arrived after their bucket was dropped.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    fn bucket_of(&self, time_ms: i64) -> i64 {
        time_ms.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// Folds one event in. Events that say nothing about trending are ignored.
    pub fn apply(&mut self, envelope: &Envelope) {
        let (product, counts) = match &envelope.event {
            Event::ProductUpserted(product) => {
                self.catalog.insert(
                    product.product_id.clone(),
                    ProductInfo {
                        title: product.title.clone(),
                        category: product.category.clone(),
                        merchant_id: envelope.merchant_id.clone(),
                        active: true,
                    },
                );
                return;
            }
            Event::ProductDeactivated(product) => {
                if let Some(info) = self.catalog.get_mut(&product.product_id) {
                    info.active = false;
                }
                return;
            }
            Event::ProductViewed(view) => (
                &view.product_id,
                Counts {
                    views: 1,
                    ..Counts::default()
                },
            ),
            Event::CartAdded(cart) => (
                &cart.product_id,
                Counts {
                    carts: 1,
                    ..Counts::default()
                },
            ),
            Event::OrderPlaced(order) => {
                // Each ordered product counts once per order, whatever the quantity.
                let products: HashSet<&ProductId> =
                    order.lines.iter().map(|l| &l.product_id).collect();
                for product in products {
                    self.count(
                        envelope.event_time,
                        product,
                        Counts {
                            orders: 1,
                            ..Counts::default()
                        },
                    );
                }
                return;
            }
            _ => return,
        };
        self.count(envelope.event_time, product, counts);
    }

    fn count(&mut self, event_time: i64, product: &ProductId, counts: Counts) {
        let bucket = self.bucket_of(event_time);
        let newest = self
            .newest_bucket
            .map_or(bucket, |newest| newest.max(bucket));
        let oldest_kept = newest - self.retain_ms + self.bucket_ms;
        if bucket < oldest_kept {
            self.late_events += 1;
            return;
        }
        self.buckets
            .entry(bucket)
            .or_default()
            .entry(product.clone())
            .or_default()
            .add(&counts);
        if self.newest_bucket != Some(newest) {
            self.newest_bucket = Some(newest);
            self.buckets = self.buckets.split_off(&oldest_kept);
        }
    }

    /// The `limit` highest-scoring active products over the last `window_ms` of event time,
    /// best first, ties broken by product id so answers are reproducible.
    pub fn top(&self, window_ms: i64, limit: usize) -> TrendingAnswer {
        let Some(newest) = self.newest_bucket else {
            return TrendingAnswer {
                window_ms,
                window_end_ms: None,
                products: Vec::new(),
            };
        };
        let first = newest - window_ms + self.bucket_ms;
        let mut totals: HashMap<&ProductId, Counts> = HashMap::new();
        for (_, products) in self.buckets.range(first..=newest) {
            for (product, counts) in products {
                totals.entry(product).or_default().add(counts);
            }
        }
        let mut ranked: Vec<(u64, &ProductId, Counts)> = totals
            .into_iter()
            .filter(|(product, _)| self.catalog.get(*product).is_none_or(|info| info.active))
            .map(|(product, counts)| (counts.score(&self.weights), product, counts))
            .collect();
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked.truncate(limit);
        let products = ranked
            .into_iter()
            .map(|(score, product, counts)| {
                let info = self.catalog.get(product);
                Entry {
                    product_id: product.to_string(),
                    title: info.map(|i| i.title.clone()),
                    category: info.map(|i| i.category.clone()),
                    merchant_id: info.map(|i| i.merchant_id.to_string()),
                    score,
                    counts,
                }
            })
            .collect();
        TrendingAnswer {
            window_ms,
            window_end_ms: Some(newest + self.bucket_ms),
            products,
        }
    }
}

#[cfg(test)]
mod tests {
    use model::payload::{CartChanged, ProductDeactivated, ProductViewed};
    use model::{MerchantId, SessionId};

    use super::*;

    fn at(time: i64, event: Event) -> Envelope {
        let id = uuid::Builder::from_unix_timestamp_millis(time as u64, &[1; 10]).into_uuid();
        Envelope::new(id, time, MerchantId::new("m-1"), event)
    }

    fn view(time: i64, product: &str) -> Envelope {
        at(
            time,
            Event::ProductViewed(ProductViewed {
                session_id: SessionId::new("s"),
                customer_id: None,
                product_id: ProductId::new(product),
            }),
        )
    }

    fn cart(time: i64, product: &str) -> Envelope {
        at(
            time,
            Event::CartAdded(CartChanged {
                session_id: SessionId::new("s"),
                customer_id: None,
                product_id: ProductId::new(product),
                quantity: 4,
            }),
        )
    }

    fn ids(answer: &TrendingAnswer) -> Vec<(&str, u64)> {
        answer
            .products
            .iter()
            .map(|e| (e.product_id.as_str(), e.score))
            .collect()
    }

    #[test]
    fn weights_rank_a_cart_above_two_views() {
        let mut board = Board::new(1_000, 60_000, Weights::default());
        for event in [view(0, "a"), view(10, "a"), cart(20, "b")] {
            board.apply(&event);
        }
        assert_eq!(ids(&board.top(60_000, 10)), vec![("b", 3), ("a", 2)]);
    }

    #[test]
    fn the_window_ends_at_the_newest_event_and_old_buckets_fall_out() {
        let mut board = Board::new(1_000, 10_000, Weights::default());
        board.apply(&view(500, "old"));
        board.apply(&view(9_500, "new"));
        assert_eq!(ids(&board.top(10_000, 10)), vec![("new", 1), ("old", 1)]);
        assert_eq!(ids(&board.top(2_000, 10)), vec![("new", 1)]);
        board.apply(&view(10_100, "new"));
        assert_eq!(
            ids(&board.top(10_000, 10)),
            vec![("new", 2)],
            "bucket 0 left the window"
        );
        board.apply(&view(200, "late"));
        assert_eq!(board.late_events(), 1);
    }

    #[test]
    fn out_of_order_events_within_retention_give_the_same_answer() {
        let events: Vec<Envelope> = (0..200)
            .map(|i| view(i * 37 % 5_000, ["a", "b", "c"][i as usize % 3]))
            .collect();
        let mut forward = Board::new(100, 10_000, Weights::default());
        let mut backward = forward.clone();
        events.iter().for_each(|e| forward.apply(e));
        events.iter().rev().for_each(|e| backward.apply(e));
        assert_eq!(forward.top(5_000, 3), backward.top(5_000, 3));
    }

    #[test]
    fn deactivated_products_leave_the_board() {
        let mut board = Board::new(1_000, 60_000, Weights::default());
        board.apply(&at(
            0,
            Event::ProductUpserted(model::payload::ProductUpserted {
                product_id: ProductId::new("a"),
                category: "toys".into(),
                brand: "Khilona".into(),
                title: "Khilona Wooden Puzzle".into(),
                description: String::new(),
                attributes: Default::default(),
                price: model::Money::inr(49_900),
            }),
        ));
        board.apply(&view(1, "a"));
        board.apply(&view(2, "a"));
        board.apply(&view(3, "b"));
        let before = board.top(60_000, 10);
        assert_eq!(
            before.products[0].title.as_deref(),
            Some("Khilona Wooden Puzzle")
        );
        assert_eq!(ids(&before), vec![("a", 2), ("b", 1)]);
        board.apply(&at(
            4,
            Event::ProductDeactivated(ProductDeactivated {
                product_id: ProductId::new("a"),
                reason: "recalled".into(),
            }),
        ));
        assert_eq!(ids(&board.top(60_000, 10)), vec![("b", 1)]);
    }

    #[test]
    fn ties_break_by_product_id() {
        let mut board = Board::new(1_000, 60_000, Weights::default());
        for p in ["c", "a", "b"] {
            board.apply(&view(0, p));
        }
        assert_eq!(ids(&board.top(60_000, 2)), vec![("a", 1), ("b", 1)]);
    }
}
