//! Duplicate removal by `event_id`, per input partition, within a horizon of offsets.
//!
//! Why: the outbox relay and the collector publish at least once. A relay killed between the
//! broker's acknowledgement and its stamp publishes the same rows again; a client resends a
//! batch after a 503 that came after a partial enqueue. Either duplicate carries the same
//! `event_id` and the same Kafka key, so it lands on the same partition as the original, a
//! little later. A record is a duplicate when its id occurs among the partition's records in
//! the `horizon` offsets before it; each stage keeps, per partition it owns, the ids of those
//! records with the offset each was last seen at.
//!
//! Exactness: the verdict on a record, and the set at any position, depend only on the
//! partition's records in the `horizon` offsets before it. So a restarted owner gets the very
//! same set either from a checkpoint saved with its state (stream jobs) or by reading the
//! records in `[position - horizon, position)` again before it resumes (the lakehouse, whose
//! commit holds no such state): a replay sees the same ids the first run saw. (Were only
//! first sightings remembered, a re-read window would miss that a record in it was itself a
//! duplicate of one before it.) State built past a position that was never committed is cut
//! back with [`Dedup::forget_from`] instead of dropping records that were never applied.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The recent event ids of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    horizon: i64,
    /// Every sighting in the horizon, in offset order; the oldest leave first. A sighting
    /// is current when it is its id's latest one.
    order: VecDeque<(Uuid, i64)>,
    /// Each id's latest sighting.
    seen: HashMap<Uuid, i64>,
}

/// The saved form of a [`Dedup`]: ids with their offsets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSnapshot {
    pub ids: Vec<(Uuid, i64)>,
}

impl Dedup {
    /// Keeps the ids first seen within the last `horizon` offsets (at least one).
    pub fn new(horizon: i64) -> Self {
        Self {
            horizon: horizon.max(1),
            order: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    /// True when `id` does not occur in the `horizon` offsets before `offset`; false for a
    /// duplicate, which the caller drops. Either way the sighting is remembered.
    pub fn first_seen(&mut self, id: Uuid, offset: i64) -> bool {
        self.forget_before(offset - self.horizon);
        let first = self.seen.insert(id, offset).is_none();
        self.order.push_back((id, offset));
        // Keep exactly what the next position needs, so the state after a record is the same
        // whether it was built record by record or read again from the window.
        self.forget_before(offset + 1 - self.horizon);
        first
    }

    /// Drops the sightings at offsets below `offset`.
    fn forget_before(&mut self, offset: i64) {
        while let Some(&(old, at)) = self.order.front() {
            if at >= offset {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
    }

    /// The first offset whose records a restarted owner must read again to rebuild the set
    /// it would have at `position`.
    pub fn window_start(&self, position: i64) -> i64 {
        (position - self.horizon).max(0)
    }

    /// Forgets the sightings at `offset` or later: records that were never committed, which a
    /// replay will see again.
    pub fn forget_from(&mut self, offset: i64) {
        while self.order.back().is_some_and(|(_, at)| *at >= offset) {
            self.order.pop_back();
        }
        self.seen = self.order.iter().copied().collect();
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    pub fn snapshot(&self) -> DedupSnapshot {
        DedupSnapshot {
            ids: self
                .order
                .iter()
                .filter(|(id, at)| self.seen.get(id) == Some(at))
                .copied()
                .collect(),
        }
    }

    /// Restores a snapshot (ids that have left the horizon leave at the next record).
    pub fn restore(horizon: i64, snapshot: DedupSnapshot) -> Self {
        let mut dedup = Self::new(horizon);
        for (id, offset) in snapshot.ids {
            dedup.first_seen(id, offset);
        }
        dedup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_repeat_within_the_horizon_is_a_duplicate_and_an_older_one_is_not() {
        let mut dedup = Dedup::new(3);
        assert!(dedup.first_seen(id(1), 0));
        assert!(!dedup.first_seen(id(1), 1));
        assert!(dedup.first_seen(id(2), 2));
        // Offset 1 is among the 3 offsets before 4 (1, 2, 3): still a duplicate.
        assert!(!dedup.first_seen(id(1), 4));
        // Id 2 was last seen at 2, which is not among the 3 before 6 (3, 4, 5).
        assert!(dedup.first_seen(id(2), 6));
        assert!(!dedup.first_seen(id(2), 7));
        assert_eq!(
            dedup.len(),
            1,
            "only id 2 (offset 7): the next record looks at 5 to 7"
        );
        // A horizon of one offset catches a copy right after its original.
        let mut tight = Dedup::new(1);
        assert!(tight.first_seen(id(9), 0));
        assert!(!tight.first_seen(id(9), 1));
        assert!(tight.first_seen(id(9), 3));
        assert_eq!(dedup.window_start(8), 5);
        assert_eq!(dedup.window_start(2), 0);
    }

    #[test]
    fn ids_past_a_failed_commit_are_forgotten() {
        let mut dedup = Dedup::new(10);
        for n in 0..6 {
            assert!(dedup.first_seen(id(n), n as i64));
        }
        // Offsets 4 and 5 were applied but their commit failed: the replay must count them.
        dedup.forget_from(4);
        assert!(dedup.first_seen(id(4), 4));
        assert!(dedup.first_seen(id(5), 5));
        assert!(!dedup.first_seen(id(3), 6));
        // A repeat past the cut is forgotten too, and the earlier sighting counts again.
        assert!(!dedup.first_seen(id(0), 7));
        dedup.forget_from(7);
        assert!(!dedup.first_seen(id(0), 8));
    }

    #[test]
    fn reading_the_window_again_rebuilds_the_same_set_and_verdicts() {
        // A partition's ids with re-publishes, some of them chains of repeats.
        let ids = [1, 2, 1, 3, 4, 2, 5, 6, 5, 7, 5, 8, 9, 9, 3, 10, 11, 10, 12];
        let mut live = Dedup::new(4);
        let verdicts: Vec<bool> = ids
            .iter()
            .enumerate()
            .map(|(offset, n)| live.first_seen(id(*n), offset as i64))
            .collect();
        // A restart at any position: read the window again, then go on; same set, same verdicts.
        for position in 0..ids.len() as i64 {
            let mut live_at = Dedup::new(4);
            for offset in 0..position {
                live_at.first_seen(id(ids[offset as usize]), offset);
            }
            let mut rebuilt = Dedup::new(4);
            for offset in rebuilt.window_start(position)..position {
                rebuilt.first_seen(id(ids[offset as usize]), offset);
            }
            assert_eq!(rebuilt.snapshot(), live_at.snapshot(), "at {position}");
            for offset in position..ids.len() as i64 {
                assert_eq!(
                    rebuilt.first_seen(id(ids[offset as usize]), offset),
                    verdicts[offset as usize],
                    "restart at {position}, offset {offset}"
                );
            }
        }
    }

    #[test]
    fn a_snapshot_restores_the_same_verdicts() {
        let mut dedup = Dedup::new(4);
        for n in 0..6 {
            dedup.first_seen(id(n), n as i64);
        }
        let restored = Dedup::restore(4, dedup.snapshot());
        assert_eq!(restored, dedup);
        let text = serde_json::to_string(&dedup.snapshot()).unwrap();
        let back: DedupSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(Dedup::restore(4, back), dedup);
    }
}
