//! Consumer-group membership with explicit offsets.
//!
//! Auto-commit and auto-store are off. The caller stores a record's offset once its effect is
//! applied ([`Consumer::store`]) and commits stored offsets when its outputs are durable
//! ([`Consumer::commit`]). When partitions are about to be revoked, the [`RebalanceHook`] runs
//! first (a job flushes and checkpoints there) and then the stored offsets are committed, all
//! before the partitions move to another member, so the next owner starts exactly where this
//! one stopped.

use std::sync::Arc;

use model::Topic;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};

use rdkafka::{ClientContext, TopicPartitionList};

use crate::{Bus, BusError, Result};

/// One partition of one topic, by its name on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Told about partition moves. Runs on the consumer's poll path, before the move takes
/// effect, so it must be quick and must not call back into the consumer.
pub trait RebalanceHook: Send + Sync + 'static {
    /// These partitions are now ours.
    fn assigned(&self, _partitions: &[TopicPartition]) {}
    /// These partitions are about to go; flush whatever depends on them now. Stored offsets
    /// are committed right after this returns.
    fn revoking(&self, _partitions: &[TopicPartition]) {}
}

/// A hook that does nothing, for consumers whose effects are applied record by record.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl RebalanceHook for NoHook {}

/// A consumed record, owned, with no Kafka types in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub topic: Topic,
    /// The topic's name on the cluster (with the deployment prefix).
    pub topic_name: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The broker or producer timestamp, in UTC ms, when the record has one.
    pub timestamp_ms: Option<i64>,
}

impl InRecord {
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

struct GroupContext {
    hook: Arc<dyn RebalanceHook>,
}

impl ClientContext for GroupContext {}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
        })
        .collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.hook.revoking(&partitions_of(list));
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => {
                    tracing::warn!(%error, "commit before revocation failed; the next owner replays from the previous commit")
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.hook.assigned(&partitions_of(list)),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// A member of a consumer group.
pub struct Consumer {
    /// Shared so commits, which block on a broker round trip, can run on a blocking thread.
    inner: Arc<StreamConsumer<GroupContext>>,
    /// Asks for log ends. Not `inner`: a broker answers a connection's requests in order,
    /// and `inner`'s connection is mostly holding a Fetch that waits for records (up to
    /// `fetch.wait.max.ms`), so every watermark query behind it waited too.
    ends: Arc<StreamConsumer>,
    config: crate::BusConfig,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Bus {
    /// Joins `group_id` (on the cluster: `bus.topic_prefix` + `group_id`, so deployments sharing
    /// a cluster keep their groups apart) and subscribes to `topics`. New groups start from the
    /// earliest offset.
    /// `properties` override the defaults and `bus.properties` for this consumer only
    /// (e.g. `auto.offset.reset=latest`, `partition.assignment.strategy=cooperative-sticky`).
    pub fn consumer(
        &self,
        group_id: &str,
        topics: &[Topic],
        hook: Arc<dyn RebalanceHook>,
        properties: &[(&str, &str)],
    ) -> Result<Consumer> {
        let group_id = format!("{}{group_id}", self.config.topic_prefix);
        let mut client = self.client_config(&[
            ("group.id", group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ]);
        for (key, value) in properties {
            client.set(*key, *value);
        }
        let inner: StreamConsumer<GroupContext> =
            client.create_with_context(GroupContext { hook })?;
        let names: Vec<String> = topics.iter().map(|t| self.topic_name(*t)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        inner.subscribe(&names)?;
        Ok(Consumer {
            inner: Arc::new(inner),
            ends: self.groupless_consumer()?,
            config: self.config.clone(),
        })
    }
}

impl Consumer {
    /// The next record. Waits until one arrives; cancel-safe.
    pub async fn recv(&self) -> Result<InRecord> {
        let message = self.inner.recv().await?;
        owned(&self.config, &message)
    }

    /// Marks `record` as done: the next commit covers it.
    pub fn store(&self, record: &InRecord) -> Result<()> {
        self.inner
            .store_offset(&record.topic_name, record.partition, record.offset)?;
        Ok(())
    }

    /// Marks everything before `next_offset` of one partition as done: the next commit says
    /// to resume there. For jobs that store offsets only when their state is checkpointed.
    pub fn store_next(&self, topic_name: &str, partition: i32, next_offset: i64) -> Result<()> {
        if next_offset > 0 {
            // librdkafka stores the given offset plus one.
            self.inner
                .store_offset(topic_name, partition, next_offset - 1)?;
        }
        Ok(())
    }

    /// Commits every stored offset and waits for the broker to confirm, on a blocking thread.
    pub async fn commit(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || commit_stored(&inner))
            .await
            .map_err(|_| BusError::Kafka(KafkaError::Canceled))?
    }

    /// The partitions this member owns right now.
    pub fn assignment(&self) -> Result<Vec<TopicPartition>> {
        Ok(partitions_of(&self.inner.assignment()?))
    }

    /// The committed offset (next record to read) of each owned partition, `None` where the
    /// group has committed nothing yet.
    pub fn committed(&self) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        let list = self.inner.committed(std::time::Duration::from_secs(10))?;
        Ok(list
            .elements()
            .iter()
            .map(|e| {
                let partition = TopicPartition {
                    topic: e.topic().to_owned(),
                    partition: e.partition(),
                };
                (partition, e.offset().to_raw().filter(|offset| *offset >= 0))
            })
            .collect())
    }

    /// The log-end offset (next offset to be written) of each owned partition, so a job can
    /// measure its lag against its own position. Asks the broker, on a blocking thread.
    pub async fn log_ends(&self) -> Result<Vec<(TopicPartition, i64)>> {
        let (inner, ends) = (Arc::clone(&self.inner), Arc::clone(&self.ends));
        tokio::task::spawn_blocking(move || log_ends_of(&inner, &ends))
            .await
            .map_err(|_| BusError::Kafka(KafkaError::Canceled))?
    }

    /// Commits stored offsets and leaves the group, so partitions move at once instead of
    /// after the session timeout.
    pub async fn close(self) -> Result<()> {
        let committed = self.commit().await;
        self.inner.unsubscribe();
        committed
    }
}

/// Copies a borrowed Kafka message into an [`InRecord`].
pub(crate) fn owned(
    config: &crate::BusConfig,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> Result<InRecord> {
    let topic_name = message.topic().to_owned();
    let topic = config
        .topic_of(&topic_name)
        .ok_or_else(|| BusError::UnknownTopic(topic_name.clone()))?;
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Ok(InRecord {
        topic,
        topic_name,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    })
}

/// The log-end offset of every partition assigned to `consumer`, asked through `asker` (a
/// client whose connection is not held by a waiting Fetch). Blocks on the broker.
pub(crate) fn log_ends_of<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    asker: &StreamConsumer,
) -> Result<Vec<(TopicPartition, i64)>> {
    let mut ends = Vec::new();
    for element in consumer.assignment()?.elements() {
        let (_, high) = asker.fetch_watermarks(
            element.topic(),
            element.partition(),
            std::time::Duration::from_secs(5),
        )?;
        ends.push((
            TopicPartition {
                topic: element.topic().to_owned(),
                partition: element.partition(),
            },
            high,
        ));
    }
    Ok(ends)
}

fn commit_stored(consumer: &StreamConsumer<GroupContext>) -> Result<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
