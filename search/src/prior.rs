//! The popularity prior, learnt from the streams and applied at query time, so it changes
//! without rewriting a document: click-through per query and product (smoothed towards the
//! product's own click-through, which is smoothed towards everyone's), and sales velocity
//! from orders, decayed on event time. The boost it gives is bounded and never below zero, so
//! a product nobody has clicked yet keeps its place by text alone.

use std::collections::{BTreeMap, HashMap};

use model::{Envelope, Event};
use serde::{Deserialize, Serialize};

use crate::schema::product_key;

/// How the prior is learnt and how much it may move a result.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    /// Click-through assumed for a product nobody has seen yet.
    pub base_ctr: f32,
    /// How many (position-discounted) impressions the smoothing is worth: below it the
    /// observed rate is not trusted much.
    pub smoothing: f32,
    /// The most a high click-through multiplies a text score by is `1 + ctr_weight`.
    pub ctr_weight: f32,
    /// Click-through, as a multiple of `base_ctr`, at which the click boost is full.
    pub ctr_lift_full: f32,
    /// The most sales multiply a text score by is `1 + sales_weight`.
    pub sales_weight: f32,
    /// Units sold per day at which the sales boost is half of its most.
    pub sales_half_per_day: f32,
    /// Half-life of a sale, days of event time.
    pub sales_half_life_days: f32,
    /// Query and product pairs kept; the least seen are forgotten first.
    pub max_pairs: usize,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            base_ctr: 0.1,
            smoothing: 3.0,
            ctr_weight: 0.6,
            ctr_lift_full: 3.0,
            sales_weight: 0.2,
            sales_half_per_day: 5.0,
            sales_half_life_days: 7.0,
            max_pairs: 500_000,
        }
    }
}

/// Clicks and position-discounted impressions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub impressions: f32,
    pub clicks: f32,
}

/// Units sold, decayed to `at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Sales {
    units: f32,
    at_ms: i64,
}

/// What was learnt, checkpointed with the positions it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    /// By query key, then product key. Serialised as lists: JSON keys are strings.
    #[serde(with = "pairs")]
    by_query: HashMap<(u64, u64), Exposure>,
    #[serde(with = "pairs")]
    by_product: HashMap<u64, Exposure>,
    #[serde(with = "pairs")]
    sales: HashMap<u64, Sales>,
    /// How often each query was run, by scope (merchant id, or empty for the marketplace):
    /// completions offer the popular ones.
    pub queries: BTreeMap<String, BTreeMap<String, u64>>,
    pub positions: BTreeMap<String, i64>,
}

/// How likely a shopper is to look at a result at 0-based `position` (the DCG discount).
pub fn examination(position: usize) -> f32 {
    1.0 / ((position as f32) + 2.0).log2()
}

/// The key a query is learnt under: its words, lower case, one space apart.
pub fn query_key(query: &str) -> u64 {
    product_key(&normal_query(query))
}

