//! Event-time progress. A shard's watermark is the newest event time it has shown minus the
//! bounded out-of-orderness: the claim that no event older than that is still to come (events
//! that break the claim are late). The job watermark is the minimum over its assigned shards,
//! so no window closes before every shard has passed it, except that a shard with nothing to
//! read for `idle_timeout_ms` of processing time stops holding the others back.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct Progress {
    newest_event_ms: Option<i64>,
    last_activity_ms: i64,
}

/// Per-shard event-time progress and the job watermark over it.
#[derive(Debug, Clone)]
pub struct Watermarks<S> {
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    shards: BTreeMap<S, Progress>,
}

impl<S: Ord + Clone> Watermarks<S> {
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self {
            max_out_of_orderness_ms: max_out_of_orderness_ms.max(0),
            idle_timeout_ms: idle_timeout_ms.max(0),
            shards: BTreeMap::new(),
        }
    }

    /// `shard` is now ours; `newest_event_ms` is what its restored state had seen.
    pub fn assign(&mut self, shard: S, newest_event_ms: Option<i64>, now_ms: i64) {
        self.shards.insert(
            shard,
            Progress {
                newest_event_ms,
                last_activity_ms: now_ms,
            },
        );
    }

    pub fn revoke(&mut self, shard: &S) {
        self.shards.remove(shard);
    }

    /// A record with `event_ms` arrived on `shard` at processing time `now_ms`.
    pub fn observe(&mut self, shard: &S, event_ms: i64, now_ms: i64) {
        if let Some(progress) = self.shards.get_mut(shard) {
            progress.newest_event_ms = Some(
                progress
                    .newest_event_ms
                    .map_or(event_ms, |newest| newest.max(event_ms)),
            );
            progress.last_activity_ms = now_ms;
        }
    }

    /// The shard's own watermark; `None` before its first event.
    pub fn shard_watermark(&self, shard: &S) -> Option<i64> {
        let progress = self.shards.get(shard)?;
        progress
            .newest_event_ms
            .map(|newest| newest - self.max_out_of_orderness_ms)
    }

    pub fn is_idle(&self, shard: &S, now_ms: i64) -> bool {
        self.shards
            .get(shard)
            .is_some_and(|progress| now_ms - progress.last_activity_ms >= self.idle_timeout_ms)
    }

    /// The minimum over active shards. A shard that has shown no event yet holds the
    /// watermark back (`None`) until it goes idle. When every shard is idle, the input has
    /// gone quiet and the newest shard watermark stands, so the last windows still close.
    pub fn job_watermark(&self, now_ms: i64) -> Option<i64> {
        let mut active = self
            .shards
            .iter()
            .filter(|(shard, _)| !self.is_idle(shard, now_ms))
            .peekable();
        if active.peek().is_none() {
            return self
                .shards
                .keys()
                .filter_map(|shard| self.shard_watermark(shard))
                .max();
        }
        let mut minimum: Option<i64> = None;
        for (shard, _) in active {
            let watermark = self.shard_watermark(shard)?;
            minimum = Some(minimum.map_or(watermark, |m| m.min(watermark)));
        }
        minimum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_watermark_is_the_slowest_shard_minus_the_bound() {
        let mut marks = Watermarks::new(100, 5_000);
        marks.assign("a", None, 0);
        marks.assign("b", None, 0);
        marks.observe(&"a", 10_000, 1);
        assert_eq!(marks.job_watermark(1), None, "b has shown nothing yet");
        marks.observe(&"b", 4_000, 2);
        assert_eq!(marks.job_watermark(2), Some(3_900));
        marks.observe(&"b", 3_000, 3);
        assert_eq!(
            marks.job_watermark(3),
            Some(3_900),
            "older events never move it back"
        );
        assert_eq!(marks.shard_watermark(&"a"), Some(9_900));
    }

    #[test]
    fn an_idle_shard_stops_holding_the_watermark_back() {
        let mut marks = Watermarks::new(0, 1_000);
        marks.assign("a", None, 0);
        marks.assign("b", Some(2_000), 0);
        marks.observe(&"a", 9_000, 500);
        assert_eq!(marks.job_watermark(500), Some(2_000));
        marks.observe(&"a", 9_500, 1_200);
        assert!(marks.is_idle(&"b", 1_200));
        assert_eq!(marks.job_watermark(1_200), Some(9_500));
        marks.observe(&"b", 3_000, 1_300);
        assert_eq!(marks.job_watermark(1_300), Some(3_000), "b is back");
        assert_eq!(
            marks.job_watermark(5_000),
            Some(9_500),
            "all idle: newest stands"
        );
        marks.revoke(&"a");
        assert_eq!(marks.job_watermark(5_000), Some(3_000));
    }
}
