//! Nexmark query 5 ("hot items") on the runtime's panes, for the throughput benchmark: the
//! auctions with the most bids in each window of 10 s sliding by 2 s.
//!
//! Each bid updates one pane counter; when the watermark passes a window end the window's
//! panes are merged and the top auctions taken, then panes no later window needs are dropped.

use runtime::window::{Hopping, Panes};

/// The auctions with the most bids in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotItems {
    pub window_end_ms: i64,
    pub bids: u64,
    /// Every auction with that many bids, ascending.
    pub auctions: Vec<u64>,
}

/// The q5 operator over bids that arrive in event-time order (as Nexmark generates them).
#[derive(Debug)]
pub struct Query5 {
    window: Hopping,
    panes: Panes<u64, u64>,
    next_end: Option<i64>,
}

impl Query5 {
    pub fn new(window: Hopping) -> Self {
        Self {
            panes: Panes::new(window.pane_ms()),
            window,
            next_end: None,
        }
    }

    /// Counts one bid; returns the windows its time closed, oldest first.
    pub fn bid(&mut self, time_ms: i64, auction: u64, closed: &mut Vec<HotItems>) {
        let next_end = *self.next_end.get_or_insert_with(|| {
            self.window.last_end_at_or_before(time_ms) + self.window.slide_ms()
        });
        if time_ms >= next_end {
            self.close_through(time_ms, closed);
        }
        *self.panes.entry(time_ms, auction) += 1;
    }

    /// Emits every window ending at or before `watermark_ms`.
    pub fn close_through(&mut self, watermark_ms: i64, closed: &mut Vec<HotItems>) {
        while let Some(end) = self.next_end.filter(|end| *end <= watermark_ms) {
            let counts = self.panes.window(&self.window, end);
            let bids = counts.values().copied().max().unwrap_or(0);
            let mut auctions: Vec<u64> = counts
                .into_iter()
                .filter(|(_, n)| *n == bids && bids > 0)
                .map(|(auction, _)| auction)
                .collect();
            auctions.sort_unstable();
            closed.push(HotItems {
                window_end_ms: end,
                bids,
                auctions,
            });
            self.panes
                .forget_before(end - self.window.size_ms() + self.window.slide_ms());
            self.next_end = Some(end + self.window.slide_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_names_its_most_bid_auctions() {
        let mut query = Query5::new(Hopping::new(10_000, 2_000).expect("valid"));
        let mut closed = Vec::new();
        for (time, auction) in [
            (0, 1),
            (500, 2),
            (1_000, 2),
            (3_000, 1),
            (9_000, 1),
            (11_000, 3),
            (11_500, 3),
            (11_900, 3),
        ] {
            query.bid(time, auction, &mut closed);
        }
        query.close_through(12_000, &mut closed);
        let ends: Vec<(i64, u64, Vec<u64>)> = closed
            .iter()
            .map(|h| (h.window_end_ms, h.bids, h.auctions.clone()))
            .collect();
        assert_eq!(
            ends,
            vec![
                (2_000, 2, vec![2]),
                (4_000, 2, vec![1, 2]),
                (6_000, 2, vec![1, 2]),
                (8_000, 2, vec![1, 2]),
                (10_000, 3, vec![1]),
                (12_000, 3, vec![3]),
            ]
        );
    }
}
