use std::collections::BTreeMap;
use std::path::PathBuf;

use model::Topic;
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
    /// `retention.ms` of created topics; bounds the embedded broker's memory.
    pub retention_ms: i64,
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
            properties: BTreeMap::new(),
        }
    }
}

impl BusConfig {
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
