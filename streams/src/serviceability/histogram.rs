//! A distribution of whole days, decayed on the samples' own event time.
//!
//! Each sample weighs `2^-(age / half_life)`, its age measured from the newest sample the
//! histogram has seen, never from the wall clock: a backfill of last year's deliveries ends in
//! the same weights as the live stream that carried them, whatever order they arrive in (up to
//! float rounding), and a replay of the same records in the same order ends in the same bits.

use serde::{Deserialize, Serialize};

/// Days 0 to `BINS - 2` each have a bin; the last holds every longer sample.
pub const BINS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayHistogram {
    weights: [f32; BINS],
    /// Event time the weights are relative to: the newest sample's.
    newest_ms: i64,
    /// Samples ever added, undecayed: how many deliveries stand behind an answer.
    samples: u32,
}

impl Default for DayHistogram {
    fn default() -> Self {
        Self {
            weights: [0.0; BINS],
            newest_ms: i64::MIN,
            samples: 0,
        }
    }
}

impl DayHistogram {
    pub fn add(&mut self, days: u32, event_ms: i64, half_life_ms: i64) {
        let bin = (days as usize).min(BINS - 1);
        if self.samples == 0 {
            self.newest_ms = event_ms;
        }
        if event_ms > self.newest_ms {
            let factor = decay(event_ms - self.newest_ms, half_life_ms);
            for weight in &mut self.weights {
                *weight *= factor;
            }
            self.newest_ms = event_ms;
        }
        self.weights[bin] += decay(self.newest_ms - event_ms, half_life_ms);
        self.samples = self.samples.saturating_add(1);
    }

    pub fn samples(&self) -> u32 {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    fn mass(&self) -> f64 {
        self.weights.iter().map(|&w| f64::from(w)).sum()
    }

    /// The smallest day count whose share of the (decayed) mass at or below it reaches `q`.
    pub fn quantile(&self, q: f64) -> u32 {
        let mass = self.mass();
        if mass <= 0.0 {
            return (BINS - 1) as u32;
        }
        let mut below = 0.0;
        for (day, &weight) in self.weights.iter().enumerate() {
            below += f64::from(weight);
            if below >= q * mass * (1.0 - 1e-6) {
                return day as u32;
            }
        }
        (BINS - 1) as u32
    }

    /// The share of the mass at `days` or fewer.
    pub fn at_most(&self, days: u32) -> f64 {
        let mass = self.mass();
        if mass <= 0.0 {
            return 0.0;
        }
        let upto = (days as usize).min(BINS - 1);
        self.weights[..=upto]
            .iter()
            .map(|&w| f64::from(w))
            .sum::<f64>()
            / mass
    }

    /// The normalised probability of each day count.
    pub fn shares(&self) -> [f64; BINS] {
        let mass = self.mass();
        let mut shares = [0.0; BINS];
        if mass > 0.0 {
            for (share, &weight) in shares.iter_mut().zip(&self.weights) {
                *share = f64::from(weight) / mass;
            }
        }
        shares
    }
}

fn decay(age_ms: i64, half_life_ms: i64) -> f32 {
    (-(age_ms as f64) / half_life_ms.max(1) as f64).exp2() as f32
}

/// The chance that two independent day counts, drawn from `a` and `b`, add up to `total` or
/// fewer (handling then transit).
pub fn sum_at_most(a: &[f64; BINS], b: &[f64; BINS], total: u32) -> f64 {
    let mut probability = 0.0;
    for (i, &pa) in a.iter().enumerate() {
        for (j, &pb) in b.iter().enumerate() {
            if (i + j) as u32 <= total {
                probability += pa * pb;
            }
        }
    }
    probability.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut histogram = DayHistogram::default();
        for (i, days) in [2, 2, 3, 3, 3, 4, 4, 5, 6, 9].into_iter().enumerate() {
            histogram.add(days, i as i64, 365 * DAY);
        }
        assert_eq!(histogram.quantile(0.5), 3);
        assert_eq!(histogram.quantile(0.9), 6);
        assert_eq!(histogram.quantile(1.0), 9);
        assert!((histogram.at_most(4) - 0.7).abs() < 1e-6);
        assert_eq!(histogram.samples(), 10);
    }

    #[test]
    fn order_of_arrival_does_not_change_what_is_learnt() {
        let samples: Vec<(u32, i64)> = (0..200)
            .map(|i| ((i * 7 % 11) as u32, i * DAY / 3))
            .collect();
        let mut forward = DayHistogram::default();
        let mut backward = DayHistogram::default();
        for &(days, at) in &samples {
            forward.add(days, at, 30 * DAY);
        }
        for &(days, at) in samples.iter().rev() {
            backward.add(days, at, 30 * DAY);
        }
        for (f, b) in forward.shares().iter().zip(backward.shares()) {
            assert!((f - b).abs() < 1e-5, "{f} against {b}");
        }
    }

    #[test]
    fn old_samples_fade_after_a_change() {
        let mut histogram = DayHistogram::default();
        for i in 0..100 {
            histogram.add(6, i * DAY / 10, 7 * DAY);
        }
        // Sixty days later the lane got faster.
        for i in 0..100 {
            histogram.add(2, 60 * DAY + i * DAY / 10, 7 * DAY);
        }
        assert_eq!(histogram.quantile(0.9), 2);
    }

    #[test]
    fn handling_plus_transit() {
        let mut one = [0.0; BINS];
        one[1] = 1.0;
        let mut two_or_three = [0.0; BINS];
        two_or_three[2] = 0.5;
        two_or_three[3] = 0.5;
        assert!((sum_at_most(&one, &two_or_three, 3) - 0.5).abs() < 1e-12);
        assert!((sum_at_most(&one, &two_or_three, 4) - 1.0).abs() < 1e-12);
    }
}
