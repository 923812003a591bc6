//! Topic administration. Each topic's settings follow from its [`model::TopicKind`] and the
//! bus config ([`crate::BusConfig::topic_settings`]); start-up creates missing topics with
//! them and brings existing topics to them, so a reference topic created by an older build
//! with time retention stops expiring instead of silently losing the catalog.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use model::Topic;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::{Bus, BusError, Result};

/// One setting that start-up changed on an existing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Altered {
    pub topic: String,
    pub setting: &'static str,
    /// What the cluster had; `None` when it did not say.
    pub was: Option<String>,
    pub now: String,
}

impl Bus {
    /// Creates `topics` with the settings their kind and the config ask for, and alters the
    /// ones that exist with other settings. Returns what it altered (also logged).
    pub async fn ensure_topics(&self, topics: &[Topic]) -> Result<Vec<Altered>> {
        let admin = self.admin()?;
        let names: Vec<String> = topics.iter().map(|t| self.topic_name(*t)).collect();
        let wanted: Vec<Vec<(&'static str, String)>> = topics
            .iter()
            .map(|t| self.config.topic_settings(*t))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .zip(&wanted)
            .map(|(name, settings)| {
                settings.iter().fold(
                    NewTopic::new(
                        name,
                        self.config.partitions,
                        TopicReplication::Fixed(self.config.replication_factor),
                    ),
                    |new, (key, value)| new.set(key, value),
                )
            })
            .collect();
        let mut existing = Vec::new();
        for (index, result) in admin
            .create_topics(&new_topics, &options())
            .await?
            .into_iter()
            .enumerate()
        {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(index),
                Err((topic, code)) => {
                    return Err(BusError::Admin {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        let mut altered = Vec::new();
        for index in existing {
            altered.extend(
                self.align_topic(&admin, &names[index], &wanted[index])
                    .await?,
            );
        }
        for change in &altered {
            tracing::warn!(
                topic = %change.topic,
                setting = change.setting,
                was = change.was.as_deref().unwrap_or("unset"),
                now = %change.now,
                "altered an existing topic to the settings this deployment asks for"
            );
        }
        Ok(altered)
    }

    /// The topic's settings as the cluster reports them, by Kafka config name.
    pub async fn topic_config(&self, topic: Topic) -> Result<BTreeMap<String, String>> {
        let name = self.topic_name(topic);
        let current = describe(&self.admin()?, &name).await?;
        Ok(current
            .into_iter()
            .filter_map(|(key, (value, _))| Some((key, value?)))
            .collect())
    }

    /// The id the cluster reports for itself (`None` if it reports none within 10 s): the
    /// name of the log that offsets stored anywhere refer to.
    pub async fn cluster_id(&self) -> Result<Option<String>> {
        let admin = self.admin()?;
        // librdkafka blocks the calling thread for this.
        tokio::task::spawn_blocking(move || admin.inner().fetch_cluster_id(Duration::from_secs(10)))
            .await
            .map_err(|_| BusError::Kafka(rdkafka::error::KafkaError::Canceled))
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        Ok(self.client_config(&[]).create()?)
    }

    /// Alters `name` so each of `wanted` holds. AlterConfigs replaces a topic's whole set of
    /// overrides, so the overrides an operator set on other keys are sent again unchanged.
    async fn align_topic(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        name: &str,
        wanted: &[(&'static str, String)],
    ) -> Result<Vec<Altered>> {
        let current = describe(admin, name).await?;
        let changes: Vec<Altered> = wanted
            .iter()
            .filter(|(key, value)| {
                current.get(*key).and_then(|(v, _)| v.as_deref()) != Some(value.as_str())
            })
            .map(|(key, value)| Altered {
                topic: name.to_owned(),
                setting: key,
                was: current.get(*key).and_then(|(v, _)| v.clone()),
                now: value.clone(),
            })
            .collect();
        if changes.is_empty() {
            return Ok(changes);
        }
        let mut entries: HashMap<&str, &str> = current
            .iter()
            .filter(|(_, (_, overridden))| *overridden)
            .filter_map(|(key, (value, _))| Some((key.as_str(), value.as_deref()?)))
            .collect();
        for (key, value) in wanted {
            entries.insert(key, value);
        }
        let alter = AlterConfig {
            specifier: ResourceSpecifier::Topic(name),
            entries,
        };
        let refused = |reason: String| BusError::Admin {
            topic: name.to_owned(),
            reason: format!(
                "it exists with {} and altering it failed: {reason}; alter the topic by hand \
                 or point bus.topic_prefix at new topics",
                changes
                    .iter()
                    .map(|c| format!(
                        "{}={} (wanted {})",
                        c.setting,
                        c.was.as_deref().unwrap_or("unset"),
                        c.now
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        match admin.alter_configs([&alter], &options()).await {
            Ok(results) => {
                for result in results {
                    if let Err((_, code)) = result {
                        return Err(refused(code.to_string()));
                    }
                }
            }
            Err(error) => return Err(refused(error.to_string())),
        }
        Ok(changes)
    }
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Each setting of topic `name`: its value, and whether it is an override on the topic
/// (rather than a broker or built-in default).
async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
) -> Result<HashMap<String, (Option<String>, bool)>> {
    let specifier = ResourceSpecifier::Topic(name);
    let mut results = admin.describe_configs([&specifier], &options()).await?;
    let resource = match results.pop() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => {
            return Err(BusError::Admin {
                topic: name.to_owned(),
                reason: format!("describing its settings failed: {code}"),
            });
        }
        None => {
            return Err(BusError::Admin {
                topic: name.to_owned(),
                reason: "describing its settings returned nothing".into(),
            });
        }
    };
    Ok(resource
        .entries
        .into_iter()
        .map(|entry| {
            let overridden = entry.source == ConfigSource::DynamicTopic;
            (entry.name, (entry.value, overridden))
        })
        .collect())
}
