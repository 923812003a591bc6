//! Trending serving state: the `trending` topic folded back into windows. Pure.
//!
//! Pane records arrive per shard and may be rewritten (provisional, then final; again after a
//! replay). The view keeps each shard's latest non-final record so a rewrite can subtract the
//! old contribution before adding the new one, and adds every record into one running total
//! per configured slide ("coarse panes"). A window is the sum of its coarse panes. Windows
//! shown end at the newest slide boundary the readers' watermark has passed, where the
//! watermark is the minimum over shards that are not idle.
//!
//! Memory does not grow with the number of product ids: each coarse pane holds at most
//! `max_products_per_pane` products per scope (the first to arrive; later ones add to the
//! scope's `other`), and a final record is remembered by its key alone, not its products.

use std::collections::{BTreeMap, HashMap};

use model::trending::{
    Counts, PaneRecord, ProductCounts, Scope, Shard, ShardWatermark, TrendingRecord,
};
use model::{Envelope, Event, MerchantId, ProductId};
use serde::{Deserialize, Serialize};

use runtime::window::{Hopping, floor_to};

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

impl Weights {
    pub fn score(&self, counts: &Counts) -> u64 {
        counts.views * self.view + counts.carts * self.cart + counts.orders * self.order
    }
}

/// Which audience a question is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Global,
    Merchant(MerchantId),
    City(String),
    /// Products the catalog files under this category (global counts, filtered).
    Category(String),
}

#[derive(Debug, Clone)]
struct ProductInfo {
    title: String,
    category: String,
    merchant_id: MerchantId,
    active: bool,
}

/// One product in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub product_id: String,
    /// From the catalog; absent if the product's catalog event has not been seen.
    pub title: Option<String>,
    pub category: Option<String>,
    pub merchant_id: Option<String>,
    pub score: u64,
    pub views: u64,
    pub carts: u64,
    pub orders: u64,
    /// Score in the window before this one (same size, ending where this one starts).
    pub previous_score: u64,
}

/// The top products over one window, and the fastest risers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingAnswer {
    pub window_ms: i64,
    pub slide_ms: i64,
    /// End (exclusive) of the window in event time, UTC ms; null before the watermark has
    /// passed any window end.
    pub window_end_ms: Option<i64>,
    pub products: Vec<Entry>,
    /// Products whose score grew most against the previous window, best first.
    pub rising: Vec<Entry>,
    /// Interactions with products past the cap of products per pane, summed: not ranked,
    /// but not lost either. Absent for a category, which such products cannot be filed in.
    pub other: Option<OtherCounts>,
}

/// What products past the cap added to a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherCounts {
    pub score: u64,
    pub views: u64,
    pub carts: u64,
    pub orders: u64,
}

#[derive(Debug, Clone)]
struct Rollup {
    window: Hopping,
    /// Coarse pane start -> scope -> its counts.
    panes: BTreeMap<i64, HashMap<Scope, ScopeCounts>>,
}

/// One scope's counts in one coarse pane. A product keeps its entry once admitted (even at
/// zero), so a rewrite subtracts from the same place its first version added to.
#[derive(Debug, Clone, Default)]
struct ScopeCounts {
    products: HashMap<ProductId, Counts>,
    other: Counts,
}

impl ScopeCounts {
    fn change(&mut self, product: &ProductId, counts: &Counts, adding: bool, cap: usize) {
        let admitted = self.products.contains_key(product);
        let total = if admitted || (adding && self.products.len() < cap) {
            self.products.entry(product.clone()).or_default()
        } else {
            &mut self.other
        };
        change(total, counts, adding);
    }
}

fn change(total: &mut Counts, counts: &Counts, adding: bool) {
    if adding {
        total.add(counts);
    } else {
        total.subtract(counts);
    }
}

/// What the view last applied for one record key.
#[derive(Debug, Clone)]
enum Applied {
    /// A version that may still be replaced: kept whole, to be subtracted.
    Provisional {
        products: Vec<ProductCounts>,
        other: Counts,
    },
    /// The final version, counted in full and remembered without its products. Only a
    /// replay can send this key again, and the job is deterministic: a replay's versions end
    /// in this same final, so they change nothing.
    Final,
}