/// A query as shoppers' counts group it.
pub fn normal_query(query: &str) -> String {
    crate::text::normalise_units(query)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Most distinct queries remembered per scope for completions.
const QUERIES_PER_SCOPE: usize = 5_000;

impl Prior {
    /// Whether a record at `offset` of `position` is new to the prior (and marks it taken).
    pub fn take(&mut self, position: &str, offset: i64) -> bool {
        if self
            .positions
            .get(position)
            .is_some_and(|next| offset < *next)
        {
            return false;
        }
        self.positions.insert(position.to_owned(), offset + 1);
        true
    }

    pub fn learn(&mut self, envelope: &Envelope, config: &PriorConfig) {
        match &envelope.event {
            Event::SearchPerformed(s) => {
                let query = query_key(&s.query);
                for (position, product) in s.results.iter().enumerate() {
                    let seen = examination(position);
                    let product = product_key(product.as_str());
                    self.by_query
                        .entry((query, product))
                        .or_default()
                        .impressions += seen;
                    self.by_product.entry(product).or_default().impressions += seen;
                }
                let text = normal_query(&s.query);
                if !text.is_empty() {
                    let scope = if envelope.merchant_id.as_str() == model::MARKETPLACE {
                        String::new()
                    } else {
                        envelope.merchant_id.to_string()
                    };
                    let counts = self.queries.entry(scope).or_default();
                    *counts.entry(text).or_default() += 1;
                    if counts.len() > QUERIES_PER_SCOPE {
                        let least = counts.values().copied().min().unwrap_or(0);
                        counts.retain(|_, n| *n > least);
                    }
                }
                if self.by_query.len() > config.max_pairs {
                    self.forget(config.max_pairs);
                }
            }
            Event::ProductClicked(c) => {
                let product = product_key(c.product_id.as_str());
                self.by_query
                    .entry((query_key(&c.query), product))
                    .or_default()
                    .clicks += 1.0;
                self.by_product.entry(product).or_default().clicks += 1.0;
            }
            Event::OrderPlaced(o) => {
                let half_life_ms = (config.sales_half_life_days * 86_400_000.0) as f64;
                for line in &o.lines {
                    let sales = self
                        .sales
                        .entry(product_key(line.product_id.as_str()))
                        .or_default();
                    let decayed =
                        decay(sales.units, sales.at_ms, envelope.event_time, half_life_ms);
                    sales.units = decayed + line.quantity as f32;
                    sales.at_ms = sales.at_ms.max(envelope.event_time);
                }
            }
            _ => {}
        }
    }

    /// Keeps the `keep / 2` most seen query and product pairs.
    fn forget(&mut self, keep: usize) {
        let mut seen: Vec<f32> = self.by_query.values().map(|e| e.impressions).collect();
        let cut = seen.len().saturating_sub(keep / 2);
        if cut == 0 {
            return;
        }
        seen.select_nth_unstable_by(cut - 1, f32::total_cmp);
        let threshold = seen[cut - 1];
        self.by_query
            .retain(|_, e| e.impressions > threshold || e.clicks > 0.0);
    }

    /// The multiplier on a text score of `product` for `query` (`query_key`), at `now_ms`:
    /// between 1 and `1 + ctr_weight + sales_weight`.
    pub fn boost(&self, query: u64, product: u64, now_ms: i64, config: &PriorConfig) -> f32 {
        1.0 + self.ctr_boost(query, product, config) + self.sales_boost(product, now_ms, config)
    }

    fn ctr_boost(&self, query: u64, product: u64, config: &PriorConfig) -> f32 {
        let smoothed = |e: Option<&Exposure>, towards: f32| match e {
            Some(e) => (e.clicks + config.smoothing * towards) / (e.impressions + config.smoothing),
            None => towards,
        };
        let of_product = smoothed(self.by_product.get(&product), config.base_ctr);
        let for_query = smoothed(self.by_query.get(&(query, product)), of_product);
        let lift = for_query / config.base_ctr;
        let full = config.ctr_lift_full.max(1.0 + f32::EPSILON);
        config.ctr_weight * ((lift - 1.0) / (full - 1.0)).clamp(0.0, 1.0)
    }

    fn sales_boost(&self, product: u64, now_ms: i64, config: &PriorConfig) -> f32 {
        let Some(sales) = self.sales.get(&product) else {
            return 0.0;
        };
        let half_life_ms = (config.sales_half_life_days * 86_400_000.0) as f64;
        let units = decay(sales.units, sales.at_ms, now_ms, half_life_ms);
        // Units in the decayed sum per day of its mean age.
        let per_day = units * std::f32::consts::LN_2 / config.sales_half_life_days;
        config.sales_weight * per_day / (per_day + config.sales_half_per_day)
    }

    pub fn exposure(&self, query: u64, product: u64) -> Option<Exposure> {
        self.by_query.get(&(query, product)).copied()
    }

    pub fn pairs(&self) -> usize {
        self.by_query.len()
    }
}

fn decay(units: f32, from_ms: i64, to_ms: i64, half_life_ms: f64) -> f32 {
    if to_ms <= from_ms || half_life_ms <= 0.0 {
        return units;
    }
    units * (0.5f64.powf((to_ms - from_ms) as f64 / half_life_ms)) as f32
}

/// Maps with non-string keys as lists of pairs in JSON.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: DeserializeOwned + Eq + Hash,
        V: DeserializeOwned,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
