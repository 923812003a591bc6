//! The trending job's operator: per shard (input partition), interaction counts per pane and
//! scope, and the pane records they owe the `trending` topic. Pure: events, offsets and the
//! shard's own event-time progress go in; counts, lateness verdicts and records come out.
//!
//! Every decision depends only on the shard's own record sequence (its newest event time, not
//! the job's), so replaying a shard from a checkpoint reproduces exactly the same verdicts and
//! final panes, whichever instance owns it and whatever the other shards are doing.

use std::collections::{BTreeMap, HashMap, HashSet};

use model::geo::Directory;
use model::trending::{
    Counts, OTHER_BUCKET, PaneRecord, ProductCounts, Scope, ScopedCounts, Shard, bucket_of,
};
use model::{Envelope, Event, ProductId};
use serde::{Deserialize, Serialize};

use runtime::dedup::{Dedup, DedupSnapshot};
use runtime::window::{floor_to, is_late};

/// How the counter cuts event time into panes, and how much one pane may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaneRules {
    pub pane_ms: i64,
    /// How far behind the newest event of its shard an event may be and still be on time.
    pub max_out_of_orderness_ms: i64,
    /// How long after the watermark passes a pane it still accepts events.
    pub allowed_lateness_ms: i64,
    /// Most distinct products a pane counts per scope; interactions with any product past
    /// them are summed as the scope's `other`. The first products seen keep their places,
    /// so a replay of the same records makes the same choice.
    pub max_products_per_pane: usize,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Counted,
    /// Nothing trending cares about (a payment, a search...).
    Ignored,
    /// Already in the state: the record is below the checkpointed offset.
    Replayed,
    /// Its `event_id` was applied before, within the dedup horizon: a re-publish.
    Duplicate,
    /// Its pane was final: the shard's watermark minus the lateness had passed it.
    Late {
        watermark_ms: i64,
    },
}

#[derive(Debug, Clone, Default)]
struct Pane {
    counts: HashMap<(Scope, ProductId), Counts>,
    /// Distinct products counted per scope, to hold each scope to the cap.
    products_per_scope: HashMap<Scope, usize>,
    /// What products past the cap added, per scope.
    other: BTreeMap<Scope, Counts>,
    /// Changed since its last emission.
    dirty: bool,
}

impl Pane {
    fn add(&mut self, scope: Scope, product: &ProductId, counts: &Counts, cap: usize) {
        if let Some(total) = self.counts.get_mut(&(scope.clone(), product.clone())) {
            total.add(counts);
            return;
        }
        let held = self.products_per_scope.entry(scope.clone()).or_default();
        if *held < cap {
            *held += 1;
            self.counts.insert((scope, product.clone()), *counts);
        } else {
            self.other.entry(scope).or_default().add(counts);
        }
    }
}

/// One shard's state; also its checkpoint.
#[derive(Debug, Clone)]
pub struct ShardCounter {
    shard: Shard,
    next_offset: i64,
    newest_event_ms: Option<i64>,
    panes: BTreeMap<i64, Pane>,
    late_events: u64,
    /// The ids of the shard's recent records: a re-published event counts once.
    dedup: Dedup,
    duplicates: u64,
}

/// The serialised form of a [`ShardCounter`], written by the checkpoint store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSnapshot {
    pub shard: Shard,
    pub next_offset: i64,
    pub newest_event_ms: Option<i64>,
    pub late_events: u64,
    pub panes: Vec<PaneSnapshot>,
    /// Absent in checkpoints written before duplicates were removed.
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub dedup: DedupSnapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaneSnapshot {
    pub start_ms: i64,
    pub dirty: bool,
    pub counts: Vec<ScopedCounts>,
    /// Absent in checkpoints written before products per pane were capped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<(Scope, Counts)>,
}

