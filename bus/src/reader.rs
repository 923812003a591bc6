//! A reader of whole topics outside any consumer group: every partition from the beginning,
//! nothing committed. Serving state that is rebuilt from a compacted topic, and dimension
//! tables every instance needs in full (the catalog), read this way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use model::Topic;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::owned;
use crate::{Bus, BusError, InRecord, Result};

/// Reads every partition of some topics from their first retained record.
pub struct Reader {
    inner: Arc<StreamConsumer>,
    /// Asks for log ends, off `inner`'s connection (see `Consumer`'s field of that name).
    ends: Arc<StreamConsumer>,
    config: crate::BusConfig,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Bus {
    /// A reader of every partition of `topics`, from the beginning. The topics must exist.
    pub async fn reader(&self, topics: &[Topic]) -> Result<Reader> {
        let inner = self.groupless_consumer()?;
        let names: Vec<String> = topics.iter().map(|t| self.topic_name(*t)).collect();
        let metadata_of = Arc::clone(&inner);
        let list = tokio::task::spawn_blocking(move || -> Result<TopicPartitionList> {
            let mut list = TopicPartitionList::new();
            for name in &names {
                let metadata = metadata_of.fetch_metadata(Some(name), Duration::from_secs(10))?;
                let partitions = metadata
                    .topics()
                    .iter()
                    .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
                    .collect::<Vec<_>>();
                if partitions.is_empty() {
                    return Err(BusError::UnknownTopic(name.clone()));
                }
                for partition in partitions {
                    list.add_partition_offset(name, partition, Offset::Beginning)?;
                }
            }
            Ok(list)
        })
        .await
        .map_err(|_| BusError::Kafka(KafkaError::Canceled))??;
        inner.assign(&list)?;
        Ok(Reader {
            inner,
            ends: self.groupless_consumer()?,
            config: self.config.clone(),
        })
    }
}

impl Bus {
    /// The records of one partition at offsets `[from, to)` that are still on the topic
    /// (retention or compaction may have removed some), read outside any group. A stage that
    /// rebuilds state which follows from recent records (duplicate removal) reads them this
    /// way when it takes a partition over.
    pub async fn read_range(
        &self,
        topic: Topic,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<InRecord>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let inner = self.groupless_consumer()?;
        let name = self.topic_name(topic);
        let watermarks_of = Arc::clone(&inner);
        let (low, high) = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                watermarks_of.fetch_watermarks(&name, partition, Duration::from_secs(10))
            })
            .await
            .map_err(|_| BusError::Kafka(KafkaError::Canceled))??
        };
        let (start, end) = (from.max(low), to.min(high));
        if start >= end {
            return Ok(Vec::new());
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&name, partition, Offset::Offset(start))?;
        inner.assign(&list)?;
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let message = tokio::time::timeout_at(deadline, inner.recv())
                .await
                .map_err(|_| {
                    BusError::Timeout(format!(
                        "reading {name}[{partition}] offsets {start}..{end} took over 60 s"
                    ))
                })??;
            let record = owned(&self.config, &message)?;
            if record.offset >= end {
                break;
            }
            let last = record.offset + 1 >= end;
            records.push(record);
            if last {
                break;
            }
        }
        Ok(records)
    }
}

impl Bus {
    /// A consumer for manual assignment, outside any group. librdkafka wants a group id even
    /// then; it is never joined or committed to, only made unique so such consumers cannot
    /// disturb each other.
    pub(crate) fn groupless_consumer(&self) -> Result<Arc<StreamConsumer>> {
        static CONSUMERS: AtomicU64 = AtomicU64::new(0);
        let group_id = format!(
            "{}reader-{}-{}",
            self.config.topic_prefix,
            std::process::id(),
            CONSUMERS.fetch_add(1, Ordering::Relaxed)
        );
        let inner: StreamConsumer = self
            .client_config(&[
                ("group.id", group_id.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ])
            .create()?;
        Ok(Arc::new(inner))
    }
}

impl Reader {
    /// The next record of any partition. Cancel-safe.
    pub async fn recv(&self) -> Result<InRecord> {
        let message = self.inner.recv().await?;
        owned(&self.config, &message)
    }

    /// The log-end offset of every partition read, so a follower knows when it has caught up
    /// with what was on the topic when it started. Asks the broker, on a blocking thread.
    pub async fn log_ends(&self) -> Result<Vec<(crate::TopicPartition, i64)>> {
        let (inner, ends) = (Arc::clone(&self.inner), Arc::clone(&self.ends));
        tokio::task::spawn_blocking(move || crate::consumer::log_ends_of(&inner, &ends))
            .await
            .map_err(|_| BusError::Kafka(KafkaError::Canceled))?
    }
}