type AppliedKey = (i64, Shard, Scope, u16);

/// Everything the trending topic and the catalog say, ready to answer queries.
#[derive(Debug, Clone)]
pub struct TrendingView {
    weights: Weights,
    max_products_per_pane: usize,
    rollups: Vec<Rollup>,
    /// What each shard last said about each retained pane, so a rewrite (a provisional pane
    /// made final, or any version replayed after a crash) replaces instead of adding.
    applied: HashMap<AppliedKey, Applied>,
    watermarks: BTreeMap<Shard, ShardWatermark>,
    catalog: HashMap<ProductId, ProductInfo>,
}

impl TrendingView {
    /// `windows` are the sizes and slides that can be asked for.
    pub fn new(windows: &[Hopping], weights: Weights, max_products_per_pane: usize) -> Self {
        Self {
            weights,
            max_products_per_pane,
            rollups: windows
                .iter()
                .map(|window| Rollup {
                    window: *window,
                    panes: BTreeMap::new(),
                })
                .collect(),
            applied: HashMap::new(),
            watermarks: BTreeMap::new(),
            catalog: HashMap::new(),
        }
    }

    pub fn windows(&self) -> impl Iterator<Item = &Hopping> {
        self.rollups.iter().map(|r| &r.window)
    }

    pub fn apply(&mut self, record: TrendingRecord) {
        match record {
            TrendingRecord::Pane(pane) => self.apply_pane(pane),
            TrendingRecord::Watermark(mark) => {
                self.watermarks.insert(mark.shard.clone(), mark);
                self.forget_old_panes();
            }
        }
    }

    fn apply_pane(&mut self, pane: PaneRecord) {
        let key = (
            pane.pane_start,
            pane.shard.clone(),
            pane.scope.clone(),
            pane.bucket,
        );
        match self.applied.remove(&key) {
            Some(Applied::Final) => {
                self.applied.insert(key, Applied::Final);
                return;
            }
            Some(Applied::Provisional { products, other }) => {
                self.change(pane.pane_start, &pane.scope, &products, &other, false);
            }
            None => {}
        }
        self.change(
            pane.pane_start,
            &pane.scope,
            &pane.products,
            &pane.other,
            true,
        );
        let applied = if pane.is_final {
            Applied::Final
        } else {
            Applied::Provisional {
                products: pane.products,
                other: pane.other,
            }
        };
        self.applied.insert(key, applied);
    }

    fn change(
        &mut self,
        pane_start: i64,
        scope: &Scope,
        products: &[ProductCounts],
        other: &Counts,
        adding: bool,
    ) {
        for rollup in &mut self.rollups {
            let coarse = rollup
                .panes
                .entry(floor_to(pane_start, rollup.window.slide_ms()))
                .or_default()
                .entry(scope.clone())
                .or_default();
            for entry in products {
                coarse.change(
                    entry.product_id(),
                    &entry.counts(),
                    adding,
                    self.max_products_per_pane,
                );
            }
            change(&mut coarse.other, other, adding);
        }
    }

