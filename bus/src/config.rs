use std::collections::BTreeMap;
use std::path::PathBuf;

use model::{Topic, TopicKind};
use serde::Deserialize;

use crate::{BusError, Result};

/// How to reach Kafka and how to lay out the topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Kafka bootstrap servers, `host:port[,host:port]`. Unset: the binary starts its embedded
    /// Kafka-API broker and uses that.
    pub bootstrap_servers: Option<String>,
    /// Where the embedded broker listens. Port 0 picks a free port.
    pub embedded_listen: String,
    /// Directory where the embedded broker keeps its log across restarts. Unset: memory only.
    pub embedded_data_dir: Option<PathBuf>,
    /// How often the embedded broker writes its log to `embedded_data_dir`, in milliseconds. A
    /// clean shutdown always writes; a hard kill loses at most this much.
    pub embedded_autosave_ms: u64,
    /// Prepended to every topic name and consumer-group id, so several deployments (or tests)
    /// share a cluster without reading each other's records or joining each other's groups.
    pub topic_prefix: String,
    /// Partitions of each topic created at start-up.
    pub partitions: i32,
    /// Replication factor of each topic created at start-up (1 for a single broker).
    pub replication_factor: i32,
    /// How long event topics keep their records, in milliseconds, unless
    /// `topics.<name>.retention_ms` says otherwise. Reference topics (the catalog) never
    /// expire; derived ones (trending) use this too.
    pub retention_ms: i64,
    /// How many bytes each partition of an event or derived topic keeps at most (older
    /// records go first), unless `topics.<name>.retention_bytes` says otherwise. A bound on
    /// the embedded broker's memory however fast records come; time retention alone is not.
    pub retention_bytes: i64,
    /// Settings of one topic, by its name without prefix, e.g.
    /// `bus.topics.clicks.retention_ms = 86400000`.
    pub topics: BTreeMap<String, TopicSettings>,
    /// librdkafka properties passed verbatim to every client, e.g. `security.protocol`,
    /// `sasl.mechanisms`, `ssl.ca.location`, `compression.type`. They override our defaults.
    pub properties: BTreeMap<String, String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: None,
            embedded_listen: "127.0.0.1:9092".into(),
            embedded_data_dir: None,
            embedded_autosave_ms: 30_000,
            topic_prefix: String::new(),
            partitions: 3,
            replication_factor: 1,
            retention_ms: 60 * 60 * 1000,
            retention_bytes: 128 << 20,
            topics: BTreeMap::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// What one topic may override, under `bus.topics.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// How long the topic keeps records, in milliseconds. Unset: `bus.retention_ms`.
    pub retention_ms: Option<i64>,
    /// How many bytes each partition keeps at most; older records go first. Unset:
    /// `bus.retention_bytes`.
    pub retention_bytes: Option<i64>,
}

/// The longest a log segment stays open. Retention only ever deletes closed segments, so a
/// segment must close well within the retention time for the retention to mean anything.
const MAX_SEGMENT_MS: i64 = 24 * 60 * 60 * 1000;

impl BusConfig {
    /// The topic-level settings `topic` must have on the cluster, by Kafka config name: its
    /// cleanup policy from [`Topic::kind`], retention from this config.
    pub fn topic_settings(&self, topic: Topic) -> Vec<(&'static str, String)> {
        let settings = self.topics.get(topic.name()).cloned().unwrap_or_default();
        let retention_ms = settings.retention_ms.unwrap_or(self.retention_ms);
        let retention_bytes = settings.retention_bytes.unwrap_or(self.retention_bytes);
        let segment_ms = (retention_ms / 10).clamp(100, MAX_SEGMENT_MS);
        match topic.kind() {
            TopicKind::Event => vec![
                ("cleanup.policy", "delete".to_owned()),
                ("retention.ms", retention_ms.to_string()),
                ("retention.bytes", retention_bytes.to_string()),
                ("segment.ms", segment_ms.to_string()),
            ],
            // Never expired: compaction alone bounds it, to one record per key. Segments
            // still close hourly so the cleaner can compact them.
            TopicKind::Reference => vec![
                ("cleanup.policy", "compact".to_owned()),
                ("retention.ms", "-1".to_owned()),
                ("retention.bytes", "-1".to_owned()),
                ("segment.ms", (60 * 60 * 1000).to_string()),
            ],
            TopicKind::Derived => vec![
                ("cleanup.policy", "compact,delete".to_owned()),
                ("retention.ms", retention_ms.to_string()),
                ("retention.bytes", retention_bytes.to_string()),
                ("segment.ms", segment_ms.to_string()),
            ],
        }
    }

