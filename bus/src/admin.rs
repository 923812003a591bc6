use std::time::Duration;

use model::Topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::{Bus, BusError, Result};

impl Bus {
    /// Creates `topics` with the configured partitions, replication and retention (and log
    /// compaction where [`Topic::is_compacted`]); topics that already exist are left as they are.
    pub async fn ensure_topics(&self, topics: &[Topic]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client_config(&[]).create()?;
        let names: Vec<String> = topics.iter().map(|t| self.topic_name(*t)).collect();
        let retention = self.config.retention_ms.to_string();
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .zip(topics)
            .map(|(name, topic)| {
                let new = NewTopic::new(
                    name,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                )
                .set("retention.ms", &retention);
                // Compacted topics keep the newest value per key; time retention still applies
                // so windows older than any reader needs disappear.
                if topic.is_compacted() {
                    new.set("cleanup.policy", "compact,delete")
                } else {
                    new
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Admin {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}
