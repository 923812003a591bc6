//! One recommendation answer, end to end: candidates from the graphs and the vectors,
//! blended, filtered (shop, stock, exclusions, then delivery), and topped up from trending
//! when there are too few. Every item says where it came from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use model::calendar::IstDate;
use model::deliver::Deliverability;
use model::{CustomerId, MerchantId, Pincode, ProductId, SessionId};
use serde::{Deserialize, Serialize};

use crate::RecommendError;
use crate::learn::{GLOBAL, Kind, LearnConfig, Learner, category_scope, merchant_scope};
use crate::vectors::Store;

/// How answers are put together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// An embedding neighbour's cosine similarity counts this much against a co-visitation
    /// neighbour's normalised weight (1 for the strongest).
    pub embedding_weight: f32,
    /// Neighbours read per seed item before filtering.
    pub candidates: usize,
    /// Each step back in a session or a customer's history counts this much less.
    pub recency: f32,
    /// For-you: a candidate in a category that is all of the customer's recent interest is
    /// scored this much higher (proportionally less for a smaller share).
    pub category_affinity: f32,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            embedding_weight: 0.3,
            candidates: 100,
            recency: 0.8,
            category_affinity: 0.5,
        }
    }
}

/// Where a recommended item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Viewed in the same sessions.
    CoVisitation,
    /// Near in the item-vector space (arroy).
    Embedding,
    /// Carted or ordered together.
    BoughtTogether,
    /// Next-item for the session's items.
    Session,
    /// From the customer's recent interactions.
    ForYou,
    /// Cold start or top-up: popular in the item's (or customer's) category.
    TrendingCategory,
    /// Cold start or top-up: popular everywhere (in the shop, with `merchant_id`).
    TrendingGlobal,
}

#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub merchant: Option<MerchantId>,
    pub pincode: Option<Pincode>,
    pub in_stock: bool,
    pub exclude: Vec<ProductId>,
}

#[derive(Debug, Clone)]
pub struct Asked {
    pub limit: usize,
    pub filters: Filters,
    /// Wall-clock time, for delivery promises.
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommended {
    pub product_id: ProductId,
    pub score: f32,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliverable_by: Option<IstDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Whether what was asked about (product, session, customer) is known; false means the
    /// items are the cold-start fallback.
    pub known: bool,
    pub items: Vec<Recommended>,
}

#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("pincode filters need the serviceability stage, which this process does not run")]
    NoDeliverability,
    #[error(transparent)]
    Failed(#[from] RecommendError),
}

/// Scores per candidate, remembering which source gave each the most.
#[derive(Debug, Default)]
struct Candidates {
    scores: HashMap<u32, (f32, Source, f32)>,
}

impl Candidates {
    fn add(&mut self, item: u32, score: f32, source: Source) {
        if score.is_nan() || score <= 0.0 {
            return;
        }
        let entry = self.scores.entry(item).or_insert((0.0, source, 0.0));
        entry.0 += score;
        if score > entry.2 {
            entry.1 = source;
            entry.2 = score;
        }
    }

    /// Each neighbour's weight relative to the strongest, times `factor`.
    fn add_normalised(&mut self, neighbours: &[(u32, f32)], factor: f32, source: Source) {
        let top = neighbours.first().map_or(0.0, |n| n.1);
        if top > 0.0 {
            for (item, weight) in neighbours {
                self.add(*item, factor * weight / top, source);
            }
        }
    }

