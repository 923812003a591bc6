//! The Kafka edge of trending: a consumer-group member over clicks and orders that folds each
//! partition into its [`ShardCounter`], publishes pane records and shard watermarks to the
//! `trending` topic, dead-letters late and undecodable records, and checkpoints.
//!
//! Exactly-once protocol (see [`runtime::checkpoint`] for the file side):
//! - every `checkpoint_interval_ms`, on revocation and on shutdown: produce what the shards
//!   owe, wait for every acknowledgement, write each shard's snapshot (state plus next offset),
//!   then store exactly those offsets and commit them to Kafka. Offsets are stored nowhere
//!   else, so no commit (including the bus's commit before a revocation) can run ahead of a
//!   checkpoint;
//! - on assignment: restore each shard's snapshot and skip records below its offset, so a
//!   redelivery from an older commit is not counted twice;
//! - outputs are keyed by pane and shard, so whatever a crash makes us produce again
//!   overwrites the same keys.
//!
//! Nothing here blocks the consumer's poll for long: the rebalance hook's flush is a wait for
//! acknowledgements of a few records, then small file writes.

pub(super) use runtime::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bus::{Bus, InRecord, OutRecord, Producer, RebalanceHook, TopicPartition};
use futures::future::BoxFuture;
use model::dlq::Reason;
use model::geo::Directory;
use model::trending::{Shard, ShardWatermark, TrendingRecord};
use model::{Topic, codec};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::counter::{PaneRules, ShardCounter, Verdict};
use crate::StreamError;
use runtime::checkpoint::Checkpoints;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::Metrics;
use runtime::watermark::Watermarks;

/// One window size the API serves, and how often it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub slide_ms: i64,
}

/// Trending job settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrendingConfig {
    /// Consumer group; instances sharing it split the partitions.
    pub group_id: String,
    /// Where each partition's state and offset are checkpointed. The binary puts it under
    /// `data_dir`; instances that may take over each other's partitions must share it.
    pub checkpoint_dir: Option<PathBuf>,
    /// Width of a pane, ms: the unit the job counts in. Every slide is a whole number of panes.
    pub pane_ms: i64,
    /// The windows the API serves (size and slide, ms), the first being the default.
    pub windows: Vec<WindowConfig>,
    /// How far behind the newest event of its partition an event may arrive and still be on
    /// time, ms. Windows are shown this much after their end.
    pub max_out_of_orderness_ms: i64,
    /// How long after the watermark passes a pane it still accepts (and corrects) events,
    /// ms; later events go to the DLQ as `late`.
    pub allowed_lateness_ms: i64,
    /// A partition with no records for this long stops holding back the watermark, ms.
    pub idle_timeout_ms: i64,
    /// How often finished panes and watermarks are published, ms.
    pub emit_interval_ms: u64,
    /// How often state and offsets are checkpointed, ms.
    pub checkpoint_interval_ms: u64,
    /// Most products one request may ask for.
    pub max_limit: usize,
    /// Points per view, cart add and order.
    pub weights: super::Weights,
    /// The stage is ready (`/readyz`) once every partition it owns is at most this many
    /// records behind its log end.
    pub ready_max_lag: i64,
    /// How many offsets back each partition remembers event ids, so a re-published event
    /// (same id, same partition, a little later) counts once. Checkpointed with the counts.
    pub dedup_horizon: i64,
    /// Most distinct products one pane holds per scope, in the job and in the serving view;
    /// interactions with further products are counted as `other`. Bounds memory against a
    /// flood of made-up product ids.
    pub max_products_per_pane: usize,
}

impl Default for TrendingConfig {
    fn default() -> Self {
        Self {
            group_id: "trending".into(),
            checkpoint_dir: None,
            pane_ms: 10_000,
            windows: vec![
                WindowConfig {
                    size_ms: 5 * 60_000,
                    slide_ms: 10_000,
                },
                WindowConfig {
                    size_ms: 60 * 60_000,
                    slide_ms: 60_000,
                },
                WindowConfig {
                    size_ms: 24 * 60 * 60_000,
                    slide_ms: 60 * 60_000,
                },
            ],
            max_out_of_orderness_ms: 500,
            allowed_lateness_ms: 60_000,
            idle_timeout_ms: 2_000,
            emit_interval_ms: 200,
            checkpoint_interval_ms: 5_000,
            max_limit: 100,
            weights: super::Weights::default(),
            ready_max_lag: 10_000,
            dedup_horizon: 20_000,
            max_products_per_pane: 10_000,
        }
    }
}

