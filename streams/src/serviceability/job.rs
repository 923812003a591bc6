//! The Kafka edge of serviceability: a consumer-group member over the logistics, catalog,
//! inventory, orders and shipments topics that folds every record into the serving state,
//! dead-letters what it cannot use, and checkpoints the state with the offsets it covers.
//!
//! The state is one piece (a lane learns from every partition of `shipments`), so it is
//! checkpointed as one file holding each partition's next offset; records below it are
//! skipped as already applied, so a redelivery after a crash is not learnt twice. One
//! instance owns every partition: a second member of the group would learn from half the
//! deliveries (see ARCHITECTURE.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, InRecord, NoHook, TopicPartition};
use model::dlq::Reason;
use model::{Topic, codec};
use runtime::checkpoint::Checkpoints;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::{FloatGauge, Gauge, Metrics, Registry};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::learn::LearnConfig;
use super::promise::PromiseConfig;
use super::state::{Serviceability, State};
use crate::StreamError;

/// Serviceability settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceabilityConfig {
    pub group_id: String,
    /// Where the state and offsets are checkpointed; the binary puts it under `data_dir`.
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_interval_ms: u64,
    /// Ready (`/readyz`) once every partition is at most this many records behind.
    pub ready_max_lag: i64,
    /// Most items in one `POST /v1/serviceability`.
    pub max_items: usize,
    /// How far from now a storefront's `order_time` may be, ms (`/v1/promise` takes any).
    pub max_order_time_skew_ms: i64,
    pub learn: LearnConfig,
    pub promise: PromiseConfig,
}

impl Default for ServiceabilityConfig {
    fn default() -> Self {
        Self {
            group_id: "serviceability".into(),
            checkpoint_dir: None,
            checkpoint_interval_ms: 5_000,
            ready_max_lag: 10_000,
            max_items: 100,
            max_order_time_skew_ms: 24 * 60 * 60 * 1000,
            learn: LearnConfig::default(),
            promise: PromiseConfig::default(),
        }
    }
}

impl ServiceabilityConfig {
    pub fn validate(&self) -> Result<(), StreamError> {
        let fail = |message: String| Err(StreamError::Config(message));
        let q = self.promise.quantile;
        if !(q > 0.0 && q <= 1.0) {
            return fail(format!(
                "serviceability.promise.quantile must be above 0 and at most 1, got {q}"
            ));
        }
        if self.learn.min_deliveries == 0 {
            return fail("serviceability.learn.min_deliveries must be at least 1".into());
        }
        if self.learn.half_life_days == 0 {
            return fail("serviceability.learn.half_life_days must be at least 1".into());
        }
        if self.max_items == 0 {
            return fail("serviceability.max_items must be at least 1".into());
        }
        if self.max_order_time_skew_ms < 0 {
            return fail("serviceability.max_order_time_skew_ms must not be negative".into());
        }
        Ok(())
    }
}

/// The topics the job reads.
pub const TOPICS: [Topic; 5] = [
    Topic::Logistics,
    Topic::Catalog,
    Topic::Inventory,
    Topic::Orders,
    Topic::Shipments,
];

const CHECKPOINT: &str = "serviceability";

/// The checkpointed position of every partition under `dir` (topic name on the cluster,
/// partition, next offset): where the job resumes and below which it skips records as
/// already learnt. Empty when there is no checkpoint yet.
pub fn checkpointed_positions(
    dir: &std::path::Path,
) -> Result<Vec<(String, i32, i64)>, runtime::checkpoint::CheckpointError> {
    /// The checkpoint's positions alone, without parsing what was learnt.
    #[derive(Deserialize)]
    struct Positions {
        positions: std::collections::BTreeMap<String, i64>,
    }
    if !dir.join(format!("{CHECKPOINT}.json")).is_file() {
        return Ok(Vec::new());
    }
    let Some(saved) = Checkpoints::open(dir)?.load::<Positions>(CHECKPOINT)? else {
        return Ok(Vec::new());
    };
    Ok(saved
        .positions
        .into_iter()
        .filter_map(|(key, next)| {
            let (topic, partition) = key.rsplit_once('/')?;
            Some((topic.to_owned(), partition.parse().ok()?, next))
        })
        .collect())
}

