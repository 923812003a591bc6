//! Windows over event time, computed with panes.
//!
//! A hopping window of `size` every `slide` (tumbling when they are equal) is a run of
//! `size / slide` consecutive panes of `slide` each. Every event is counted once, into its
//! pane; a window's value is the merge of its panes. Copying each event into every window it
//! belongs to would cost `size / slide` updates per event (360 for 1 h every 10 s); panes cost
//! one update per event and one merge per emitted window.
//!
//! Lateness is decided per pane: a pane is *final* once the watermark minus the allowed
//! lateness has passed its end, and an event whose pane is final is late.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Why a window definition is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window of {size_ms} ms every {slide_ms} ms: {reason}")]
pub struct WindowError {
    pub size_ms: i64,
    pub slide_ms: i64,
    pub reason: &'static str,
}

/// Windows `[end - size, end)` for every `end` that is a multiple of `slide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hopping {
    size_ms: i64,
    slide_ms: i64,
}

impl Hopping {
    pub fn new(size_ms: i64, slide_ms: i64) -> Result<Self, WindowError> {
        let fail = |reason| {
            Err(WindowError {
                size_ms,
                slide_ms,
                reason,
            })
        };
        if slide_ms <= 0 || size_ms <= 0 {
            return fail("size and slide must be positive");
        }
        if size_ms % slide_ms != 0 {
            return fail("size must be a whole number of slides");
        }
        Ok(Self { size_ms, slide_ms })
    }

    pub fn tumbling(size_ms: i64) -> Result<Self, WindowError> {
        Self::new(size_ms, size_ms)
    }

    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    pub fn slide_ms(&self) -> i64 {
        self.slide_ms
    }

    /// Panes are one slide wide.
    pub fn pane_ms(&self) -> i64 {
        self.slide_ms
    }

    /// The newest window end at or before `time_ms`.
    pub fn last_end_at_or_before(&self, time_ms: i64) -> i64 {
        floor_to(time_ms, self.slide_ms)
    }
}

/// `time_ms` rounded down to a multiple of `unit_ms`, also for times before 1970.
pub fn floor_to(time_ms: i64, unit_ms: i64) -> i64 {
    time_ms.div_euclid(unit_ms) * unit_ms
}

/// Whether the pane holding `event_ms` is final at `watermark_ms`: its end is at or before
/// the watermark minus the allowed lateness, so an event for it comes too late.
pub fn is_late(event_ms: i64, pane_ms: i64, watermark_ms: i64, allowed_lateness_ms: i64) -> bool {
    floor_to(event_ms, pane_ms) + pane_ms <= watermark_ms - allowed_lateness_ms
}

/// A value that panes can be merged into.
pub trait Aggregate: Default {
    fn merge(&mut self, other: &Self);
}

impl Aggregate for u64 {
    fn merge(&mut self, other: &Self) {
        *self += other;
    }
}

impl Aggregate for model::trending::Counts {
    fn merge(&mut self, other: &Self) {
        self.add(other);
    }
}

/// Per-key aggregates per pane.
#[derive(Debug, Clone)]
pub struct Panes<K, A> {
    pane_ms: i64,
    panes: BTreeMap<i64, HashMap<K, A>>,
}

impl<K: Eq + Hash + Clone, A: Aggregate> Panes<K, A> {
    pub fn new(pane_ms: i64) -> Self {
        Self {
            pane_ms: pane_ms.max(1),
            panes: BTreeMap::new(),
        }
    }

    pub fn pane_ms(&self) -> i64 {
        self.pane_ms
    }

    /// The aggregate of `key` in the pane holding `event_ms`, for the caller to update.
    pub fn entry(&mut self, event_ms: i64, key: K) -> &mut A {
        self.panes
            .entry(floor_to(event_ms, self.pane_ms))
            .or_default()
            .entry(key)
            .or_default()
    }

    /// Merges the panes of the window ending at `end_ms`.
    pub fn window(&self, window: &Hopping, end_ms: i64) -> HashMap<K, A> {
        let mut merged: HashMap<K, A> = HashMap::new();
        for (_, pane) in self.panes.range(end_ms - window.size_ms()..end_ms) {
            for (key, value) in pane {
                match merged.get_mut(key) {
                    Some(total) => total.merge(value),
                    None => {
                        let mut total = A::default();
                        total.merge(value);
                        merged.insert(key.clone(), total);
                    }
                }
            }
        }
        merged
    }

    /// Drops panes starting before `start_ms`, which no window still needs.
    pub fn forget_before(&mut self, start_ms: i64) {
        self.panes = self.panes.split_off(&start_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_merge_of_its_panes() {
        let hop = Hopping::new(30, 10).expect("valid");
        let mut panes: Panes<&str, u64> = Panes::new(hop.pane_ms());
        for (time, key) in [
            (1, "a"),
            (12, "a"),
            (15, "b"),
            (29, "a"),
            (30, "b"),
            (-1, "a"),
        ] {
            *panes.entry(time, key) += 1;
        }
        let window = panes.window(&hop, 30);
        assert_eq!(window.get("a"), Some(&3));
        assert_eq!(window.get("b"), Some(&1));
        assert_eq!(panes.window(&hop, 40).get("b"), Some(&2));
        assert_eq!(
            panes.window(&hop, 10).get("a"),
            Some(&2),
            "-1 is in [-20, 10)"
        );
        panes.forget_before(10);
        assert_eq!(
            panes.window(&hop, 30).get("a"),
            Some(&2),
            "pane [0, 10) is gone"
        );
    }

    #[test]
    fn windows_must_be_whole_slides() {
        assert!(Hopping::new(25, 10).is_err());
        assert!(Hopping::new(10, 0).is_err());
        assert_eq!(Hopping::tumbling(5).map(|h| h.pane_ms()), Ok(5));
    }

    #[test]
    fn an_event_is_late_once_its_pane_is_final() {
        // Pane [10, 20), lateness 5: final when the watermark reaches 25.
        assert!(!is_late(15, 10, 24, 5));
        assert!(is_late(15, 10, 25, 5));
        assert!(is_late(-5, 10, 5, 5));
    }
}