impl TrendingConfig {
    pub fn validate(&self) -> Result<(), StreamError> {
        let fail = |message: String| Err(StreamError::Config(message));
        if self.pane_ms <= 0 {
            return fail(format!(
                "trending.pane_ms must be positive, got {}",
                self.pane_ms
            ));
        }
        if self.windows.is_empty() {
            return fail("trending.windows must name at least one window".into());
        }
        for window in &self.windows {
            if let Err(error) = runtime::window::Hopping::new(window.size_ms, window.slide_ms) {
                return fail(format!("trending.windows: {error}"));
            }
            if window.slide_ms % self.pane_ms != 0 {
                return fail(format!(
                    "trending.windows: slide {} ms must be a whole number of panes (trending.pane_ms = {})",
                    window.slide_ms, self.pane_ms
                ));
            }
        }
        for (name, value) in [
            ("max_out_of_orderness_ms", self.max_out_of_orderness_ms),
            ("allowed_lateness_ms", self.allowed_lateness_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value < 0 {
                return fail(format!("trending.{name} must not be negative, got {value}"));
            }
        }
        if self.dedup_horizon < 1 {
            return fail("trending.dedup_horizon must be at least 1".into());
        }
        if self.max_products_per_pane == 0 {
            return fail("trending.max_products_per_pane must be at least 1".into());
        }
        if self.max_limit == 0 {
            return fail("trending.max_limit must be at least 1".into());
        }
        Ok(())
    }

    pub fn pane_rules(&self) -> PaneRules {
        PaneRules {
            pane_ms: self.pane_ms,
            max_out_of_orderness_ms: self.max_out_of_orderness_ms,
            allowed_lateness_ms: self.allowed_lateness_ms,
            max_products_per_pane: self.max_products_per_pane,
        }
    }
}

#[derive(Debug)]
struct Owned {
    counters: BTreeMap<Shard, ShardCounter>,
    marks: Watermarks<Shard>,
    sent_marks: HashMap<Shard, ShardWatermark>,
}

/// What the consumer loop and the rebalance hook share.
pub(super) struct Job {
    config: TrendingConfig,
    rules: PaneRules,
    places: Directory,
    checkpoints: Checkpoints,
    producer: Producer,
    bus_config: bus::BusConfig,
    pub(super) metrics: Arc<Metrics>,
    owned: Mutex<Owned>,
    /// A failure inside the rebalance hook, which cannot return one; the loop stops on it.
    failed: Mutex<Option<String>>,
    /// Records behind the log end per shard, as last measured; a shard is only idle when it
    /// has been quiet *and* has nothing left to read.
    lag: Mutex<HashMap<Shard, i64>>,
    /// Ready once every owned shard is within `ready_max_lag` of its log end.
    pub(super) readiness: runtime::Readiness,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("group", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

/// Records produced but not yet acknowledged.
type Pending = Vec<BoxFuture<'static, bus::Result<bus::Delivered>>>;

impl Job {
    pub(super) fn new(
        config: TrendingConfig,
        bus: &Bus,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StreamError> {
        config.validate()?;
        let Some(dir) = config.checkpoint_dir.clone() else {
            return Err(StreamError::Config(
                "trending.checkpoint_dir must be set: without it a restart would lose the counts (the binary puts it under data_dir)".into(),
            ));
        };
        Ok(Self {
            rules: config.pane_rules(),
            places: Directory::load(),
            checkpoints: Checkpoints::open(dir)?,
            producer: bus.producer()?,
            bus_config: bus.config().clone(),
            metrics,
            owned: Mutex::new(Owned {
                counters: BTreeMap::new(),
                marks: Watermarks::new(config.max_out_of_orderness_ms, config.idle_timeout_ms),
                sent_marks: HashMap::new(),
            }),
            failed: Mutex::new(None),
            lag: Mutex::new(HashMap::new()),
            readiness: runtime::Readiness::new(),
            config,
        })
    }

    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn shard_of(&self, partition: &TopicPartition) -> Option<Shard> {
        Some(Shard {
            topic: self.bus_config.topic_of(&partition.topic)?,
            partition: partition.partition,
        })
    }

    fn checkpoint_name(shard: &Shard) -> String {
        format!("{}-{}", shard.topic, shard.partition)
    }

    /// Restores newly assigned shards from their checkpoints.
    fn assign(&self, partitions: &[TopicPartition]) -> Result<(), StreamError> {
        let now = now_ms();
        for partition in partitions {
            let Some(shard) = self.shard_of(partition) else {
                continue;
            };
            let counter = match self.checkpoints.load(&Self::checkpoint_name(&shard))? {
                Some(snapshot) => ShardCounter::restore(snapshot, self.config.dedup_horizon),
                None => ShardCounter::new(shard.clone(), self.config.dedup_horizon),
            };
            tracing::info!(%shard, next_offset = counter.next_offset(), "partition assigned");
            let mut owned = self.owned();
            owned
                .marks
                .assign(shard.clone(), counter.newest_event_ms(), now);
            owned.sent_marks.remove(&shard);
            owned.counters.insert(shard, counter);
        }
        Ok(())
    }

    /// Flushes and checkpoints shards about to go, then forgets them.
    fn revoke(&self, partitions: &[TopicPartition]) -> Result<(), StreamError> {
        let shards: Vec<Shard> = partitions.iter().filter_map(|p| self.shard_of(p)).collect();
        let pending = self.emit(Some(&shards))?;
        // This runs inside the consumer's poll, so it cannot await: flush the producer (which
        // also covers records the loop emitted earlier), then every acknowledgement is in.
        self.producer.flush(Duration::from_secs(30))?;
        for delivered in pending {
            match futures::FutureExt::now_or_never(delivered) {
                Some(result) => {
                    result?;
                }
                None => {
                    return Err(StreamError::Rebalance(
                        "an output was not acknowledged after the flush".into(),
                    ));
                }
            }
        }
        self.save(Some(&shards))?;
        let mut owned = self.owned();
        for shard in &shards {
            owned.counters.remove(shard);
            owned.marks.revoke(shard);
            owned.sent_marks.remove(shard);
        }
        tracing::info!(count = shards.len(), "partitions handed over");
        Ok(())
    }

    /// Produces what the chosen shards (all when `None`) owe: finished panes and changed
    /// watermarks.
    pub(super) fn emit(&self, only: Option<&[Shard]>) -> Result<Pending, StreamError> {
        let now = now_ms();
        let mut records = Vec::new();
        {
            let mut owned = self.owned();
            let lag = self
                .lag
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Owned {
                counters,
                marks,
                sent_marks,
            } = &mut *owned;
            if let Some(watermark) = marks.job_watermark(now) {
                self.metrics.watermark_ms.set(watermark);
            }
            for (shard, counter) in counters.iter_mut() {
                if only.is_some_and(|only| !only.contains(shard)) {
                    continue;
                }
                let idle = marks.is_idle(shard, now) && lag.get(shard) == Some(&0);
                for pane in counter.flush(&self.rules, idle) {
                    if !pane.is_final {
                        self.metrics
                            .observe_emission_delay(now - (pane.pane_start + pane.pane_ms));
                    }
                    records.push(TrendingRecord::Pane(pane));
                }
                let mark = ShardWatermark {
                    shard: shard.clone(),
                    watermark_ms: counter.watermark(&self.rules),
                    newest_event_ms: counter.newest_event_ms(),
                    idle,
                };
                if sent_marks.get(shard) != Some(&mark) {
                    sent_marks.insert(shard.clone(), mark.clone());
                    records.push(TrendingRecord::Watermark(mark));
                }
            }
        }
        let mut pending: Pending = Vec::with_capacity(records.len());
        for record in &records {
            pending.push(Box::pin(self.produce(record)?));
        }
        self.metrics.events_out.inc_by(records.len() as u64);
        Ok(pending)
    }

    fn produce(
        &self,
        record: &TrendingRecord,
    ) -> Result<impl Future<Output = bus::Result<bus::Delivered>> + Send + use<>, StreamError> {
        let key = record.key();
        let payload = record.encode();
        let out = OutRecord {
            topic: Topic::Trending,
            key: key.as_bytes(),
            payload: &payload,
            headers: &[],
        };
        match self.producer.enqueue(out) {
            Err(bus::BusError::QueueFull) => {
                // Let the queue drain, then try once more; a second refusal is a real problem.
                self.producer.flush(Duration::from_secs(30))?;
                Ok(self.producer.enqueue(out)?)
            }
            other => Ok(other?),
        }
    }

    /// Writes the chosen shards' checkpoints (all when `None`).
    pub(super) fn save(&self, only: Option<&[Shard]>) -> Result<(), StreamError> {
        let started = Instant::now();
        let snapshots: Vec<_> = {
            let owned = self.owned();
            let remembered: usize = owned.counters.values().map(|c| c.remembered()).sum();
            self.metrics
                .dedup_remembered
                .set(i64::try_from(remembered).unwrap_or(i64::MAX));
            owned
                .counters
                .iter()
                .filter(|(shard, _)| only.is_none_or(|only| only.contains(shard)))
                .map(|(_, counter)| counter.snapshot())
                .collect()
        };
        let mut bytes = 0;
        for snapshot in &snapshots {
            bytes += self
                .checkpoints
                .save(&Self::checkpoint_name(&snapshot.shard), snapshot)?;
        }
        self.metrics.checkpointed();
        self.metrics
            .checkpoint_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .checkpoint_seconds
            .set(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Folds one record into its shard. Returns why it must be dead-lettered, if it must.
    pub(super) fn apply(&self, record: &InRecord) -> Option<Reason> {
        let shard = Shard {
            topic: record.topic,
            partition: record.partition,
        };
        let now = now_ms();
        let mut owned = self.owned();
        let Owned {
            counters, marks, ..
        } = &mut *owned;
        let Some(counter) = counters.get_mut(&shard) else {
            // Revoked between fetch and delivery; its next owner reads it again.
            return None;
        };
        let decoded = codec::decode(record.payload.as_deref().unwrap_or_default());
        let verdict = match &decoded {
            Ok(envelope) => {
                let verdict = counter.apply(&self.rules, &self.places, record.offset, envelope);
                if matches!(verdict, Verdict::Counted | Verdict::Ignored) {
                    marks.observe(&shard, envelope.event_time, now);
                }
                verdict
            }
            Err(_) => counter.skip(record.offset),
        };
        match (verdict, decoded) {
            (Verdict::Replayed, _) => {
                self.metrics.replayed_skipped.inc();
                None
            }
            (Verdict::Duplicate, _) => {
                self.metrics.duplicates_dropped.inc();
                None
            }
            (_, Err(error)) => Some(Reason::from(&error)),
            (Verdict::Late { watermark_ms }, Ok(envelope)) => {
                self.metrics.late_events.inc();
                Some(Reason::new(
                    Reason::LATE,
                    format!(
                        "event time {} is before partition {shard}'s watermark {watermark_ms} minus the allowed lateness of {} ms",
                        envelope.event_time, self.rules.allowed_lateness_ms
                    ),
                ))
            }
            (Verdict::Counted | Verdict::Ignored, Ok(_)) => {
                self.metrics.events_in.inc();
                None
            }
        }
    }

    /// Each owned shard's topic name, partition and next offset, as checkpointed.
    fn positions(&self) -> Vec<(String, i32, i64)> {
        self.owned()
            .counters
            .values()
            .map(|counter| {
                let shard = counter.shard();
                (
                    self.bus_config.topic_name(shard.topic),
                    shard.partition,
                    counter.next_offset(),
                )
            })
            .collect()
    }

    /// Lag per owned shard: the log end minus the first offset not yet in its state.
    fn set_lag(&self, log_ends: &[(TopicPartition, i64)]) {
        let by_shard: HashMap<Shard, i64> = {
            let owned = self.owned();
            log_ends
                .iter()
                .filter_map(|(partition, end)| {
                    let shard = self.shard_of(partition)?;
                    let next = owned.counters.get(&shard)?.next_offset();
                    Some((shard, (end - next).max(0)))
                })
                .collect()
        };
        self.metrics.set_lag(
            by_shard
                .iter()
                .map(|(shard, lag)| {
                    (
                        self.bus_config.topic_name(shard.topic),
                        shard.partition,
                        *lag,
                    )
                })
                .collect(),
        );
        let behind = by_shard
            .iter()
            .filter(|(_, lag)| **lag > self.config.ready_max_lag)
            .max_by_key(|(_, lag)| **lag);
        match behind {
            _ if by_shard.is_empty() => self
                .readiness
                .set_not_ready("no partition of clicks or orders assigned yet"),
            Some((shard, lag)) => self.readiness.set_not_ready(format!(
                "{}[{}] is {lag} records behind (trending.ready_max_lag = {})",
                shard.topic, shard.partition, self.config.ready_max_lag
            )),
            None => self.readiness.set_ready(),
        }
        *self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = by_shard;
    }

    pub(super) fn take_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn fail(&self, error: StreamError) {
        tracing::error!(%error, "rebalance handling failed");
        *self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
    }
}

pub(super) async fn await_all(pending: Pending) -> Result<(), StreamError> {
    for delivered in futures::future::join_all(pending).await {
        delivered?;
    }
    Ok(())
}

/// Runs the job's side of a rebalance on the consumer's poll path.
pub(super) struct Hook(pub(super) Arc<Job>);

impl RebalanceHook for Hook {
    fn assigned(&self, partitions: &[TopicPartition]) {
        if let Err(error) = self.0.assign(partitions) {
            self.0.fail(error);
        }
    }

    fn revoking(&self, partitions: &[TopicPartition]) {
        if let Err(error) = self.0.revoke(partitions) {
            self.0.fail(error);
        }
    }
}

/// Trending on the runtime's consumer driver: a tick publishes the panes that are due; a flush
/// publishes the rest, waits for every acknowledgement, saves the checkpoints and reports the
/// positions they cover, so no offset commit runs ahead of a checkpoint.
struct OnDriver {
    job: Arc<Job>,
    pending: Pending,
}

impl driver::Job for OnDriver {
    type Error = StreamError;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, StreamError> {
        Ok(match self.job.apply(record) {
            Some(reason) => Applied::DeadLetter(reason),
            None => Applied::Done,
        })
    }

    async fn tick(&mut self) -> Result<(), StreamError> {
        self.pending.extend(self.job.emit(None)?);
        if self.pending.len() > 10_000 {
            await_all(std::mem::take(&mut self.pending)).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<Vec<Position>, StreamError> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend(self.job.emit(None)?);
        await_all(pending).await?;
        // Serialising and fsyncing the checkpoint files is disk work: the CPU pool's, not the
        // I/O runtime's.
        let saving = Arc::clone(&self.job);
        runtime::cpu::run(move || saving.save(None)).await??;
        Ok(self
            .job
            .positions()
            .into_iter()
            .map(|(topic_name, partition, next_offset)| Position {
                topic_name,
                partition,
                next_offset,
            })
            .collect())
    }

    fn failure(&mut self) -> Option<StreamError> {
        self.job.take_failure().map(StreamError::Rebalance)
    }

    async fn log_ends(&mut self, ends: &[(TopicPartition, i64)]) {
        self.job.set_lag(ends);
    }
}

/// Runs the job on the driver until `shutdown`: apply records, publish every
/// `emit_interval_ms`, checkpoint every `checkpoint_interval_ms`; then publish, checkpoint,
/// commit and leave the group.
pub(super) async fn consume(
    job: Arc<Job>,
    bus: &Bus,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let settings = Settings {
        group: job.config.group_id.clone(),
        topics: vec![Topic::Clicks, Topic::Orders],
        hook: Arc::new(Hook(Arc::clone(&job))),
        stage: job.config.group_id.clone(),
        flush_every: Duration::from_millis(job.config.checkpoint_interval_ms.max(50)),
        tick_every: Some(Duration::from_millis(job.config.emit_interval_ms.max(10))),
        dead_letters: Some(job.metrics.dead_letters.clone()),
    };
    let mut on_driver = OnDriver {
        job,
        pending: Vec::new(),
    };
    driver::run(bus, settings, Offsets::FromFlush, &mut on_driver, shutdown).await
}
