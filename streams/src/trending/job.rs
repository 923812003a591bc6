//! The Kafka edge of trending: consume clicks, orders and catalog, fold them into the board,
//! dead-letter what cannot be decoded, store offsets once applied and commit every interval.
//!
//! v0 keeps the board in memory only, so a restart rebuilds it from the retained topics under
//! a new group or from the committed offsets onward; the streaming-runtime issue adds
//! checkpoints that make it exactly-once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus::{Bus, NoHook};
use model::dlq::Reason;
use model::{Topic, codec};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Board, Weights, router};
use crate::StreamError;

/// Trending job settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrendingConfig {
    /// Consumer group; instances sharing it split the partitions.
    pub group_id: String,
    /// Width of one event-time bucket, ms. Windows are whole buckets.
    pub bucket_ms: i64,
    /// Longest window that can be asked for, ms; older buckets are dropped.
    pub retain_ms: i64,
    /// Window used when a request names none, ms.
    pub default_window_ms: i64,
    /// Most products one request may ask for.
    pub max_limit: usize,
    /// How often consumed offsets are committed, ms.
    pub commit_interval_ms: u64,
    /// Points per view, cart add and order.
    pub weights: Weights,
}

impl Default for TrendingConfig {
    fn default() -> Self {
        Self {
            group_id: "trending".into(),
            bucket_ms: 10_000,
            retain_ms: 60 * 60 * 1000,
            default_window_ms: 5 * 60 * 1000,
            max_limit: 100,
            commit_interval_ms: 1_000,
            weights: Weights::default(),
        }
    }
}

impl TrendingConfig {
    pub fn validate(&self) -> Result<(), StreamError> {
        let fail = |message: String| Err(StreamError::Config(message));
        if self.bucket_ms <= 0 {
            return fail(format!(
                "trending.bucket_ms must be positive, got {}",
                self.bucket_ms
            ));
        }
        for (name, value) in [
            ("retain_ms", self.retain_ms),
            ("default_window_ms", self.default_window_ms),
        ] {
            if value <= 0 || value % self.bucket_ms != 0 {
                return fail(format!(
                    "trending.{name} must be a positive multiple of trending.bucket_ms ({}), got {value}",
                    self.bucket_ms
                ));
            }
        }
        if self.default_window_ms > self.retain_ms {
            return fail("trending.default_window_ms must not exceed trending.retain_ms".into());
        }
        if self.max_limit == 0 {
            return fail("trending.max_limit must be at least 1".into());
        }
        Ok(())
    }
}

/// Runs the trending consumer and its HTTP API on `listener` until `shutdown`; then stops
/// serving, commits what it consumed and leaves the group.
pub async fn run(
    config: TrendingConfig,
    bus: Arc<Bus>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StreamError> {
    config.validate()?;
    let board = Arc::new(RwLock::new(Board::new(
        config.bucket_ms,
        config.retain_ms,
        config.weights,
    )));
    let app = router(
        Arc::clone(&board),
        config.default_window_ms,
        config.max_limit,
    );
    let http = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let consumed = consume(&config, &bus, &board, &shutdown).await;
    // Whatever ended consumption, stop serving too, so the caller sees one outcome.
    shutdown.cancel();
    let served = http
        .await
        .map_err(|e| StreamError::Http(std::io::Error::other(e)))?;
    consumed?;
    served?;
    Ok(())
}

async fn consume(
    config: &TrendingConfig,
    bus: &Bus,
    board: &RwLock<Board>,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let topics = [Topic::Clicks, Topic::Orders, Topic::Catalog];
    let consumer = bus.consumer(&config.group_id, &topics, Arc::new(NoHook), &[])?;
    let producer = bus.producer()?;
    let mut commit_every =
        tokio::time::interval(Duration::from_millis(config.commit_interval_ms.max(10)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = commit_every.tick() => consumer.commit().await?,
            received = consumer.recv() => {
                let record = match received {
                    Ok(record) => record,
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, "consume failed; retrying");
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                };
                match codec::decode(record.payload.as_deref().unwrap_or_default()) {
                    Ok(envelope) => write(board).apply(&envelope),
                    Err(error) => {
                        producer.dead_letter(&record, &config.group_id, &Reason::from(&error)).await?;
                    }
                }
                if let Err(error) = consumer.store(&record) {
                    // The partition was revoked meanwhile; its next owner replays the record.
                    tracing::debug!(%error, "offset not stored");
                }
            }
        }
    }
    consumer.close().await?;
    Ok(())
}

/// A poisoned lock means a panic mid-update; the board is plain counters, so keep serving.
pub(super) fn write(board: &RwLock<Board>) -> std::sync::RwLockWriteGuard<'_, Board> {
    board
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
