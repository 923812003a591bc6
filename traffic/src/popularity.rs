//! Zipf popularity that drifts: a few items get most of the attention, and which items those
//! are changes slowly over time, as real bestseller lists do.

use rand::Rng;

/// Picks one of `n` items with probability proportional to 1 / rank^exponent, where ranks are
/// a permutation that [`Popularity::drift`] reshuffles a little at a time.
#[derive(Debug, Clone)]
pub struct Popularity {
    /// `by_rank[r]` is the item at rank `r` (0 = most popular).
    by_rank: Vec<usize>,
    /// Cumulative probability by rank; the last entry is 1.
    cdf: Vec<f64>,
}

impl Popularity {
    pub fn new(items: Vec<usize>, exponent: f64, rng: &mut impl Rng) -> Self {
        let mut by_rank = items;
        // Fisher-Yates, so the initial ranking is drawn from the seed.
        for i in (1..by_rank.len()).rev() {
            by_rank.swap(i, rng.random_range(0..=i));
        }
        let weights: Vec<f64> = (1..=by_rank.len())
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                running += w / total;
                running
            })
            .collect();
        Self { by_rank, cdf }
    }

    pub fn is_empty(&self) -> bool {
        self.by_rank.is_empty()
    }

    /// One item, Zipf-distributed over the current ranking. Panics if empty.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        let rank = self
            .cdf
            .partition_point(|c| *c < u)
            .min(self.by_rank.len() - 1);
        self.by_rank[rank]
    }

    /// The item at `rank`, if there is one.
    #[cfg(test)]
    pub fn at_rank(&self, rank: usize) -> Option<usize> {
        self.by_rank.get(rank).copied()
    }

    /// Moves `swaps` random items into the head of the ranking, displacing current favourites.
    pub fn drift(&mut self, swaps: usize, rng: &mut impl Rng) {
        let n = self.by_rank.len();
        if n < 2 {
            return;
        }
        let head = n.min(20);
        for _ in 0..swaps {
            let from_tail = rng.random_range(0..n);
            let into_head = rng.random_range(0..head);
            self.by_rank.swap(from_tail, into_head);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_top_item_is_picked_far_more_than_the_median() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let popularity = Popularity::new((0..100).collect(), 1.1, &mut rng);
        let mut counts = vec![0u32; 100];
        for _ in 0..100_000 {
            counts[popularity.sample(&mut rng)] += 1;
        }
        let top = counts[popularity.at_rank(0).unwrap()];
        let median = counts[popularity.at_rank(50).unwrap()];
        assert!(top > 20 * median.max(1), "top {top}, median {median}");
    }

    #[test]
    fn drift_changes_the_head_but_keeps_every_item() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut popularity = Popularity::new((0..500).collect(), 1.0, &mut rng);
        let before: Vec<usize> = (0..20).filter_map(|r| popularity.at_rank(r)).collect();
        popularity.drift(10, &mut rng);
        let after: Vec<usize> = (0..20).filter_map(|r| popularity.at_rank(r)).collect();
        assert_ne!(before, after);
        let mut all: Vec<usize> = (0..500).filter_map(|r| popularity.at_rank(r)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }
}
