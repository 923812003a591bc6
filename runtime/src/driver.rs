//! The consumer driver every stream stage runs on: join the group, consume, apply, dead-letter
//! what cannot be used with its reason, make effects durable, then store and commit offsets;
//! on shutdown make everything durable once more, commit and leave the group.
//!
//! A stage brings a [`Job`]: how to apply one record and how to make what it applied durable
//! (publish and checkpoint, commit files, or nothing when every record is durable as it is
//! applied). Offsets are stored only for what the job reports durable, so neither our commit
//! nor the one the bus makes before a revocation can run ahead of the job's state.
//!
//! Retry or stop is each error's own call: a consume or commit error the bus classifies as
//! retryable is logged and retried (a commit refused mid-rebalance waits for the next flush);
//! any other error, and every error of the job's, stops the stage.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusError, Consumer, InRecord, RebalanceHook, TopicPartition};
use model::Topic;
use model::dlq::Reason;
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// What became of one record.
#[derive(Debug)]
pub enum Applied {
    /// Applied (or deliberately ignored).
    Done,
    /// It cannot be used; it goes to the DLQ with this reason and the job moves on.
    DeadLetter(Reason),
    /// Shutdown came before the job finished it: it is left for the next start.
    Interrupted,
}

/// Where the next owner of a partition starts, as the job's durable state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The topic's name on the cluster.
    pub topic_name: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// When a job's applied records are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    /// When [`Job::flush`] returns: it reports the positions to commit.
    FromFlush,
    /// As soon as [`Job::apply`] returns `Done` or `DeadLetter` (each record's effect is its
    /// own, e.g. a delivery recorded in a database).
    EachRecord,
}

/// A stage's side of the driver.
pub trait Job: Send {
    type Error: From<BusError> + Send;

    /// Applies one record.
    fn apply(
        &mut self,
        record: &InRecord,
    ) -> impl Future<Output = Result<Applied, Self::Error>> + Send;

    /// Makes everything applied so far durable and reports where each partition's next owner
    /// starts (with [`Offsets::EachRecord`], nothing).
    fn flush(&mut self) -> impl Future<Output = Result<Vec<Position>, Self::Error>> + Send;

