//! The outbox relay: publishes committed outbox rows to their topics in `seq` order with the
//! idempotent producer, waits for every acknowledgement, then stamps exactly those rows
//! `sent_at`. On PostgreSQL `seq` is taken at insert, so a row may become visible after rows
//! numbered above it; it goes out in a later round. One order's events still keep their order:
//! its transactions serialise on the order's row, so their numbers follow their commits.
//!
//! Killed after the DB commit and before publishing, the rows are still unsent and go out on
//! restart. Killed after publishing and before stamping, they go out again with the same
//! `event_id` (the payload is the stored bytes), which consumers drop. One relay per database:
//! a second would publish the same rows twice (still deduplicable, but wasteful).

use std::time::Duration;

use bus::{Bus, OutRecord};
use model::Topic;
use runtime::metrics::{Counter, Gauge, Registry};
use serde::Deserialize;
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Rows published per round trip.
    pub batch: i64,
    /// How long to wait when the outbox is empty.
    pub idle_poll_ms: u64,
    /// Back-off after a failed round (broker unreachable), doubling up to 30 s.
    pub retry_ms: u64,
    /// On shutdown, how long a round may wait for the broker before the relay gives up; what
    /// it did not stamp stays in the outbox and goes out on the next start.
    pub drain_timeout_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            idle_poll_ms: 50,
            retry_ms: 200,
            drain_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing: {0}")]
    Bus(#[from] bus::BusError),
    #[error("outbox row {seq} names unknown topic {topic:?}")]
    UnknownTopic { seq: i64, topic: String },
    /// The broker did not acknowledge within `relay.drain_timeout_ms` of shutdown.
    #[error(
        "the broker did not acknowledge within {waited_ms} ms of shutdown; the unsent outbox rows are published on the next start"
    )]
    DrainTimedOut { waited_ms: u64 },
}

impl From<sqlx::Error> for RelayError {
    fn from(error: sqlx::Error) -> Self {
        RelayError::Store(StoreError::Database(error))
    }
}

/// What the relay reports on `/metrics` (job `outbox`).
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    backlog: Gauge,
    published: Counter,
    republished: Counter,
    parked: Counter,
    failed_rounds: Counter,
}

impl RelayMetrics {
    pub fn new(registry: &Registry) -> RelayMetrics {
        let job = "outbox";
        RelayMetrics {
            backlog: registry.gauge(
                "shopstream_outbox_backlog",
                "Outbox rows committed and not yet acknowledged by the broker (checked every second)",
                job,
            ),
            published: registry.counter(
                "shopstream_outbox_published",
                "Outbox rows the broker acknowledged and the relay stamped sent",
                job,
            ),
            republished: registry.counter(
                "shopstream_outbox_republished",
                "Rows acknowledged in a round that then failed: they go out again with their event ids, which consumers drop",
                job,
            ),
            parked: registry.counter(
                "shopstream_outbox_parked",
                "Rows the broker refused for good, parked on the DLQ (reason unpublishable)",
                job,
            ),
            failed_rounds: registry.counter(
                "shopstream_outbox_failed_rounds",
                "Relay rounds that failed and were retried with back-off",
                job,
            ),
        }
    }
}

/// What one round did before it ended, well or not.
#[derive(Debug, Default)]
struct Round {
    acknowledged: u64,
    parked: u64,
}

struct Pending {
    seq: i64,
    topic: Topic,
    key: String,
    payload: String,
}

