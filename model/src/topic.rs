//! Topic names and what keys their partitions.

use std::fmt;

/// The topics stages meet at. A deployment may prefix the names (tests do, to stay apart on a
/// shared broker); the bus applies the prefix, so stages only ever name a `Topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Orders,
    Payments,
    Shipments,
    Inventory,
    Catalog,
    Searches,
    Clicks,
    /// Customer notifications as sent, one per order state change.
    Notifications,
    /// The trending job's partial counts per pane and input partition (compacted); see
    /// [`crate::trending`].
    Trending,
    /// Dead letters: records no consumer could use, with the original bytes and a reason.
    Dlq,
}

/// Which id an event's Kafka key holds, so that everything about one order (or product, or
/// session) lands on one partition and is read in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    OrderId,
    ProductId,
    SessionId,
    /// Dead letters keep the key of the record they carry.
    Original,
    /// A derived output is keyed by what it is about (e.g. pane and input partition), so a
    /// replay overwrites it.
    Output,
}

impl Topic {
    pub const ALL: [Topic; 10] = [
        Topic::Orders,
        Topic::Payments,
        Topic::Shipments,
        Topic::Inventory,
        Topic::Catalog,
        Topic::Searches,
        Topic::Clicks,
        Topic::Notifications,
        Topic::Trending,
        Topic::Dlq,
    ];

    /// The topic's name before any deployment prefix.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Orders => "orders",
            Topic::Payments => "payments",
            Topic::Shipments => "shipments",
            Topic::Inventory => "inventory",
            Topic::Catalog => "catalog",
            Topic::Searches => "searches",
            Topic::Clicks => "clicks",
            Topic::Notifications => "notifications",
            Topic::Trending => "trending",
            Topic::Dlq => "dlq",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }

    /// Payments are keyed by order so a payment follows its order; payouts, which belong to no
    /// order, are keyed by payout id.
    pub fn partition_key(self) -> PartitionKey {
        match self {
            Topic::Orders | Topic::Payments | Topic::Shipments | Topic::Notifications => {
                PartitionKey::OrderId
            }
            Topic::Inventory | Topic::Catalog => PartitionKey::ProductId,
            Topic::Searches | Topic::Clicks => PartitionKey::SessionId,
            Topic::Trending => PartitionKey::Output,
            Topic::Dlq => PartitionKey::Original,
        }
    }

    /// Whether the topic holds the latest value per key (log compaction) rather than a
    /// history: derived outputs whose replays rewrite a key.
    pub fn is_compacted(self) -> bool {
        matches!(self, Topic::Trending)
    }
}

impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Topic::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown topic {name:?}")))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