/// Gauges of what was learnt, beside the runtime's per-job series.
#[derive(Debug)]
pub(super) struct LearnGauges {
    deliveries: Gauge,
    duplicates: Gauge,
    orphans: Gauge,
    evicted: Gauge,
    pincode_lanes: Gauge,
    on_time: FloatGauge,
    slack: FloatGauge,
}

impl LearnGauges {
    fn new(registry: &Registry) -> Self {
        let job = "serviceability";
        Self {
            deliveries: registry.gauge(
                "shopstream_serviceability_deliveries_learnt",
                "Deliveries learnt from, each once",
                job,
            ),
            duplicates: registry.gauge(
                "shopstream_serviceability_deliveries_duplicate",
                "Deliveries of a shipment already learnt from, not counted again",
                job,
            ),
            orphans: registry.gauge(
                "shopstream_serviceability_deliveries_orphan",
                "Deliveries of a shipment never seen created",
                job,
            ),
            evicted: registry.gauge(
                "shopstream_serviceability_open_evicted",
                "Open orders or shipments dropped to stay within learn.max_open",
                job,
            ),
            pincode_lanes: registry.gauge(
                "shopstream_serviceability_pincode_lanes",
                "Pincode-to-pincode lanes held",
                job,
            ),
            on_time: registry.float_gauge(
                "shopstream_serviceability_on_time_ratio",
                "Share of deliveries on or before the promised day, every courier (per courier: GET /v1/promise/accuracy)",
                job,
            ),
            slack: registry.float_gauge(
                "shopstream_serviceability_mean_slack_days",
                "Mean of promised minus actual delivery day, every courier",
                job,
            ),
        }
    }

    fn set(&self, state: &State) {
        let counts = state.learnt.counts;
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.deliveries, counts.deliveries);
        gauge(&self.duplicates, counts.duplicates);
        gauge(&self.orphans, counts.orphans);
        gauge(&self.evicted, counts.evicted);
        gauge(&self.pincode_lanes, state.learnt.lanes()[0] as u64);
        let all =
            state
                .learnt
                .accuracy
                .values()
                .fold(super::learn::Accuracy::default(), |sum, one| {
                    super::learn::Accuracy {
                        deliveries: sum.deliveries + one.deliveries,
                        on_time: sum.on_time + one.on_time,
                        slack_days: sum.slack_days + one.slack_days,
                    }
                });
        if let (Some(rate), Some(slack)) = (all.on_time_rate(), all.mean_slack_days()) {
            self.on_time.set(rate);
            self.slack.set(slack);
        }
    }
}

