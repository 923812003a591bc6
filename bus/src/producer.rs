//! The idempotent producer. `enable.idempotence` makes the broker drop duplicates of a retried
//! batch and keeps per-partition order, so a record acknowledged once is in the log once.

use std::future::Future;
use std::time::Duration;

use model::dlq::{Reason, header};
use model::{Envelope, Topic, codec};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::{Bus, BusError, InRecord, Result};

/// Where the broker put an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// One record to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    pub topic: Topic,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// An idempotent, compressing producer. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    topic_prefix: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic_prefix", &self.topic_prefix)
            .finish()
    }
}

impl Bus {
    /// A producer with idempotence on, `acks=all`, lz4 compression and a short linger so
    /// records batch under load; any of these can be overridden in `bus.properties`.
    pub fn producer(&self) -> Result<Producer> {
        let inner = self
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                ("batch.num.messages", "10000"),
                ("queue.buffering.max.messages", "500000"),
                ("message.timeout.ms", "30000"),
            ])
            .create()?;
        Ok(Producer {
            inner,
            topic_prefix: self.config.topic_prefix.clone(),
        })
    }
}

impl Producer {
    /// Produces one record and waits for the broker's acknowledgement.
    pub async fn send(&self, record: OutRecord<'_>) -> Result<Delivered> {
        self.enqueue(record)?.await
    }

    /// Hands one record to the producer's queue and returns a future of its acknowledgement.
    /// Returns [`BusError::QueueFull`] at once when the queue is full, so a fast caller can
    /// await earlier acknowledgements and try again instead of blocking a thread.
    pub fn enqueue(
        &self,
        record: OutRecord<'_>,
    ) -> Result<impl Future<Output = Result<Delivered>> + Send + use<>> {
        let topic = format!("{}{}", self.topic_prefix, record.topic.name());
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let future_record = FutureRecord::to(&topic)
            .key(record.key)
            .payload(record.payload)
            .headers(headers);
        let pending = match self.inner.send_result(future_record) {
            Ok(pending) => pending,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(BusError::QueueFull);
            }
            Err((error, _)) => return Err(error.into()),
        };
        Ok(async move {
            match pending.await {
                Ok(Ok(delivery)) => Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((error, _))) => Err(BusError::Kafka(error)),
                // The producer was dropped before the record was acknowledged.
                Err(_canceled) => Err(BusError::Kafka(KafkaError::Canceled)),
            }
        })
    }

    /// Encodes `envelope` and produces it to its topic under its partition key.
    pub async fn send_event(&self, envelope: &Envelope) -> Result<Delivered> {
        let payload = codec::encode(envelope);
        self.send(OutRecord {
            topic: envelope.topic(),
            key: envelope.key().as_bytes(),
            payload: &payload,
            headers: &[],
        })
        .await
    }

    /// Dead-letters `source` unchanged, with headers naming where it came from, the stage
    /// that gave up and why.
    pub async fn dead_letter(
        &self,
        source: &InRecord,
        stage: &str,
        reason: &Reason,
    ) -> Result<Delivered> {
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        self.send(OutRecord {
            topic: Topic::Dlq,
            key: source.key.as_deref().unwrap_or_default(),
            payload: source.payload.as_deref().unwrap_or_default(),
            headers: &[
                (header::REASON, reason.code.as_bytes()),
                (header::MESSAGE, reason.message.as_bytes()),
                (header::STAGE, stage.as_bytes()),
                (header::SOURCE_TOPIC, source.topic_name.as_bytes()),
                (header::SOURCE_PARTITION, partition.as_bytes()),
                (header::SOURCE_OFFSET, offset.as_bytes()),
            ],
        })
        .await
    }

    /// Queues a dead letter for bytes that never were a Kafka record (a line posted to the
    /// collector); `source` names where they came from. Returns the acknowledgement future.
    pub fn enqueue_dead_letter(
        &self,
        key: &[u8],
        payload: &[u8],
        stage: &str,
        source: &str,
        reason: &Reason,
    ) -> Result<impl Future<Output = Result<Delivered>> + Send + use<>> {
        self.enqueue(OutRecord {
            topic: Topic::Dlq,
            key,
            payload,
            headers: &[
                (header::REASON, reason.code.as_bytes()),
                (header::MESSAGE, reason.message.as_bytes()),
                (header::STAGE, stage.as_bytes()),
                (header::SOURCE_TOPIC, source.as_bytes()),
            ],
        })
    }

    /// Waits until every queued record is acknowledged or `timeout` passes. Blocks the
    /// calling thread, so async callers use `spawn_blocking`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(BusError::from)
    }

    /// Records handed over but not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }
}
