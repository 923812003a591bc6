//! The `trending` topic: what the trending job publishes and its serving state reads.
//!
//! The job counts interactions per event-time *pane* (a short fixed slice of event time) and
//! per *shard* (one input partition). A [`PaneRecord`] is one shard's counts for one pane, keyed
//! `pane/<pane_start>/<topic>/<partition>`, so a replay after a crash or a rebalance rewrites
//! the same key with the same value instead of adding to it, and log compaction keeps only the
//! newest. Partials per shard are what let several job instances split the partitions: whoever
//! reads the topic sums the shards of a pane and builds any sliding window from whole panes.
//! A [`ShardWatermark`] (key `watermark/<topic>/<partition>`) says how far a shard's event time
//! has progressed, so readers know which windows are complete.

use serde::{Deserialize, Serialize};

use crate::{DecodeError, MerchantId, ProductId, Topic};

/// Interactions with one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub views: u64,
    pub carts: u64,
    pub orders: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.views += other.views;
        self.carts += other.carts;
        self.orders += other.orders;
    }

    /// Removes `other`, which must have been added before (a replaced partial).
    pub fn subtract(&mut self, other: &Counts) {
        self.views = self.views.saturating_sub(other.views);
        self.carts = self.carts.saturating_sub(other.carts);
        self.orders = self.orders.saturating_sub(other.orders);
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// Which slice of the audience a count belongs to. Category scopes are not counted by the job:
/// readers derive them from the global counts and the catalog, so a late catalog record never
/// changes what the job wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "key", rename_all = "snake_case")]
pub enum Scope {
    Global,
    Merchant(MerchantId),
    /// The district of the delivery pincode, per the India Post directory.
    City(String),
}

/// One product's counts within one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedCounts {
    pub scope: Scope,
    pub product_id: ProductId,
    pub counts: Counts,
}

/// One input partition, the unit of job state, checkpoints and partial output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub topic: Topic,
    pub partition: i32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One shard's counts for the pane `[pane_start, pane_start + pane_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaneRecord {
    pub shard: Shard,
    pub pane_start: i64,
    pub pane_ms: i64,
    /// No later version of this record will follow: the allowed lateness has passed.
    pub is_final: bool,
    /// Sorted by scope then product, so equal state always encodes to equal bytes.
    pub counts: Vec<ScopedCounts>,
}

/// How far one shard's event time has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardWatermark {
    pub shard: Shard,
    /// Every event of this shard at or after this time is still to come; `None` before the
    /// shard's first event.
    pub watermark_ms: Option<i64>,
    /// The newest event time the shard has shown.
    pub newest_event_ms: Option<i64>,
    /// The shard has had nothing to read for a while and should not hold back windows; it
    /// has published every pane it holds.
    pub idle: bool,
}

/// A record on the `trending` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrendingRecord {
    Pane(PaneRecord),
    Watermark(ShardWatermark),
}

impl TrendingRecord {
    /// The record's Kafka key: one key per pane and shard, or per shard for watermarks.
    pub fn key(&self) -> String {
        match self {
            TrendingRecord::Pane(pane) => format!(
                "pane/{}/{}/{}",
                pane.pane_start, pane.shard.topic, pane.shard.partition
            ),
            TrendingRecord::Watermark(mark) => {
                format!("watermark/{}/{}", mark.shard.topic, mark.shard.partition)
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys; serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::from_serde("trending record", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pane_record_round_trips_and_is_keyed_by_pane_and_shard() {
        let record = TrendingRecord::Pane(PaneRecord {
            shard: Shard {
                topic: Topic::Clicks,
                partition: 2,
            },
            pane_start: 10_000,
            pane_ms: 10_000,
            is_final: false,
            counts: vec![ScopedCounts {
                scope: Scope::City("Pune".into()),
                product_id: ProductId::new("p-1"),
                counts: Counts {
                    views: 1,
                    carts: 0,
                    orders: 2,
                },
            }],
        });
        assert_eq!(record.key(), "pane/10000/clicks/2");
        assert_eq!(TrendingRecord::decode(&record.encode()).ok(), Some(record));
        assert!(TrendingRecord::decode(b"{\"kind\":\"pane\"}").is_err());
    }
}