impl ShardCounter {
    /// A fresh shard that remembers the ids of its last `dedup_horizon` offsets.
    pub fn new(shard: Shard, dedup_horizon: i64) -> Self {
        Self {
            shard,
            next_offset: 0,
            newest_event_ms: None,
            panes: BTreeMap::new(),
            late_events: 0,
            dedup: Dedup::new(dedup_horizon),
            duplicates: 0,
        }
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The first offset not yet in this state.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn newest_event_ms(&self) -> Option<i64> {
        self.newest_event_ms
    }

    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Re-published records dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// How many event ids the shard remembers.
    pub fn remembered(&self) -> usize {
        self.dedup.len()
    }

    /// The shard's watermark: newest event time minus the out-of-orderness bound.
    pub fn watermark(&self, rules: &PaneRules) -> Option<i64> {
        self.newest_event_ms
            .map(|newest| newest - rules.max_out_of_orderness_ms)
    }

    /// A record whose payload could not be decoded still moves the offset on.
    pub fn skip(&mut self, offset: i64) -> Verdict {
        if offset < self.next_offset {
            return Verdict::Replayed;
        }
        self.next_offset = offset + 1;
        Verdict::Ignored
    }

    /// Folds the record at `offset` in.
    pub fn apply(
        &mut self,
        rules: &PaneRules,
        places: &Directory,
        offset: i64,
        envelope: &Envelope,
    ) -> Verdict {
        if offset < self.next_offset {
            return Verdict::Replayed;
        }
        self.next_offset = offset + 1;
        if !self.dedup.first_seen(envelope.event_id, offset) {
            self.duplicates += 1;
            return Verdict::Duplicate;
        }
        let merchant = Scope::Merchant(envelope.merchant_id.clone());
        let (products, counts, city): (Vec<&ProductId>, Counts, Option<Scope>) =
            match &envelope.event {
                Event::ProductViewed(view) => (
                    vec![&view.product_id],
                    Counts {
                        views: 1,
                        ..Counts::default()
                    },
                    None,
                ),
                Event::CartAdded(cart) => (
                    vec![&cart.product_id],
                    Counts {
                        carts: 1,
                        ..Counts::default()
                    },
                    None,
                ),
                Event::OrderPlaced(order) => {
                    // Each ordered product counts once per order, whatever the quantity.
                    let mut seen = HashSet::new();
                    let products = order
                        .lines
                        .iter()
                        .map(|line| &line.product_id)
                        .filter(|product| seen.insert(*product))
                        .collect();
                    let city = places
                        .get(order.delivery_pincode)
                        .map(|place| Scope::City(place.district.clone()));
                    (
                        products,
                        Counts {
                            orders: 1,
                            ..Counts::default()
                        },
                        city,
                    )
                }
                _ => {
                    // Not counted, but it still shows how far this partition's event time has come.
                    self.advance(envelope.event_time);
                    return Verdict::Ignored;
                }
            };
        if let Some(watermark_ms) = self.watermark(rules)
            && is_late(
                envelope.event_time,
                rules.pane_ms,
                watermark_ms,
                rules.allowed_lateness_ms,
            )
        {
            self.late_events += 1;
            return Verdict::Late { watermark_ms };
        }
        self.advance(envelope.event_time);
        let pane = self
            .panes
            .entry(floor_to(envelope.event_time, rules.pane_ms))
            .or_default();
        pane.dirty = true;
        for product in products {
            for scope in [Some(Scope::Global), Some(merchant.clone()), city.clone()]
                .into_iter()
                .flatten()
            {
                pane.add(scope, product, &counts, rules.max_products_per_pane);
            }
        }
        Verdict::Counted
    }

    fn advance(&mut self, event_ms: i64) {
        self.newest_event_ms = Some(
            self.newest_event_ms
                .map_or(event_ms, |newest| newest.max(event_ms)),
        );
    }

    /// The records this shard owes: every changed pane the watermark has passed (so readers
    /// get complete panes, not a trickle), and every pane that became final, which then leaves
    /// the state. An `idle` shard has nothing more to read for now, so it also publishes its
    /// changed open panes: readers stop waiting for an idle shard, and must not miss what it
    /// holds.
    pub fn flush(&mut self, rules: &PaneRules, idle: bool) -> Vec<PaneRecord> {
        let Some(watermark) = self.watermark(rules) else {
            return Vec::new();
        };
        let final_before = watermark - rules.allowed_lateness_ms;
        let mut records = Vec::new();
        let mut finished = Vec::new();
        for (start, pane) in self.panes.range_mut(..) {
            let end = start + rules.pane_ms;
            if end > watermark && !idle {
                break;
            }
            let is_final = end <= final_before;
            if pane.dirty || is_final {
                records.extend(records_of(
                    &self.shard,
                    *start,
                    rules.pane_ms,
                    is_final,
                    pane,
                ));
                pane.dirty = false;
            }
            if is_final {
                finished.push(*start);
            }
        }
        for start in finished {
            self.panes.remove(&start);
        }
        records
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            shard: self.shard.clone(),
            next_offset: self.next_offset,
            newest_event_ms: self.newest_event_ms,
            late_events: self.late_events,
            panes: self
                .panes
                .iter()
                .map(|(start, pane)| PaneSnapshot {
                    start_ms: *start,
                    dirty: pane.dirty,
                    counts: sorted_counts(pane),
                    other: pane
                        .other
                        .iter()
                        .map(|(scope, counts)| (scope.clone(), *counts))
                        .collect(),
                })
                .collect(),
            duplicates: self.duplicates,
            dedup: self.dedup.snapshot(),
        }
    }

