//! Trending serving state: the `trending` topic folded back into windows. Pure.
//!
//! Pane records arrive per shard and may be rewritten (provisional, then final; again after a
//! replay). The view keeps each shard's latest non-final record so a rewrite can subtract the
//! old contribution before adding the new one, and adds every record into one running total
//! per configured slide ("coarse panes"). A window is the sum of its coarse panes. Windows
//! shown end at the newest slide boundary the readers' watermark has passed, where the
//! watermark is the minimum over shards that are not idle.

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
}

#[derive(Debug, Clone)]
struct Rollup {
    window: Hopping,
    /// Coarse pane start -> scope -> product -> counts.
    panes: BTreeMap<i64, HashMap<Scope, HashMap<ProductId, Counts>>>,
}

/// Everything the trending topic and the catalog say, ready to answer queries.
#[derive(Debug, Clone)]
pub struct TrendingView {
    weights: Weights,
    rollups: Vec<Rollup>,
    /// What each shard last said about each retained pane, so a rewrite (a provisional pane
    /// made final, or any version replayed after a crash) replaces instead of adding.
    applied: HashMap<(i64, Shard, Scope, u16), Vec<ProductCounts>>,
    watermarks: BTreeMap<Shard, ShardWatermark>,
    catalog: HashMap<ProductId, ProductInfo>,
}

impl TrendingView {
    /// `windows` are the sizes and slides that can be asked for.
    pub fn new(windows: &[Hopping], weights: Weights) -> Self {
        Self {
            weights,
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
        if let Some(old) = self.applied.remove(&key) {
            self.add(pane.pane_start, &pane.scope, &old, false);
        }
        self.add(pane.pane_start, &pane.scope, &pane.products, true);
        self.applied.insert(key, pane.products);
    }

    fn add(&mut self, pane_start: i64, scope: &Scope, products: &[ProductCounts], adding: bool) {
        for rollup in &mut self.rollups {
            let coarse = rollup
                .panes
                .entry(floor_to(pane_start, rollup.window.slide_ms()))
                .or_default()
                .entry(scope.clone())
                .or_default();
            for entry in products {
                let total = coarse.entry(entry.product_id().clone()).or_default();
                if adding {
                    total.add(&entry.counts());
                } else {
                    total.subtract(&entry.counts());
                }
            }
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
            for (product, counts) in scopes.get(&scope).into_iter().flatten() {
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

    /// The `limit` best products of `audience` over the newest complete `window`, and the
    /// `limit` fastest risers; ties go to the smaller product id so answers are reproducible.
    pub fn top(&self, window: &Hopping, audience: &Audience, limit: usize) -> TrendingAnswer {
        let mut answer = TrendingAnswer {
            window_ms: window.size_ms(),
            slide_ms: window.slide_ms(),
            window_end_ms: None,
            products: Vec::new(),
            rising: Vec::new(),
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