    pub fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.name())
    }

    /// The topic a prefixed name belongs to, if it is one of ours.
    pub fn topic_of(&self, name: &str) -> Option<Topic> {
        name.strip_prefix(&self.topic_prefix)
            .and_then(Topic::from_name)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(BusError::Config(message));
        if self.retention_bytes < 1 {
            return fail(format!(
                "bus.retention_bytes must be positive, got {}",
                self.retention_bytes
            ));
        }
        if self.partitions < 1 {
            return fail(format!(
                "bus.partitions must be at least 1, got {}",
                self.partitions
            ));
        }
        if self.replication_factor < 1 {
            return fail(format!(
                "bus.replication_factor must be at least 1, got {}",
                self.replication_factor
            ));
        }
        if self.retention_ms < 1 {
            return fail(format!(
                "bus.retention_ms must be positive, got {}",
                self.retention_ms
            ));
        }
        for (name, settings) in &self.topics {
            let Some(topic) = Topic::from_name(name) else {
                let known: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
                return fail(format!(
                    "bus.topics.{name}: no such topic; topics are {}",
                    known.join(", ")
                ));
            };
            if topic.kind() == TopicKind::Reference && *settings != TopicSettings::default() {
                return fail(format!(
                    "bus.topics.{name}: {name} is a reference topic, compacted and never \
                     expired so every stage can rebuild it; it takes no retention settings"
                ));
            }
            if let Some(ms) = settings.retention_ms
                && ms < 1
            {
                return fail(format!(
                    "bus.topics.{name}.retention_ms must be positive, got {ms}"
                ));
            }
            if let Some(bytes) = settings.retention_bytes
                && bytes < 1
            {
                return fail(format!(
                    "bus.topics.{name}.retention_bytes must be positive, got {bytes}"
                ));
            }
        }
        if let Some(servers) = &self.bootstrap_servers
            && servers.trim().is_empty()
        {
            return fail(
                "bus.bootstrap_servers is empty: unset it to use the embedded broker".into(),
            );
        }
        if self.properties.contains_key("bootstrap.servers") {
            return fail(
                "set bus.bootstrap_servers, not bus.properties.\"bootstrap.servers\"".into(),
            );
        }
        let valid_prefix = self
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_prefix {
            return fail(format!(
                "bus.topic_prefix {:?} may only hold ASCII letters, digits, '.', '_' and '-'",
                self.topic_prefix
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting<'a>(settings: &'a [(&'static str, String)], key: &str) -> &'a str {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn each_kind_of_topic_gets_its_policy_and_retention() {
        let mut config = BusConfig {
            retention_ms: 3_600_000,
            ..BusConfig::default()
        };
        config.topics.insert(
            "clicks".into(),
            TopicSettings {
                retention_ms: Some(86_400_000),
                retention_bytes: Some(1 << 30),
            },
        );
        let catalog = config.topic_settings(Topic::Catalog);
        assert_eq!(setting(&catalog, "cleanup.policy"), "compact");
        assert_eq!(setting(&catalog, "retention.ms"), "-1");
        let clicks = config.topic_settings(Topic::Clicks);
        assert_eq!(setting(&clicks, "cleanup.policy"), "delete");
        assert_eq!(setting(&clicks, "retention.ms"), "86400000");
        assert_eq!(setting(&clicks, "retention.bytes"), "1073741824");
        let orders = config.topic_settings(Topic::Orders);
        assert_eq!(setting(&orders, "retention.ms"), "3600000");
        assert_eq!(
            setting(&orders, "retention.bytes"),
            "134217728",
            "every event topic is bounded in bytes too"
        );
        assert_eq!(setting(&catalog, "retention.bytes"), "-1");
        assert_eq!(setting(&orders, "segment.ms"), "360000");
        let trending = config.topic_settings(Topic::Trending);
        assert_eq!(setting(&trending, "cleanup.policy"), "compact,delete");
    }

    #[test]
    fn retention_of_a_reference_topic_or_an_unknown_topic_is_refused() {
        let mut config = BusConfig::default();
        config.topics.insert(
            "catalog".into(),
            TopicSettings {
                retention_ms: Some(1000),
                retention_bytes: None,
            },
        );
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("reference topic"), "{message}");
        let mut config = BusConfig::default();
        config
            .topics
            .insert("clickz".into(), TopicSettings::default());
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("bus.topics.clickz: no such topic"),
            "{message}"
        );
    }
}
