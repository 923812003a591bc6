//! Session windows: per key, events less than `gap_ms` apart belong to one session, which ends
//! `gap_ms` after its last event. Out-of-order events may bridge two sessions into one, so a
//! session is only emitted once the watermark minus the allowed lateness has passed its end;
//! an event that could only belong to an emitted session is late.

use std::collections::HashMap;
use std::hash::Hash;

use super::window::Aggregate;

/// One session of one key: `[start_ms, end_ms)` where `end_ms` is the last event plus the gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<A> {
    pub start_ms: i64,
    pub end_ms: i64,
    pub value: A,
}

/// The event could only have joined a session that was already emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

/// Open sessions per key.
#[derive(Debug, Clone)]
pub struct Sessions<K, A> {
    gap_ms: i64,
    allowed_lateness_ms: i64,
    open: HashMap<K, Vec<Session<A>>>,
}

impl<K: Eq + Hash + Clone, A: Aggregate + Clone> Sessions<K, A> {
    pub fn new(gap_ms: i64, allowed_lateness_ms: i64) -> Self {
        Self {
            gap_ms: gap_ms.max(1),
            allowed_lateness_ms: allowed_lateness_ms.max(0),
            open: HashMap::new(),
        }
    }

    /// Adds one event; merges every open session it touches.
    pub fn add(
        &mut self,
        key: K,
        event_ms: i64,
        value: &A,
        watermark_ms: Option<i64>,
    ) -> Result<(), Late> {
        if watermark_ms.is_some_and(|wm| event_ms + self.gap_ms <= wm - self.allowed_lateness_ms) {
            return Err(Late);
        }
        let sessions = self.open.entry(key).or_default();
        let mut merged = Session {
            start_ms: event_ms,
            end_ms: event_ms + self.gap_ms,
            value: A::default(),
        };
        merged.value.merge(value);
        sessions.retain(|session| {
            let touches = session.start_ms <= merged.end_ms && merged.start_ms <= session.end_ms;
            if touches {
                merged.start_ms = merged.start_ms.min(session.start_ms);
                merged.end_ms = merged.end_ms.max(session.end_ms);
                merged.value.merge(&session.value);
            }
            !touches
        });
        sessions.push(merged);
        Ok(())
    }

    /// Removes and returns the sessions no event can change any more, oldest first per key.
    pub fn close(&mut self, watermark_ms: i64) -> Vec<(K, Session<A>)> {
        let cutoff = watermark_ms - self.allowed_lateness_ms;
        let mut closed = Vec::new();
        self.open.retain(|key, sessions| {
            sessions.sort_by_key(|s| s.start_ms);
            sessions.retain(|session| {
                let done = session.end_ms <= cutoff;
                if done {
                    closed.push((key.clone(), session.clone()));
                }
                !done
            });
            !sessions.is_empty()
        });
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(i64, u64)], lateness: i64) -> (Vec<Session<u64>>, usize) {
        let mut sessions: Sessions<&str, u64> = Sessions::new(10, lateness);
        let mut newest = i64::MIN;
        let mut late = 0;
        let mut closed = Vec::new();
        for (time, value) in events {
            newest = newest.max(*time);
            if sessions.add("k", *time, value, Some(newest)).is_err() {
                late += 1;
            }
            closed.extend(sessions.close(newest).into_iter().map(|(_, s)| s));
        }
        closed.extend(sessions.close(i64::MAX / 2).into_iter().map(|(_, s)| s));
        closed.sort_by_key(|s| s.start_ms);
        (closed, late)
    }

    #[test]
    fn out_of_order_events_within_the_lateness_give_the_sessions_of_sorted_input() {
        let sorted = [(0, 1), (5, 1), (9, 1), (30, 1), (35, 1), (60, 1)];
        let shuffled = [(0, 1), (9, 1), (5, 1), (35, 1), (30, 1), (60, 1)];
        let (expected, _) = run(&sorted, 0);
        assert_eq!(run(&shuffled, 20), (expected.clone(), 0));
        assert_eq!(
            expected
                .iter()
                .map(|s| (s.start_ms, s.end_ms, s.value))
                .collect::<Vec<_>>(),
            vec![(0, 19, 3), (30, 45, 2), (60, 70, 1)]
        );
    }

    #[test]
    fn a_bridging_event_merges_two_sessions_and_a_too_late_one_is_refused() {
        let (sessions, late) = run(&[(0, 1), (15, 1), (8, 1)], 30);
        assert_eq!(late, 0);
        assert_eq!(sessions.len(), 1, "8 bridges [0,10) and [15,25)");
        assert_eq!(
            (sessions[0].start_ms, sessions[0].end_ms, sessions[0].value),
            (0, 25, 3)
        );
        let (_, late) = run(&[(0, 1), (100, 1), (5, 1)], 10);
        assert_eq!(late, 1);
    }
}
