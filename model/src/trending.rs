//! The `trending` topic: what the trending job publishes and its serving state reads.
//!
//! The job counts interactions per event-time *pane* (a short fixed slice of event time) and
//! per *shard* (one input partition). A [`PaneRecord`] is one shard's counts for one pane, one
//! scope and one of [`BUCKETS`] fixed slices of the product ids, keyed
//! `pane/<pane_start>/<topic>/<partition>/<bucket>/<scope>`, so a replay after a crash or a
//! rebalance rewrites the same key with the same value instead of adding to it, log compaction
//! keeps only the newest, and no record grows past the broker's message size however many
//! products a pane holds (a bucket always holds the same products, so versions replace each
//! other exactly). Partials per shard are what let several job instances split the partitions: whoever
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

/// Product-id slices per pane, shard and scope.
pub const BUCKETS: u16 = 16;

/// The bucket of the record that carries a pane's [`PaneRecord::other`] counts: past the
/// product buckets, so it is keyed and compacted like them and never holds products.
pub const OTHER_BUCKET: u16 = BUCKETS;

/// The slice `product` belongs to: FNV-1a of its id, the same in every process and version.
pub fn bucket_of(product: &ProductId) -> u16 {
    let hash = product
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % u64::from(BUCKETS)) as u16
}

/// One product's counts, on the wire as `[product_id, views, carts, orders]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCounts(pub ProductId, pub u64, pub u64, pub u64);

impl ProductCounts {
    pub fn new(product: ProductId, counts: Counts) -> Self {
        Self(product, counts.views, counts.carts, counts.orders)
    }

    pub fn product_id(&self) -> &ProductId {
        &self.0
    }

    pub fn counts(&self) -> Counts {
        Counts {
            views: self.1,
            carts: self.2,
            orders: self.3,
        }
    }
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

/// One shard's counts for the pane `[pane_start, pane_start + pane_ms)`, one scope and one
/// bucket of products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaneRecord {
    pub shard: Shard,
    pub pane_start: i64,
    pub pane_ms: i64,
    /// No later version of this record will follow: the allowed lateness has passed.
    pub is_final: bool,
    pub scope: Scope,
    pub bucket: u16,
    /// Sorted by product, so equal state always encodes to equal bytes.
    pub products: Vec<ProductCounts>,
    /// Interactions with products past the job's cap of products per pane and scope, summed;
    /// only on the record of bucket [`OTHER_BUCKET`]. The cap keeps a flood of made-up
    /// product ids from growing the job and its readers without bound.
    #[serde(default, skip_serializing_if = "Counts::is_zero")]
    pub other: Counts,
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
            TrendingRecord::Pane(pane) => {
                let scope = match &pane.scope {
                    Scope::Global => "global".to_owned(),
                    Scope::Merchant(merchant) => format!("merchant:{merchant}"),
                    Scope::City(city) => format!("city:{city}"),
                };
                format!(
                    "pane/{}/{}/{}/{}/{scope}",
                    pane.pane_start, pane.shard.topic, pane.shard.partition, pane.bucket
                )
            }
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
            scope: Scope::City("Pune".into()),
            bucket: 3,
            products: vec![ProductCounts(ProductId::new("p-1"), 1, 0, 2)],
            other: Counts::default(),
        });
        assert_eq!(record.key(), "pane/10000/clicks/2/3/city:Pune");
        let encoded = String::from_utf8_lossy(&record.encode()).into_owned();
        assert!(encoded.contains("[\"p-1\",1,0,2]"));
        // Records without overflow stay as they were before the cap existed.
        assert!(!encoded.contains("other"), "{encoded}");
        assert_eq!(
            bucket_of(&ProductId::new("p-1")),
            bucket_of(&ProductId::new("p-1"))
        );
        assert_eq!(TrendingRecord::decode(&record.encode()).ok(), Some(record));
        assert!(TrendingRecord::decode(b"{\"kind\":\"pane\"}").is_err());
    }

    #[test]
    fn the_other_record_has_a_key_of_its_own_and_round_trips() {
        let record = TrendingRecord::Pane(PaneRecord {
            shard: Shard {
                topic: Topic::Orders,
                partition: 0,
            },
            pane_start: 20_000,
            pane_ms: 10_000,
            is_final: true,
            scope: Scope::Global,
            bucket: OTHER_BUCKET,
            products: Vec::new(),
            other: Counts {
                views: 7,
                carts: 2,
                orders: 1,
            },
        });
        assert_eq!(record.key(), "pane/20000/orders/0/16/global");
        assert_eq!(TrendingRecord::decode(&record.encode()).ok(), Some(record));
    }
}
