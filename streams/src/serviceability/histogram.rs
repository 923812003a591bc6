//! A distribution of whole days, decayed on the samples' own event time.
//!
//! Each sample weighs `2^-(age / half_life)`, its age measured from the newest sample the
//! histogram has seen, never from the wall clock: a backfill of last year's deliveries ends in
//! the same weights as the live stream that carried them, whatever order they arrive in (up to
//! float rounding), and a replay of the same records in the same order ends in the same bits.

//!
//! A million lanes each hold one, so it is kept small (44 bytes): each bin's weight is stored
//! as a share of the heaviest bin's in 1/65535ths, and the newest sample's time in minutes.
//! Quantiles move by less than one bin's rounding, 1/65535 of the heaviest bin's weight.

use serde::{Deserialize, Serialize};

/// Days 0 to `BINS - 2` each have a bin; the last holds every longer sample.
pub const BINS: usize = 16;

/// A bin's weight when its share is `FULL`: the heaviest bin's.
const FULL: f32 = 65_535.0;

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Saved", into = "Saved")]
pub struct DayHistogram {
    /// Each bin's weight over `heaviest`, in 1/65535ths.
    shares: [u16; BINS],
    /// The heaviest bin's weight.
    heaviest: f32,
    /// Event time the weights are relative to, in minutes since the epoch: the newest
    /// sample's.
    newest_minute: i32,
    /// Samples ever added, undecayed: how many deliveries stand behind an answer.
    samples: u32,
}

/// How a histogram is checkpointed: the weights themselves, as before they were packed, so
/// checkpoints written by either layout load.
#[derive(Serialize, Deserialize)]
struct Saved {
    weights: [f32; BINS],
    newest_ms: i64,
    samples: u32,
}

impl From<Saved> for DayHistogram {
    fn from(saved: Saved) -> Self {
        let mut histogram = DayHistogram {
            newest_minute: minute_of(saved.newest_ms),
            samples: saved.samples,
            ..DayHistogram::default()
        };
        histogram.set_weights(saved.weights);
        histogram
    }
}

impl From<DayHistogram> for Saved {
    fn from(histogram: DayHistogram) -> Self {
        Saved {
            weights: histogram.weights(),
            newest_ms: if histogram.samples == 0 {
                i64::MIN
            } else {
                i64::from(histogram.newest_minute) * MINUTE_MS
            },
            samples: histogram.samples,
        }
    }
}

impl Default for DayHistogram {
    fn default() -> Self {
        Self {
            shares: [0; BINS],
            heaviest: 0.0,
            newest_minute: i32::MIN,
            samples: 0,
        }
    }
}

fn minute_of(event_ms: i64) -> i32 {
    let minute = event_ms.div_euclid(MINUTE_MS);
    i32::try_from(minute).unwrap_or(if minute < 0 { i32::MIN } else { i32::MAX })
}

impl DayHistogram {
    pub fn add(&mut self, days: u32, event_ms: i64, half_life_ms: i64) {
        let bin = (days as usize).min(BINS - 1);
        let minute = minute_of(event_ms);
        if self.samples == 0 {
            self.newest_minute = minute;
        }
        if minute > self.newest_minute {
            // Every weight decays by the same factor: only the scale changes.
            let age = i64::from(minute) - i64::from(self.newest_minute);
            self.heaviest *= decay(age * MINUTE_MS, half_life_ms);
            self.newest_minute = minute;
        }
        let mut weights = self.weights();
        let age = i64::from(self.newest_minute) - i64::from(minute);
        weights[bin] += decay(age * MINUTE_MS, half_life_ms);
        self.set_weights(weights);
        self.samples = self.samples.saturating_add(1);
    }

    fn weights(&self) -> [f32; BINS] {
        // The heaviest bin exactly, so saving and loading changes nothing.
        self.shares.map(|share| match share {
            u16::MAX => self.heaviest,
            share => f32::from(share) * self.heaviest / FULL,
        })
    }

    fn set_weights(&mut self, weights: [f32; BINS]) {
        self.heaviest = weights.iter().copied().fold(0.0, f32::max);
        self.shares = if self.heaviest > 0.0 {
            // In 0..=FULL by construction, so the cast cannot truncate.
            weights.map(|weight| (weight / self.heaviest * FULL).round() as u16)
        } else {
            [0; BINS]
        };
    }

    pub fn samples(&self) -> u32 {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    fn mass(&self) -> f64 {
        self.weights().iter().map(|&w| f64::from(w)).sum()
    }

    /// The smallest day count whose share of the (decayed) mass at or below it reaches `q`.
    pub fn quantile(&self, q: f64) -> u32 {
        let mass = self.mass();
        if mass <= 0.0 {
            return (BINS - 1) as u32;
        }
        let mut below = 0.0;
        for (day, &weight) in self.weights().iter().enumerate() {
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
        self.weights()[..=upto]
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
            for (share, &weight) in shares.iter_mut().zip(&self.weights()) {
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
    fn a_checkpoint_of_f32_weights_loads_into_the_packed_layout() {
        let saved = serde_json::json!({
            "weights": [0.0, 0.5, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25],
            // Kept to the minute, which this one is on.
            "newest_ms": 1_779_999_960_000_i64,
            "samples": 4
        });
        let histogram: DayHistogram = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(histogram.samples(), 4);
        assert_eq!(histogram.quantile(0.5), 2);
        assert!((histogram.at_most(3) - 3.5 / 3.75).abs() < 1e-4);
        // Saved again, the weights are the same to within the packing's rounding.
        let again = serde_json::to_value(&histogram).unwrap();
        assert_eq!(again["newest_ms"], saved["newest_ms"]);
        for (a, b) in again["weights"]
            .as_array()
            .unwrap()
            .iter()
            .zip(saved["weights"].as_array().unwrap())
        {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 2.0 / 65_535.0);
        }
        assert_eq!(size_of::<DayHistogram>(), 44);
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