    /// Folds a catalog event in; other events are ignored.
    pub fn apply_catalog(&mut self, envelope: &Envelope) {
        match &envelope.event {
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
            }
            // On the compacted catalog topic a deactivation may be the only record left of
            // its product: remember it as inactive even without a title, or it would show.
            Event::ProductDeactivated(product) => {
                self.catalog
                    .entry(product.product_id.clone())
                    .or_insert_with(|| ProductInfo {
                        title: String::new(),
                        category: String::new(),
                        merchant_id: envelope.merchant_id.clone(),
                        active: false,
                    })
                    .active = false;
            }
            _ => {}
        }
    }

    /// The minimum watermark over shards that are not idle; with every shard idle, the
    /// newest. `None` until some shard has a watermark.
    pub fn watermark(&self) -> Option<i64> {
        let active: Vec<&ShardWatermark> = self.watermarks.values().filter(|m| !m.idle).collect();
        if active.is_empty() {
            return self
                .watermarks
                .values()
                .filter_map(|m| m.watermark_ms)
                .max();
        }
        active
            .iter()
            .map(|m| m.watermark_ms)
            .try_fold(i64::MAX, |lowest, mark| mark.map(|mark| lowest.min(mark)))
    }

    fn forget_old_panes(&mut self) {
        let Some(watermark) = self.watermark() else {
            return;
        };
        let mut keep_any_from = i64::MAX;
        for rollup in &mut self.rollups {
            // The shown window and the one before it (for rising) are all that is needed.
            let end = rollup.window.last_end_at_or_before(watermark);
            let keep_from = end - 2 * rollup.window.size_ms();
            rollup.panes = rollup.panes.split_off(&keep_from);
            keep_any_from = keep_any_from.min(keep_from);
        }
        self.applied
            .retain(|(start, ..), _| *start >= keep_any_from);
    }

    /// Per-product counts of `audience` in `window`'s window ending at `end_ms`.
    pub fn window_counts(
        &self,
        window: &Hopping,
        audience: &Audience,
        end_ms: i64,
    ) -> HashMap<ProductId, Counts> {
        let mut totals: HashMap<ProductId, Counts> = HashMap::new();
        let Some(rollup) = self.rollups.iter().find(|r| r.window == *window) else {
            return totals;
        };
        let scope = match audience {
            Audience::Global | Audience::Category(_) => Scope::Global,
            Audience::Merchant(merchant) => Scope::Merchant(merchant.clone()),
            Audience::City(city) => Scope::City(city.clone()),
        };
        for (_, scopes) in rollup.panes.range(end_ms - window.size_ms()..end_ms) {
            let products = scopes.get(&scope).map(|counts| &counts.products);
            for (product, counts) in products.into_iter().flatten() {
                if let Audience::Category(category) = audience
                    && self
                        .catalog
                        .get(product)
                        .is_none_or(|info| &info.category != category)
                {
                    continue;
                }
                if !counts.is_zero() {
                    totals.entry(product.clone()).or_default().add(counts);
                }
            }
        }
        totals
    }

    /// What products past the cap added to `audience`'s window ending at `end_ms`; `None`
    /// for a category.
    pub fn other_counts(
        &self,
        window: &Hopping,
        audience: &Audience,
        end_ms: i64,
    ) -> Option<Counts> {
        let scope = match audience {
            Audience::Category(_) => return None,
            Audience::Global => Scope::Global,
            Audience::Merchant(merchant) => Scope::Merchant(merchant.clone()),
            Audience::City(city) => Scope::City(city.clone()),
        };
        let mut total = Counts::default();
        if let Some(rollup) = self.rollups.iter().find(|r| r.window == *window) {
            for (_, scopes) in rollup.panes.range(end_ms - window.size_ms()..end_ms) {
                if let Some(counts) = scopes.get(&scope) {
                    total.add(&counts.other);
                }
            }
        }
        Some(total)
    }

    /// The `limit` best products of `audience` over the newest complete `window`, and the
    /// `limit` fastest risers; ties go to the smaller product id so answers are reproducible.
    pub fn top(&self, window: &Hopping, audience: &Audience, limit: usize) -> TrendingAnswer {
        let mut answer = TrendingAnswer {
            window_ms: window.size_ms(),
            slide_ms: window.slide_ms(),
            window_end_ms: None,
            products: Vec::new(),
            rising: Vec::new(),
            other: None,
        };
        let Some(watermark) = self.watermark() else {
            return answer;
        };
        let end = window.last_end_at_or_before(watermark);
        let now = self.window_counts(window, audience, end);
        let before = self.window_counts(window, audience, end - window.size_ms());
        let score_before =
            |product: &ProductId| before.get(product).map_or(0, |c| self.weights.score(c));
        let mut ranked: Vec<Entry> = now
            .iter()
            .filter(|(product, _)| self.catalog.get(*product).is_none_or(|info| info.active))
            .map(|(product, counts)| self.entry(product, counts, score_before(product)))
            .collect();
        ranked.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        let mut rising: Vec<Entry> = ranked
            .iter()
            .filter(|e| e.score > e.previous_score)
            .cloned()
            .collect();
        rising.sort_by(|a, b| {
            (b.score - b.previous_score)
                .cmp(&(a.score - a.previous_score))
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        ranked.truncate(limit);
        rising.truncate(limit);
        answer.window_end_ms = Some(end);
        answer.products = ranked;
        answer.rising = rising;
        answer.other = self
            .other_counts(window, audience, end)
            .map(|counts| OtherCounts {
                score: self.weights.score(&counts),
                views: counts.views,
                carts: counts.carts,
                orders: counts.orders,
            });
        answer
    }

    fn entry(&self, product: &ProductId, counts: &Counts, previous_score: u64) -> Entry {
        let info = self.catalog.get(product);
        Entry {
            product_id: product.to_string(),
            title: info.map(|i| i.title.clone()),
            category: info.map(|i| i.category.clone()),
            merchant_id: info.map(|i| i.merchant_id.to_string()),
            score: self.weights.score(counts),
            views: counts.views,
            carts: counts.carts,
            orders: counts.orders,
            previous_score,
        }
    }
}

#[cfg(test)]
mod tests {
    use model::Topic;
    use model::trending::OTHER_BUCKET;

    use super::*;

    fn shard() -> Shard {
        Shard {
            topic: Topic::Clicks,
            partition: 0,
        }
    }

    fn pane(bucket: u16, is_final: bool, views: &[(&str, u64)], other: u64) -> TrendingRecord {
        TrendingRecord::Pane(PaneRecord {
            shard: shard(),
            pane_start: 0,
            pane_ms: 10,
            is_final,
            scope: Scope::Global,
            bucket,
            products: views
                .iter()
                .map(|(id, n)| ProductCounts(ProductId::new(*id), *n, 0, 0))
                .collect(),
            other: Counts {
                views: other,
                ..Counts::default()
            },
        })
    }

    fn shown(view: &TrendingView, window: &Hopping) -> (Vec<(String, u64)>, Option<u64>) {
        let answer = view.top(window, &Audience::Global, 10);
        let products = answer
            .products
            .into_iter()
            .map(|e| (e.product_id, e.views))
            .collect();
        (products, answer.other.map(|o| o.views))
    }

    #[test]
    fn products_past_the_cap_are_counted_as_other_and_rewrites_move_nothing_between_them() {
        let window = Hopping::new(20, 10).expect("valid");
        let mut view = TrendingView::new(&[window], Weights::default(), 2);
        view.apply(TrendingRecord::Watermark(ShardWatermark {
            shard: shard(),
            watermark_ms: Some(25),
            newest_event_ms: Some(25),
            idle: false,
        }));
        view.apply(pane(0, false, &[("a", 3), ("b", 1), ("c", 5)], 0));
        view.apply(pane(OTHER_BUCKET, false, &[], 4));
        let want = |a, b, other| (vec![("a".to_owned(), a), ("b".to_owned(), b)], Some(other));
        // c arrived third: its 5 views join the job's own 4 overflow views.
        assert_eq!(shown(&view, &window), want(3, 1, 9));
        // A rewrite takes the old version out of the places it went to.
        view.apply(pane(0, false, &[("a", 4), ("b", 1), ("c", 6)], 0));
        assert_eq!(shown(&view, &window), want(4, 1, 10));
        view.apply(pane(0, true, &[("a", 4), ("b", 2), ("c", 6)], 0));
        view.apply(pane(OTHER_BUCKET, true, &[], 5));
        assert_eq!(shown(&view, &window), want(4, 2, 11));
        // A replay after a job crash resends older versions, then the same finals.
        view.apply(pane(0, false, &[("a", 1)], 0));
        view.apply(pane(OTHER_BUCKET, false, &[], 1));
        view.apply(pane(0, true, &[("a", 4), ("b", 2), ("c", 6)], 0));
        assert_eq!(shown(&view, &window), want(4, 2, 11));
        // Categories cannot hold products the view never kept.
        let category = view.top(&window, &Audience::Category("shoes".into()), 10);
        assert_eq!(category.other, None);
    }
}