pub(super) struct Job {
    pub(super) service: Arc<Serviceability>,
    checkpoints: Checkpoints,
    config: ServiceabilityConfig,
    metrics: Arc<Metrics>,
    gauges: LearnGauges,
    pub(super) readiness: runtime::Readiness,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("group", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// The job, its state restored from the last checkpoint.
    pub(super) fn open(
        config: ServiceabilityConfig,
        service: Arc<Serviceability>,
        registry: &Registry,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StreamError> {
        config.validate()?;
        let Some(dir) = config.checkpoint_dir.clone() else {
            return Err(StreamError::Config(
                "serviceability.checkpoint_dir must be set: without it a restart would relearn every delivery (the binary puts it under data_dir)".into(),
            ));
        };
        let checkpoints = Checkpoints::open(dir)?;
        if let Some(state) = checkpoints.load::<State>(CHECKPOINT)? {
            tracing::info!(
                deliveries = state.learnt.counts.deliveries,
                "serviceability state restored"
            );
            *service.write() = state;
        }
        let gauges = LearnGauges::new(registry);
        gauges.set(&service.read());
        Ok(Self {
            service,
            checkpoints,
            config,
            metrics,
            gauges,
            readiness: runtime::Readiness::new(),
        })
    }
}

impl Job {
    /// A logistics record read ahead of the consumer; applying it again in its turn changes
    /// nothing (warehouses, couriers, coverage and holidays are upserts, and a warehouse's
    /// registration releases its waiting handling samples once). One the network refuses is
    /// left for the consumer, which dead-letters it with its reason.
    fn apply_ahead(&self, record: &InRecord) {
        if let Ok(envelope) = codec::decode(record.payload.as_deref().unwrap_or_default()) {
            let _ =
                self.service
                    .write()
                    .apply(&envelope, self.service.regions(), &self.service.learn);
        }
    }
}

impl driver::WholeState for Job {
    type Error = StreamError;

    fn apply(&self, record: &InRecord) -> Applied {
        let position = format!("{}/{}", record.topic_name, record.partition);
        let mut state = self.service.write();
        if state
            .positions
            .get(&position)
            .is_some_and(|next| record.offset < *next)
        {
            self.metrics.replayed_skipped.inc();
            return Applied::Done;
        }
        state.positions.insert(position, record.offset + 1);
        let envelope = match codec::decode(record.payload.as_deref().unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(error) => return Applied::DeadLetter(Reason::from(&error)),
        };
        match state.apply(&envelope, self.service.regions(), &self.service.learn) {
            Ok(()) => {
                self.metrics.events_in.inc();
                Applied::Done
            }
            Err(reason) => Applied::DeadLetter(Reason::new(
                "invalid_reference",
                format!("{}: {reason}", envelope.event_type()),
            )),
        }
    }

    fn save(&self) -> Result<Vec<Position>, StreamError> {
        let started = Instant::now();
        let state = self.service.read();
        let bytes = self.checkpoints.save(CHECKPOINT, &*state)?;
        self.gauges.set(&state);
        self.metrics.checkpointed();
        self.metrics
            .checkpoint_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .checkpoint_seconds
            .set(started.elapsed().as_secs_f64());
        Ok(state
            .positions
            .iter()
            .filter_map(|(key, next)| {
                let (topic_name, partition) = key.rsplit_once('/')?;
                Some(Position {
                    topic_name: topic_name.to_owned(),
                    partition: partition.parse().ok()?,
                    next_offset: *next,
                })
            })
            .collect())
    }

    fn set_lag(&self, ends: &[(TopicPartition, i64)]) {
        let state = self.service.read();
        driver::report_lag(
            ends,
            |key| state.positions.get(key).copied(),
            self.config.ready_max_lag,
            "serviceability.ready_max_lag",
            &self.readiness,
            &self.metrics,
        );
    }
}

/// Runs the job on the driver until `shutdown`, checkpointing every
/// `checkpoint_interval_ms` and once more on the way out.
pub(super) async fn consume(
    job: Arc<Job>,
    bus: &Bus,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    // Handling and transit are counted in the warehouses' and couriers' calendars, which
    // travel on the logistics topic. Read from the group, a backlog of orders and shipments
    // can come before them (the crash test saw 20,000 handlings of 36,000 learnt: samples
    // waiting for their warehouse's registration past the per-warehouse bound were dropped),
    // so the network is read to its end first, at every start.
    driver::read_ahead(bus, Topic::Logistics, shutdown, |record| {
        job.apply_ahead(record);
    })
    .await?;
    let settings = Settings {
        group: job.config.group_id.clone(),
        topics: TOPICS.to_vec(),
        // Nothing to hand over: the state is whole in every checkpoint, and the driver only
        // commits what a flush reported.
        hook: Arc::new(NoHook),
        stage: job.config.group_id.clone(),
        flush_every: Duration::from_millis(job.config.checkpoint_interval_ms.max(50)),
        tick_every: None,
        dead_letters: Some(job.metrics.dead_letters.clone()),
    };
    driver::run(
        bus,
        settings,
        Offsets::FromFlush,
        &mut driver::OnCpu(job),
        shutdown,
    )
    .await
}
