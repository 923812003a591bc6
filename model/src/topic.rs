//! Topic names and how each keeps its records.

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
    /// API keys by hash, with role, merchant and whether revoked (compacted); see
    /// [`crate::keys`].
    ApiKeys,
    /// The delivery network: warehouses, couriers, their coverage by sorting district, and
    /// holidays by region (compacted).
    Logistics,
}

/// How a topic keeps its records, which decides its cleanup policy and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// A history of what happened (orders, clicks, dead letters): kept for a configured time
    /// (and size), then deleted.
    Event,
    /// The current state of each key (the catalog, the delivery network, API keys):
    /// compacted and never expired, so any stage started at any time rebuilds it whole.
    Reference,
    /// A stage's output that a replay rewrites key by key (trending panes): compacted so a
    /// rewrite replaces, and expired by time because old windows serve nobody.
    Derived,
}

impl Topic {
    pub const ALL: [Topic; 12] = [
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
        Topic::ApiKeys,
        Topic::Logistics,
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
            Topic::ApiKeys => "api-keys",
            Topic::Logistics => "logistics",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }

    /// How the topic keeps its records. (Which id keys a record is said per event type, in
    /// [`crate::EventType`]'s table: one topic carries events keyed by different ids.)
    pub fn kind(self) -> TopicKind {
        match self {
            Topic::Catalog | Topic::ApiKeys | Topic::Logistics => TopicKind::Reference,
            Topic::Trending => TopicKind::Derived,
            Topic::Orders
            | Topic::Payments
            | Topic::Shipments
            | Topic::Inventory
            | Topic::Searches
            | Topic::Clicks
            | Topic::Notifications
            | Topic::Dlq => TopicKind::Event,
        }
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
