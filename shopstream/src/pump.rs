//! Moves generated events onto the bus, optionally paced to the wall clock, with a bounded
//! number of unacknowledged records so memory stays flat however fast the generator is.

use std::time::Duration;

use anyhow::{Context, Result};
use bus::{BusError, OutRecord, Producer};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::ProgressBar;
use model::{Envelope, codec};
use tokio_util::sync::CancellationToken;

/// Unacknowledged records allowed in flight before we wait for acknowledgements.
const MAX_IN_FLIGHT: usize = 50_000;

pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Produces `events` until they end or `shutdown`; with `realtime`, holds each event until the
/// wall clock reaches its event time. Returns how many the broker acknowledged.
pub async fn pump(
    events: impl Iterator<Item = Envelope>,
    producer: &Producer,
    realtime: bool,
    shutdown: &CancellationToken,
    progress: &ProgressBar,
) -> Result<u64> {
    let mut pending = FuturesUnordered::new();
    let mut acknowledged = 0u64;
    let mut buffer = Vec::with_capacity(512);
    for envelope in events {
        if shutdown.is_cancelled() {
            break;
        }
        if realtime {
            let wait_ms = envelope.event_time - now_ms();
            if wait_ms > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                }
            }
        }
        buffer.clear();
        codec::encode_into(&envelope, &mut buffer);
        loop {
            let record = OutRecord {
                topic: envelope.topic(),
                key: envelope.key().as_bytes(),
                payload: &buffer,
                headers: &[],
            };
            match producer.enqueue(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(BusError::QueueFull) => {
                    // Let the broker catch up before handing over more.
                    if let Some(result) = pending.next().await {
                        result.context("the broker did not acknowledge a record")?;
                        acknowledged += 1;
                    }
                }
                Err(error) => return Err(error).context("cannot hand a record to the producer"),
            }
        }
        progress.inc(1);
        while pending.len() >= MAX_IN_FLIGHT {
            if let Some(result) = pending.next().await {
                result.context("the broker did not acknowledge a record")?;
                acknowledged += 1;
            }
        }
    }
    while let Some(result) = pending.next().await {
        result.context("the broker did not acknowledge a record")?;
        acknowledged += 1;
    }
    Ok(acknowledged)
}