    pub fn restore(snapshot: ShardSnapshot, dedup_horizon: i64) -> Self {
        Self {
            shard: snapshot.shard,
            next_offset: snapshot.next_offset,
            newest_event_ms: snapshot.newest_event_ms,
            late_events: snapshot.late_events,
            duplicates: snapshot.duplicates,
            dedup: Dedup::restore(dedup_horizon, snapshot.dedup),
            panes: snapshot
                .panes
                .into_iter()
                .map(|pane| {
                    let mut products_per_scope: HashMap<Scope, usize> = HashMap::new();
                    for counted in &pane.counts {
                        *products_per_scope.entry(counted.scope.clone()).or_default() += 1;
                    }
                    let counts = pane
                        .counts
                        .into_iter()
                        .map(|c| ((c.scope, c.product_id), c.counts))
                        .collect();
                    (
                        pane.start_ms,
                        Pane {
                            counts,
                            products_per_scope,
                            other: pane.other.into_iter().collect(),
                            dirty: pane.dirty,
                        },
                    )
                })
                .collect(),
        }
    }
}

fn sorted_counts(pane: &Pane) -> Vec<ScopedCounts> {
    let mut counts: Vec<ScopedCounts> = pane
        .counts
        .iter()
        .map(|((scope, product_id), counts)| ScopedCounts {
            scope: scope.clone(),
            product_id: product_id.clone(),
            counts: *counts,
        })
        .collect();
    counts.sort_by(|a, b| (&a.scope, &a.product_id).cmp(&(&b.scope, &b.product_id)));
    counts
}