    /// Periodic work between records, every [`Settings::tick_every`].
    fn tick(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Whether enough is buffered that it should be flushed before the next record.
    fn wants_flush(&self) -> bool {
        false
    }

    /// A failure raised off the loop (in the rebalance hook), which stops the stage.
    fn failure(&mut self) -> Option<Self::Error> {
        None
    }

    /// The owned partitions' log ends, every second: for lag gauges and readiness.
    fn log_ends(&mut self, _ends: &[(TopicPartition, i64)]) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How the driver runs one job.
pub struct Settings {
    /// The consumer group (under the bus's topic prefix).
    pub group: String,
    pub topics: Vec<Topic>,
    /// Told about partition moves on the consumer's poll path.
    pub hook: Arc<dyn RebalanceHook>,
    /// Names the stage on its dead letters.
    pub stage: String,
    pub flush_every: Duration,
    pub tick_every: Option<Duration>,
    /// Counts dead letters, when the stage reports them.
    pub dead_letters: Option<Counter>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("stage", &self.stage)
            .field("flush_every", &self.flush_every)
            .field("tick_every", &self.tick_every)
            .finish_non_exhaustive()
    }
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Flush,
    Tick,
    Lag,
    Received(Result<InRecord, BusError>),
}

/// Runs `job` under `settings` until `shutdown` (then flushes, commits and leaves the group) or
/// until it fails.
pub async fn run<J: Job>(
    bus: &Bus,
    settings: Settings,
    offsets: Offsets,
    job: &mut J,
    shutdown: &CancellationToken,
) -> Result<(), J::Error> {
    let consumer = bus.consumer(
        &settings.group,
        &settings.topics,
        Arc::clone(&settings.hook),
        &[],
    )?;
    let dlq = bus.producer()?;
    let mut flush_every = every(settings.flush_every);
    let mut tick_every = settings.tick_every.map(every);
    let mut lag_every = every(Duration::from_secs(1));
    loop {
        if let Some(failure) = job.failure() {
            return Err(failure);
        }
        let wake = tokio::select! {
            () = shutdown.cancelled() => Wake::Shutdown,
            _ = flush_every.tick() => Wake::Flush,
            Some(_) = next_tick(&mut tick_every) => Wake::Tick,
            _ = lag_every.tick() => Wake::Lag,
            received = consumer.recv() => Wake::Received(received),
        };
        match wake {
            Wake::Shutdown => break,
            Wake::Flush => flush(job, &consumer).await?,
            Wake::Tick => job.tick().await?,
            Wake::Lag => match consumer.log_ends().await {
                Ok(ends) => job.log_ends(&ends).await,
                Err(error) => tracing::debug!(%error, "log ends not available"),
            },
            Wake::Received(Err(error)) if error.is_retryable() => {
                tracing::warn!(%error, group = settings.group, "consume failed; retrying");
            }
            Wake::Received(Err(error)) => return Err(error.into()),
            Wake::Received(Ok(record)) => {
                match job.apply(&record).await? {
                    Applied::Done => {}
                    Applied::DeadLetter(reason) => {
                        dlq.dead_letter(&record, &settings.stage, &reason).await?;
                        if let Some(counter) = &settings.dead_letters {
                            counter.inc();
                        }
                    }
                    Applied::Interrupted => break,
                }
                if offsets == Offsets::EachRecord {
                    consumer.store(&record)?;
                }
                if job.wants_flush() {
                    flush(job, &consumer).await?;
                }
            }
        }
    }
    flush(job, &consumer).await?;
    // The job's durable state holds its positions; a final commit refused mid-rebalance only
    // costs the next owner some records it replays or skips.
    if let Err(error) = consumer.close().await {
        if !error.is_retryable() {
            return Err(error.into());
        }
        tracing::warn!(%error, group = settings.group, "final offset commit refused");
    }
    Ok(())
}

/// Makes the job's state durable, then stores and commits the positions it reports.
async fn flush<J: Job>(job: &mut J, consumer: &Consumer) -> Result<(), J::Error> {
    for position in job.flush().await? {
        if let Err(error) = consumer.store_next(
            &position.topic_name,
            position.partition,
            position.next_offset,
        ) {
            // Revoked meanwhile; the job's state says where the next owner starts.
            tracing::debug!(%error, topic = position.topic_name, partition = position.partition, "offset not stored");
        }
    }
    // A commit refused mid-rebalance is retried at the next flush.
    if let Err(error) = consumer.commit().await {
        if !error.is_retryable() {
            return Err(error.into());
        }
        tracing::debug!(%error, "offset commit deferred");
    }
    Ok(())
}

fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn next_tick(interval: &mut Option<Interval>) -> Option<()> {
    match interval {
        Some(interval) => {
            interval.tick().await;
            Some(())
        }
        None => std::future::pending().await,
    }
}

/// The key a job keeps one partition's position under: `topic/partition`.
pub fn position_key(topic_name: &str, partition: i32) -> String {
    format!("{topic_name}/{partition}")
}

/// Positions kept as `topic/partition` -> next offset, as [`Job::flush`] reports them.
pub fn positions_of(kept: &std::collections::BTreeMap<String, i64>) -> Vec<Position> {
    kept.iter()
        .filter_map(|(key, next)| {
            let (topic_name, partition) = key.rsplit_once('/')?;
            Some(Position {
                topic_name: topic_name.to_owned(),
                partition: partition.parse().ok()?,
                next_offset: *next,
            })
        })
        .collect()
}

/// Reports each assigned partition's lag (its log end minus `next`, the first offset the
/// job has not applied) on `metrics`, and readiness: ready once no partition is more than
/// `max_lag` records behind; `setting` names that knob in the reason it is not.
pub fn report_lag(
    ends: &[(TopicPartition, i64)],
    next: impl Fn(&str) -> Option<i64>,
    max_lag: i64,
    setting: &str,
    readiness: &crate::Readiness,
    metrics: &crate::metrics::Metrics,
) {
    let lag: Vec<(String, i32, i64)> = ends
        .iter()
        .map(|(partition, end)| {
            let next = next(&position_key(&partition.topic, partition.partition)).unwrap_or(0);
            (
                partition.topic.clone(),
                partition.partition,
                (end - next).max(0),
            )
        })
        .collect();
    let behind = lag
        .iter()
        .filter(|(_, _, lag)| *lag > max_lag)
        .max_by_key(|(_, _, lag)| *lag);
    match behind {
        _ if lag.is_empty() => readiness.set_not_ready("no partition assigned yet"),
        Some((topic, partition, behind)) => readiness.set_not_ready(format!(
            "{topic}[{partition}] is {behind} records behind ({setting} = {max_lag})"
        )),
        None => readiness.set_ready(),
    }
    metrics.set_lag(lag);
}

/// Reads `topic` from its beginning to the end it had when called, handing each record to
/// `apply`; returns early on shutdown. A stage that attributes records by reference data (a
/// click by its product's shop) calls this before consuming, or it would meet a click before
/// its product's upsert on another partition.
pub async fn read_ahead(
    bus: &Bus,
    topic: Topic,
    shutdown: &CancellationToken,
    mut apply: impl FnMut(&InRecord),
) -> Result<(), BusError> {
    let reader = bus.reader(&[topic]).await?;
    let mut behind: std::collections::HashMap<i32, i64> = reader
        .log_ends()
        .await?
        .into_iter()
        .filter(|(_, end)| *end > 0)
        .map(|(partition, end)| (partition.partition, end))
        .collect();
    while !behind.is_empty() {
        let record = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            received = reader.recv() => match received {
                Ok(record) => record,
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, topic = topic.name(), "reading ahead failed; retrying");
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        apply(&record);
        if behind
            .get(&record.partition)
            .is_some_and(|end| record.offset + 1 >= *end)
        {
            behind.remove(&record.partition);
        }
    }
    Ok(())
}

/// A job whose state is one piece checkpointed whole with every partition's position
/// (serviceability, live analytics): applying a record is in memory, and a checkpoint
/// (copying, encoding and fsyncing the state) is the CPU pool's work.
pub trait WholeState: Send + Sync + 'static {
    type Error: From<BusError> + From<crate::cpu::CpuError> + Send + 'static;

    fn apply(&self, record: &InRecord) -> Applied;

    /// Checkpoints the state; the positions it covers.
    fn save(&self) -> Result<Vec<Position>, Self::Error>;

    /// The owned partitions' log ends, for the lag gauges and readiness.
    fn set_lag(&self, ends: &[(TopicPartition, i64)]);
}

/// A [`WholeState`] on the driver, its checkpoints on the CPU pool.
#[derive(Debug)]
pub struct OnCpu<J>(pub Arc<J>);

impl<J: WholeState> Job for OnCpu<J> {
    type Error = J::Error;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, J::Error> {
        Ok(self.0.apply(record))
    }

    async fn flush(&mut self) -> Result<Vec<Position>, J::Error> {
        let job = Arc::clone(&self.0);
        crate::cpu::run(move || job.save()).await?
    }

    async fn log_ends(&mut self, ends: &[(TopicPartition, i64)]) {
        self.0.set_lag(ends);
    }
}