/// Publishes until `shutdown`, then drains what is committed and returns. A failed round is
/// retried with back-off; nothing is stamped sent that the broker did not acknowledge.
pub async fn run(
    config: RelayConfig,
    store: Store,
    bus: &Bus,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let producer = bus.producer()?;
    let mut backoff = Duration::from_millis(config.retry_ms);
    let drain = Duration::from_millis(config.drain_timeout_ms);
    let mut backlog_checked: Option<tokio::time::Instant> = None;
    loop {
        if backlog_checked.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            backlog_checked = Some(tokio::time::Instant::now());
            match unsent(&store).await {
                Ok(rows) => {
                    metrics.backlog.set(rows);
                }
                Err(error) => tracing::debug!(%error, "outbox backlog not counted"),
            }
        }
        // A round may wait on a broker that is gone; after shutdown it gets `drain` to finish.
        let mut round = Round::default();
        let outcome = tokio::select! {
            outcome = publish_round(&store, &producer, config.batch, &mut round) => outcome,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(drain).await;
            } => {
                return Err(RelayError::DrainTimedOut { waited_ms: config.drain_timeout_ms });
            }
        };
        metrics.parked.inc_by(round.parked);
        match &outcome {
            Ok(rows) => {
                metrics.published.inc_by(*rows as u64 - round.parked);
            }
            Err(_) => {
                metrics.failed_rounds.inc();
                metrics.republished.inc_by(round.acknowledged);
            }
        }
        let pause = match outcome {
            Ok(0) if shutdown.is_cancelled() => {
                if let Ok(rows) = unsent(&store).await {
                    metrics.backlog.set(rows);
                }
                return Ok(());
            }
            Ok(0) => Duration::from_millis(config.idle_poll_ms),
            Ok(_) => {
                backoff = Duration::from_millis(config.retry_ms);
                continue;
            }
            Err(error) if shutdown.is_cancelled() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "outbox relay round failed");
                let pause = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Publishes up to `batch` unsent rows and stamps them; returns how many (parked ones
/// included).
pub async fn publish_batch(
    store: &Store,
    producer: &bus::Producer,
    batch: i64,
) -> Result<usize, RelayError> {
    publish_round(store, producer, batch, &mut Round::default()).await
}

/// [`publish_batch`], counting into `round` what was acknowledged and parked as it goes.
async fn publish_round(
    store: &Store,
    producer: &bus::Producer,
    batch: i64,
    round: &mut Round,
) -> Result<usize, RelayError> {
    let rows = sqlx::query(
        "SELECT seq, topic, partition_key, payload FROM outbox
         WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(batch)
    .fetch_all(store.pool())
    .await?;
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let topic: String = row.try_get(1)?;
        pending.push(Pending {
            seq,
            topic: Topic::from_name(&topic).ok_or(RelayError::UnknownTopic { seq, topic })?,
            key: row.try_get(2)?,
            payload: row.try_get(3)?,
        });
    }
    if pending.is_empty() {
        return Ok(0);
    }
    // Enqueued in seq order: the idempotent producer keeps that order per partition, and one
    // order's events share a key, so they reach consumers in the order they were committed.
    // A row the broker refuses for good (not a retryable error) is parked on the DLQ instead,
    // so one bad row never holds up the rows behind it.
    let mut acks = std::collections::VecDeque::with_capacity(pending.len());
    let mut parked = Vec::new();
    for (index, row) in pending.iter().enumerate() {
        let record = OutRecord {
            topic: row.topic,
            key: row.key.as_bytes(),
            payload: row.payload.as_bytes(),
            headers: &[],
        };
        loop {
            match producer.enqueue(record) {
                Ok(ack) => {
                    acks.push_back((index, ack));
                    break;
                }
                // The producer's queue is full: make room by waiting for our oldest record's
                // acknowledgement. With nothing of ours in flight the queue belongs to others;
                // the round fails and is retried with back-off.
                Err(bus::BusError::QueueFull) => match acks.pop_front() {
                    Some((oldest, ack)) => match ack.await {
                        Ok(_) => round.acknowledged += 1,
                        Err(error) => refused(error, oldest, &mut parked)?,
                    },
                    None => return Err(bus::BusError::QueueFull.into()),
                },
                Err(error) => {
                    refused(error, index, &mut parked)?;
                    break;
                }
            }
        }
    }
    for (index, ack) in acks {
        match ack.await {
            Ok(_) => round.acknowledged += 1,
            Err(error) => refused(error, index, &mut parked)?,
        }
    }
    for (index, error) in &parked {
        park(producer, &pending[*index], error).await?;
        round.parked += 1;
    }
    stamp(store, &pending).await?;
    Ok(pending.len())
}

/// A row's publish failed: a retryable error fails the round (it is retried whole; the rows
/// already acknowledged go out again with their event ids, which consumers drop); any other
/// error marks the row for the DLQ.
fn refused(
    error: bus::BusError,
    index: usize,
    parked: &mut Vec<(usize, bus::BusError)>,
) -> Result<(), RelayError> {
    if error.is_retryable() {
        return Err(error.into());
    }
    parked.push((index, error));
    Ok(())
}

/// The first bytes of a parked row's payload that go to the DLQ with it.
const PARKED_PAYLOAD_BYTES: usize = 64 * 1024;

/// Dead-letters a row the broker will never take, with the reason and where it came from.
async fn park(
    producer: &bus::Producer,
    row: &Pending,
    error: &bus::BusError,
) -> Result<(), RelayError> {
    let payload = row.payload.as_bytes();
    let reason = model::dlq::Reason::new(
        model::dlq::Reason::UNPUBLISHABLE,
        format!(
            "the broker refused outbox row {} for {} ({} bytes): {error}",
            row.seq,
            row.topic,
            payload.len()
        ),
    );
    tracing::error!(seq = row.seq, topic = %row.topic, bytes = payload.len(), %error, "outbox row parked on the DLQ");
    producer
        .enqueue_dead_letter(
            row.key.as_bytes(),
            &payload[..payload.len().min(PARKED_PAYLOAD_BYTES)],
            "outbox.relay",
            &format!("outbox seq {}", row.seq),
            &reason,
        )?
        .await?;
    Ok(())
}

/// Stamps exactly the rows that were published. Not a `seq` range: on PostgreSQL a row's
/// `seq` is taken at insert, so a row inside the range that committed after the read (its
/// neighbours already visible) was never published and must stay unsent.
async fn stamp(store: &Store, published: &[Pending]) -> Result<(), RelayError> {
    let now = crate::store::now_ms();
    let seqs: Vec<i64> = published.iter().map(|row| row.seq).collect();
    // A write like any other: on SQLite it shares a group commit with the placements.
    store
        .write_grouped(move |tx| {
            Box::pin(async move {
                for chunk in seqs.chunks(1_000) {
                    let list: Vec<String> =
                        (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                    let sql = format!(
                        "UPDATE outbox SET sent_at = $1 WHERE seq IN ({}) AND sent_at IS NULL",
                        list.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(now);
                    for seq in chunk {
                        query = query.bind(*seq);
                    }
                    query.execute(&mut **tx).await?;
                }
                Ok::<_, RelayError>(())
            })
        })
        .await
}

/// Rows committed but not yet acknowledged by the broker.
pub async fn unsent(store: &Store) -> Result<i64, RelayError> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(store.pool())
            .await?
            .try_get(0)?,
    )
}