    fn ranked(self) -> Vec<(u32, f32, Source)> {
        let mut out: Vec<(u32, f32, Source)> = self
            .scores
            .into_iter()
            .map(|(item, (score, source, _))| (item, score, source))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

#[derive(Debug)]
pub struct Engine {
    pub learner: Arc<RwLock<Learner>>,
    pub vectors: Arc<Store>,
    pub learn: LearnConfig,
    pub serve: ServeConfig,
    pub deliverability: Option<Arc<dyn Deliverability>>,
}

impl Engine {
    fn read(&self) -> RwLockReadGuard<'_, Learner> {
        self.learner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Viewed together with `product`, blended with its embedding neighbours.
    pub fn similar(&self, product: &ProductId, asked: &Asked) -> Result<Answer, Refused> {
        let (seed, neighbours) = {
            let learner = self.read();
            let seed = learner.ids.get(product);
            let neighbours = seed
                .map(|n| self.top(learner.viewed.neighbours(n, learner.now, self.decay())))
                .unwrap_or_default();
            (seed, neighbours)
        };
        let mut candidates = Candidates::default();
        candidates.add_normalised(&neighbours, 1.0, Source::CoVisitation);
        if let Some(seed) = seed
            && let Some(near) = self.vectors.nearest_to_item(seed, self.serve.candidates)?
        {
            for (item, similarity) in near {
                candidates.add(
                    item,
                    self.serve.embedding_weight * similarity,
                    Source::Embedding,
                );
            }
        }
        let known = !candidates.scores.is_empty();
        self.finish(candidates, seed.into_iter().collect(), seed, known, asked)
    }

    /// Carted or ordered together with `product`.
    pub fn bought_together(&self, product: &ProductId, asked: &Asked) -> Result<Answer, Refused> {
        let (seed, neighbours) = {
            let learner = self.read();
            let seed = learner.ids.get(product);
            let neighbours = seed
                .map(|n| self.top(learner.bought.neighbours(n, learner.now, self.decay())))
                .unwrap_or_default();
            (seed, neighbours)
        };
        let mut candidates = Candidates::default();
        candidates.add_normalised(&neighbours, 1.0, Source::BoughtTogether);
        let known = !neighbours.is_empty();
        self.finish(candidates, seed.into_iter().collect(), seed, known, asked)
    }

    /// The next items for a session that held `items`, oldest first.
    pub fn session(&self, items: &[ProductId], asked: &Asked) -> Result<Answer, Refused> {
        let touches: Vec<(u32, f32)> = {
            let learner = self.read();
            items
                .iter()
                .filter_map(|p| learner.ids.get(p))
                .map(|n| (n, 1.0))
                .collect()
        };
        self.recommend_from_history(&touches, Source::Session, HashSet::new(), asked)
    }

    /// The next items for a live session the stream has seen.
    pub fn live_session(&self, session: &SessionId, asked: &Asked) -> Result<Answer, Refused> {
        let touches: Vec<(u32, f32)> = {
            let learner = self.read();
            learner
                .sessions
                .get(session.as_str())
                .map(|s| s.items.iter().map(|t| (t.item, interest(t.kind))).collect())
                .unwrap_or_default()
        };
        self.recommend_from_history(&touches, Source::Session, HashSet::new(), asked)
    }

    /// For a customer: their recent interactions, recency weighted, boosted by the
    /// categories they favour, without what they already bought.
    pub fn for_you(&self, customer: &CustomerId, asked: &Asked) -> Result<Answer, Refused> {
        let (touches, bought) = {
            let learner = self.read();
            learner
                .customers
                .get(customer.as_str())
                .map(|c| {
                    (
                        c.recent
                            .iter()
                            .map(|t| (t.item, interest(t.kind)))
                            .collect::<Vec<_>>(),
                        c.bought.iter().copied().collect::<HashSet<u32>>(),
                    )
                })
                .unwrap_or_default()
        };
        self.recommend_from_history(&touches, Source::ForYou, bought, asked)
    }

    /// Candidates from a history (oldest first, with interest weights): each item's
    /// viewed-together neighbours, weighted by recency, plus the neighbours of the history's
    /// mean vector; for-you scales by category affinity.
    fn recommend_from_history(
        &self,
        touches: &[(u32, f32)],
        source: Source,
        mut skip: HashSet<u32>,
        asked: &Asked,
    ) -> Result<Answer, Refused> {
        let mut candidates = Candidates::default();
        let mut affinity: HashMap<String, f32> = HashMap::new();
        let mut weights: HashMap<u32, f32> = HashMap::new();
        {
            let learner = self.read();
            let mut factor = 1.0f32;
            for &(item, interest) in touches.iter().rev() {
                let weight = factor * interest;
                *weights.entry(item).or_default() += weight;
                let neighbours =
                    self.top(learner.viewed.neighbours(item, learner.now, self.decay()));
                candidates.add_normalised(&neighbours, weight, source);
                if let Some(known) = learner.items.get(&item) {
                    *affinity.entry(known.category.clone()).or_default() += weight;
                }
                factor *= self.serve.recency;
            }
        }
        // The history's own items are not news for a session; for-you may show them again
        // (recently viewed), but not what was bought.
        if source == Source::Session {
            skip.extend(weights.keys().copied());
        }
        let items: Vec<u32> = weights.keys().copied().collect();
        let stored = self.vectors.vectors_of(&items)?;
        if let Some(mean) = mean_vector(&stored, &weights) {
            for (item, similarity) in self
                .vectors
                .nearest_to_vector(&mean, self.serve.candidates)?
            {
                candidates.add(
                    item,
                    self.serve.embedding_weight * similarity,
                    Source::Embedding,
                );
            }
        }
        let total: f32 = affinity.values().sum();
        if source == Source::ForYou && total > 0.0 {
            let learner = self.read();
            for (item, (score, _, _)) in &mut candidates.scores {
                let share = learner
                    .items
                    .get(item)
                    .and_then(|i| affinity.get(&i.category))
                    .map_or(0.0, |w| w / total);
                *score *= 1.0 + self.serve.category_affinity * share;
            }
        }
        let favourite = touches.last().map(|t| t.0);
        let known = !touches.is_empty() && !candidates.scores.is_empty();
        self.finish(candidates, skip, favourite, known, asked)
    }

    fn decay(&self) -> crate::graph::Decay {
        self.learn.decay()
    }

    fn top(&self, mut neighbours: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
        neighbours.truncate(self.serve.candidates);
        neighbours
    }

    /// Filters and ranks the candidates, then tops up from trending in `anchor`'s category
    /// and then everywhere (within the shop when `merchant_id` is set).
    fn finish(
        &self,
        candidates: Candidates,
        mut skip: HashSet<u32>,
        anchor: Option<u32>,
        known: bool,
        asked: &Asked,
    ) -> Result<Answer, Refused> {
        if asked.filters.pincode.is_some() && self.deliverability.is_none() {
            return Err(Refused::NoDeliverability);
        }
        let learner = self.read();
        skip.extend(
            asked
                .filters
                .exclude
                .iter()
                .filter_map(|p| learner.ids.get(p)),
        );
        let mut items = Vec::with_capacity(asked.limit);
        let mut take = |item: u32, score: f32, source: Source, items: &mut Vec<Recommended>| {
            if items.len() >= asked.limit || !skip.insert(item) {
                return;
            }
            if let Some(admitted) = self.admit(&learner, item, score, source, asked) {
                items.push(admitted);
            }
        };
        for (item, score, source) in candidates.ranked() {
            take(item, score, source, &mut items);
        }
        let decay = self.decay();
        if items.len() < asked.limit {
            let category = anchor
                .and_then(|a| learner.items.get(&a))
                .map(|i| category_scope(&i.category));
            if let Some(scope) = category {
                for (item, popularity) in learner.trending.top(&scope, learner.now, decay) {
                    take(item, popularity, Source::TrendingCategory, &mut items);
                }
            }
        }
        if items.len() < asked.limit {
            let scope = asked
                .filters
                .merchant
                .as_ref()
                .map_or_else(|| GLOBAL.to_owned(), |m| merchant_scope(m.as_str()));
            for (item, popularity) in learner.trending.top(&scope, learner.now, decay) {
                take(item, popularity, Source::TrendingGlobal, &mut items);
            }
        }
        Ok(Answer { known, items })
    }

    fn admit(
        &self,
        learner: &Learner,
        item: u32,
        score: f32,
        source: Source,
        asked: &Asked,
    ) -> Option<Recommended> {
        let known = learner.items.get(&item)?;
        if !known.active || known.merchant.is_empty() {
            return None;
        }
        if let Some(merchant) = &asked.filters.merchant
            && merchant.as_str() != known.merchant
        {
            return None;
        }
        if asked.filters.in_stock && !known.in_stock() {
            return None;
        }
        let product_id = learner.ids.name(item)?.clone();
        let deliverable_by = match (asked.filters.pincode, &self.deliverability) {
            (Some(pincode), Some(service)) => Some(
                service
                    .deliver_by(&product_id, 1, pincode, asked.now_ms)
                    .ok()?,
            ),
            _ => None,
        };
        Some(Recommended {
            product_id,
            score,
            source,
            deliverable_by,
        })
    }
}

fn interest(kind: Kind) -> f32 {
    kind.interest()
}

/// The weighted mean of the items' vectors, or None if none has one.
fn mean_vector(stored: &[(u32, Vec<f32>)], weights: &HashMap<u32, f32>) -> Option<Vec<f32>> {
    let dimensions = stored.first()?.1.len();
    let mut mean = vec![0.0f32; dimensions];
    for (item, vector) in stored {
        let w = weights.get(item).copied().unwrap_or(0.0);
        for (m, v) in mean.iter_mut().zip(vector) {
            *m += w * v;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    (norm > 0.0).then(|| mean.into_iter().map(|v| v / norm).collect())
}