/// A pane as records: one per scope and product bucket, products sorted, and one per scope
/// that has products past the cap.
fn records_of(
    shard: &Shard,
    start: i64,
    pane_ms: i64,
    is_final: bool,
    pane: &Pane,
) -> Vec<PaneRecord> {
    let mut groups: BTreeMap<(Scope, u16), Vec<ProductCounts>> = BTreeMap::new();
    for ((scope, product), counts) in &pane.counts {
        groups
            .entry((scope.clone(), bucket_of(product)))
            .or_default()
            .push(ProductCounts::new(product.clone(), *counts));
    }
    groups
        .into_iter()
        .map(|((scope, bucket), mut products)| {
            products.sort_by(|a, b| a.0.cmp(&b.0));
            PaneRecord {
                shard: shard.clone(),
                pane_start: start,
                pane_ms,
                is_final,
                scope,
                bucket,
                products,
                other: Counts::default(),
            }
        })
        .chain(pane.other.iter().map(|(scope, other)| PaneRecord {
            shard: shard.clone(),
            pane_start: start,
            pane_ms,
            is_final,
            scope: scope.clone(),
            bucket: OTHER_BUCKET,
            products: Vec::new(),
            other: *other,
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use model::payload::{OrderLine, OrderPlaced, ProductViewed};
    use model::trending::TrendingRecord;
    use model::{Currency, CustomerId, MerchantId, Money, OrderId, Pincode, SessionId, Topic};

    use super::*;
    use crate::trending::view::{Audience, TrendingView, Weights};
    use runtime::window::Hopping;

    const RULES: PaneRules = PaneRules {
        pane_ms: 10,
        max_out_of_orderness_ms: 5,
        allowed_lateness_ms: 20,
        max_products_per_pane: 1_000,
    };

    /// An event with an id of its own, as every real event has.
    fn envelope(time: i64, event: Event) -> Envelope {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut random = [0u8; 10];
        random[2..].copy_from_slice(&n.to_be_bytes());
        let id = uuid::Builder::from_unix_timestamp_millis(time.max(0) as u64, &random).into_uuid();
        Envelope::new(id, time, MerchantId::new("m-1"), event)
    }

    fn view(time: i64, product: &str) -> Envelope {
        envelope(
            time,
            Event::ProductViewed(ProductViewed {
                session_id: SessionId::new("s"),
                customer_id: None,
                product_id: ProductId::new(product),
            }),
        )
    }

    fn order(time: i64, products: &[&str], pincode: &str) -> Envelope {
        let price = Money::new(100, Currency::INR);
        envelope(
            time,
            Event::OrderPlaced(OrderPlaced {
                order_id: OrderId::new(format!("o-{time}")),
                customer_id: CustomerId::new("c"),
                session_id: None,
                lines: products
                    .iter()
                    .map(|p| OrderLine {
                        product_id: ProductId::new(*p),
                        quantity: 2,
                        unit_price: price,
                        gst_bps: None,
                    })
                    .collect(),
                delivery_pincode: Pincode::parse(pincode).expect("pincode"),
                total: price,
            }),
        )
    }

    /// The shard's progress as the job publishes it (not idle).
    fn watermark_of(counter: &ShardCounter) -> TrendingRecord {
        TrendingRecord::Watermark(model::trending::ShardWatermark {
            shard: counter.shard().clone(),
            watermark_ms: counter.watermark(&RULES),
            newest_event_ms: counter.newest_event_ms(),
            idle: false,
        })
    }

    fn shard() -> Shard {
        Shard {
            topic: Topic::Clicks,
            partition: 0,
        }
    }

    #[test]
    fn late_events_are_refused_once_their_pane_is_final_and_replays_are_skipped() {
        let places = Directory::load();
        let mut counter = ShardCounter::new(shard(), 1_000);
        assert_eq!(
            counter.apply(&RULES, &places, 0, &view(12, "a")),
            Verdict::Counted
        );
        assert_eq!(
            counter.apply(&RULES, &places, 1, &view(60, "a")),
            Verdict::Counted
        );
        // Watermark 55, lateness 20: panes ending at or before 35 are final.
        assert_eq!(
            counter.apply(&RULES, &places, 2, &view(36, "b")),
            Verdict::Counted
        );
        assert_eq!(
            counter.apply(&RULES, &places, 3, &view(29, "b")),
            Verdict::Late { watermark_ms: 55 }
        );
        assert_eq!(
            counter.apply(&RULES, &places, 1, &view(60, "a")),
            Verdict::Replayed
        );
        assert_eq!(counter.late_events(), 1);
        assert_eq!(counter.next_offset(), 4);
    }

    #[test]
    fn a_republished_event_counts_once_even_across_a_restore() {
        let places = Directory::load();
        let mut counter = ShardCounter::new(shard(), 1_000);
        let first = view(12, "a");
        let second = view(13, "a");
        assert_eq!(counter.apply(&RULES, &places, 0, &first), Verdict::Counted);
        assert_eq!(counter.apply(&RULES, &places, 1, &second), Verdict::Counted);
        // The relay re-publishes both at later offsets (same ids).
        assert_eq!(
            counter.apply(&RULES, &places, 2, &first),
            Verdict::Duplicate
        );
        let mut restored = ShardCounter::restore(counter.snapshot(), 1_000);
        assert_eq!(
            restored.apply(&RULES, &places, 3, &second),
            Verdict::Duplicate
        );
        assert_eq!(restored.duplicates(), 2);
        let records = restored.flush(&RULES, true);
        let views: u64 = records
            .iter()
            .filter(|r| r.scope == Scope::Global)
            .flat_map(|r| r.products.iter())
            .filter(|p| p.product_id().as_str() == "a")
            .map(|p| p.counts().views)
            .sum();
        assert_eq!(views, 2, "two distinct views, each once: {records:?}");
    }

    #[test]
    fn a_restored_counter_continues_exactly_where_the_snapshot_ends() {
        let places = Directory::load();
        let events: Vec<Envelope> = (0..40)
            .map(|i| {
                if i % 7 == 0 {
                    order(i * 3, &["a", "b", "a"], "110001")
                } else {
                    view(i * 3 - (i % 3), if i % 2 == 0 { "a" } else { "c" })
                }
            })
            .collect();
        let run = |split: Option<usize>| {
            let mut counter = ShardCounter::new(shard(), 1_000);
            let mut records = Vec::new();
            for (offset, event) in events.iter().enumerate() {
                if Some(offset) == split {
                    let snapshot = serde_json::to_string(&counter.snapshot()).expect("encode");
                    counter = ShardCounter::restore(
                        serde_json::from_str(&snapshot).expect("decode"),
                        1_000,
                    );
                    // The broker redelivers from an older commit.
                    for (old, again) in events[..offset].iter().enumerate().skip(offset / 2) {
                        assert_eq!(
                            counter.apply(&RULES, &places, old as i64, again),
                            Verdict::Replayed
                        );
                    }
                }
                counter.apply(&RULES, &places, offset as i64, event);
                records.extend(counter.flush(&RULES, false));
            }
            records
                .into_iter()
                .filter(|r| r.is_final)
                .collect::<Vec<_>>()
        };
        let straight = run(None);
        assert!(!straight.is_empty());
        assert_eq!(run(Some(17)), straight);
    }

    #[test]
    fn the_view_sums_shards_and_overwrites_replayed_panes() {
        let places = Directory::load();
        let window = Hopping::new(20, 10).expect("valid");
        let mut view_state = TrendingView::new(&[window], Weights::default(), 1_000);
        let mut left = ShardCounter::new(shard(), 1_000);
        let mut right = ShardCounter::new(
            Shard {
                topic: Topic::Orders,
                partition: 1,
            },
            1_000,
        );
        left.apply(&RULES, &places, 0, &view(1, "a"));
        left.apply(&RULES, &places, 1, &view(11, "b"));
        right.apply(&RULES, &places, 0, &order(12, &["b"], "110001"));
        left.apply(&RULES, &places, 2, &view(30, "a"));
        right.apply(&RULES, &places, 1, &order(30, &["a"], "110001"));
        for counter in [&mut left, &mut right] {
            for pane in counter.flush(&RULES, false) {
                // Delivered twice, as after a crash before the checkpoint.
                view_state.apply(TrendingRecord::Pane(pane.clone()));
                view_state.apply(TrendingRecord::Pane(pane));
            }
            view_state.apply(watermark_of(counter));
        }
        let answer = view_state.top(&window, &Audience::Global, 10);
        assert_eq!(answer.window_end_ms, Some(20));
        let scores: Vec<(&str, u64)> = answer
            .products
            .iter()
            .map(|e| (e.product_id.as_str(), e.score))
            .collect();
        assert_eq!(scores, vec![("b", 11), ("a", 1)]);
        let city = places
            .get(Pincode::parse("110001").expect("pincode"))
            .map(|p| p.district.clone());
        let delhi = view_state.top(&window, &Audience::City(city.unwrap_or_default()), 10);
        assert_eq!(delhi.products.len(), 1);
        assert_eq!(delhi.products[0].orders, 1);
        assert_eq!(
            answer.rising.first().map(|e| e.product_id.as_str()),
            Some("b")
        );
    }

    #[test]
    fn a_product_known_only_by_its_deactivation_stays_hidden() {
        // After the catalog topic is compacted, a deactivated product's upsert may be gone.
        let places = Directory::load();
        let window = Hopping::new(20, 10).expect("valid");
        let mut view_state = TrendingView::new(&[window], Weights::default(), 1_000);
        view_state.apply_catalog(&envelope(
            0,
            Event::ProductDeactivated(model::payload::ProductDeactivated {
                product_id: ProductId::new("a"),
                reason: "discontinued".into(),
            }),
        ));
        let mut counter = ShardCounter::new(shard(), 1_000);
        counter.apply(&RULES, &places, 0, &view(1, "a"));
        counter.apply(&RULES, &places, 1, &view(11, "b"));
        counter.apply(&RULES, &places, 2, &view(30, "c"));
        for pane in counter.flush(&RULES, false) {
            view_state.apply(TrendingRecord::Pane(pane));
        }
        view_state.apply(watermark_of(&counter));
        let answer = view_state.top(&window, &Audience::Global, 10);
        let shown: Vec<&str> = answer
            .products
            .iter()
            .map(|e| e.product_id.as_str())
            .collect();
        assert_eq!(shown, vec!["b"]);
    }

    #[test]
    fn a_pane_holds_the_first_products_up_to_the_cap_and_sums_the_rest_even_after_a_restore() {
        let places = Directory::load();
        let rules = PaneRules {
            max_products_per_pane: 2,
            ..RULES
        };
        let mut counter = ShardCounter::new(shard(), 1_000);
        for (offset, product) in ["a", "b", "c", "d", "a"].into_iter().enumerate() {
            counter.apply(&rules, &places, offset as i64, &view(1, product));
        }
        let mut counter = ShardCounter::restore(counter.snapshot(), 1_000);
        counter.apply(&rules, &places, 5, &view(2, "e"));
        counter.apply(&rules, &places, 6, &view(3, "b"));
        let global: Vec<PaneRecord> = counter
            .flush(&rules, true)
            .into_iter()
            .filter(|r| r.scope == Scope::Global)
            .collect();
        let products: BTreeMap<String, u64> = global
            .iter()
            .flat_map(|r| &r.products)
            .map(|p| (p.product_id().to_string(), p.counts().views))
            .collect();
        assert_eq!(products, BTreeMap::from([("a".into(), 2), ("b".into(), 2)]));
        let other: Vec<(u16, u64)> = global
            .iter()
            .filter(|r| !r.other.is_zero())
            .map(|r| (r.bucket, r.other.views))
            .collect();
        assert_eq!(other, vec![(OTHER_BUCKET, 3)]);
    }
}
