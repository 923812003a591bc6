//! Time-decayed weights and bounded neighbour lists: the co-visitation graphs and the
//! popularity behind the trending fallback. Pure: event time in, no clocks, no I/O.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A weight halves every `half_life_ms` of event time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decay {
    pub half_life_ms: f64,
}

impl Decay {
    pub fn factor(self, elapsed_ms: i64) -> f32 {
        if elapsed_ms <= 0 {
            return 1.0;
        }
        0.5f64.powf(elapsed_ms as f64 / self.half_life_ms) as f32
    }
}

/// A weight as it stood at event time `at`. Adding an older contribution decays it to `at`
/// instead of moving `at` back, so the sum does not depend on the order events arrive in: a
/// backfill of last month's clicks counts exactly as much as it would have live.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decayed {
    pub weight: f32,
    pub at: i64,
}

impl Decayed {
    pub fn new(weight: f32, at: i64) -> Self {
        Self { weight, at }
    }

    pub fn add(&mut self, weight: f32, at: i64, decay: Decay) {
        if at >= self.at {
            self.weight = self.weight * decay.factor(at - self.at) + weight;
            self.at = at;
        } else {
            self.weight += weight * decay.factor(self.at - at);
        }
    }

    /// The weight at `now`; never grows for a `now` before `at`.
    pub fn at(self, now: i64, decay: Decay) -> f32 {
        self.weight * decay.factor(now - self.at)
    }
}

/// Per item, its strongest neighbours. A list may hold up to twice `keep` entries between
/// prunes so that a new pair can build up weight before it competes; a prune keeps the
/// `keep` strongest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Graph {
    lists: HashMap<u32, Vec<(u32, Decayed)>>,
}

impl Graph {
    /// Adds `weight` to the pair in both directions.
    pub fn add_pair(&mut self, a: u32, b: u32, weight: f32, at: i64, keep: usize, decay: Decay) {
        if a == b {
            return;
        }
        self.add_one(a, b, weight, at, keep, decay);
        self.add_one(b, a, weight, at, keep, decay);
    }

    fn add_one(&mut self, from: u32, to: u32, weight: f32, at: i64, keep: usize, decay: Decay) {
        let list = self.lists.entry(from).or_default();
        match list.iter_mut().find(|(item, _)| *item == to) {
            Some((_, existing)) => existing.add(weight, at, decay),
            None => list.push((to, Decayed::new(weight, at))),
        }
        if list.len() > keep.max(1) * 2 {
            prune(list, keep.max(1), decay);
        }
    }

    /// `item`'s neighbours, strongest first (ties by id), with weights at `now`.
    pub fn neighbours(&self, item: u32, now: i64, decay: Decay) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = self
            .lists
            .get(&item)
            .map(|list| list.iter().map(|(n, w)| (*n, w.at(now, decay))).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Every stored edge, for the embedding rebuild.
    pub fn edges(&self, now: i64, decay: Decay) -> Vec<(u32, u32, f32)> {
        let mut out = Vec::with_capacity(self.edge_count());
        for (from, list) in &self.lists {
            out.extend(list.iter().map(|(to, w)| (*from, *to, w.at(now, decay))));
        }
        out
    }

    pub fn contains(&self, item: u32) -> bool {
        self.lists.contains_key(&item)
    }

    pub fn item_count(&self) -> usize {
        self.lists.len()
    }

    pub fn edge_count(&self) -> usize {
        self.lists.values().map(Vec::len).sum()
    }

    /// Forgets `item`'s own list (its appearances in other lists fade and are pruned).
    pub fn forget(&mut self, item: u32) {
        self.lists.remove(&item);
    }
}

fn prune(list: &mut Vec<(u32, Decayed)>, keep: usize, decay: Decay) {
    let now = list.iter().map(|(_, w)| w.at).max().unwrap_or(0);
    list.sort_by(|a, b| {
        b.1.at(now, decay)
            .total_cmp(&a.1.at(now, decay))
            .then(a.0.cmp(&b.0))
    });
    list.truncate(keep);
}

/// Bounded lists of the most popular items per scope (`global`, a category, a merchant):
/// candidates are kept up to twice `keep` and pruned by their popularity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trending {
    popularity: HashMap<u32, Decayed>,
    scopes: HashMap<String, Vec<u32>>,
}

impl Trending {
    /// Counts `weight` for `item` and keeps it a candidate in each of `scopes`.
    pub fn add(
        &mut self,
        item: u32,
        scopes: &[String],
        weight: f32,
        at: i64,
        keep: usize,
        decay: Decay,
    ) {
        self.popularity
            .entry(item)
            .or_insert(Decayed::new(0.0, at))
            .add(weight, at, decay);
        for scope in scopes {
            let list = self.scopes.entry(scope.clone()).or_default();
            if !list.contains(&item) {
                list.push(item);
            }
            if list.len() > keep.max(1) * 2 {
                let popularity = &self.popularity;
                let score = |i: &u32| popularity.get(i).map_or(0.0, |d| d.at(at, decay));
                list.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));
                list.truncate(keep.max(1));
            }
        }
    }

    /// The scope's items, most popular at `now` first.
    pub fn top(&self, scope: &str, now: i64, decay: Decay) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = self
            .scopes
            .get(scope)
            .map(|list| {
                list.iter()
                    .map(|i| (*i, self.popularity(*i, now, decay)))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    pub fn popularity(&self, item: u32, now: i64, decay: Decay) -> f32 {
        self.popularity.get(&item).map_or(0.0, |d| d.at(now, decay))
    }
}
