//! The Kafka edge of recommendations: a consumer of the catalog, inventory, clicks and
//! orders topics folding into the [`Learner`], checkpointed with its positions every
//! `checkpoint_interval_ms` (records below the positions are skipped, so a redelivery after
//! a crash is not learnt twice), and a loop that rebuilds the item vectors on the CPU pool
//! every `rebuild_interval_ms` when something was learnt.
//!
//! Every instance keeps a whole replica: the group is named after the replica id kept with
//! the checkpoint, so two instances (or one whose checkpoint was lost) each read every
//! partition from the start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bus::{Bus, InRecord, NoHook, TopicPartition};
use model::dlq::Reason;
use model::{Topic, codec};
use runtime::checkpoint::Checkpoints;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::{FloatGauge, Gauge, Metrics, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::learn::Learner;
use crate::vectors::Store;
use crate::{RecommendConfig, RecommendError, embed};

/// The topics the job reads.
pub const TOPICS: [Topic; 5] = [
    Topic::Catalog,
    Topic::Inventory,
    Topic::Clicks,
    Topic::Searches,
    Topic::Orders,
];

const CHECKPOINT: &str = "recommend-state";

/// What is checkpointed: the learnt state and whose replica it is.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    replica: String,
    learner: Learner,
}

#[derive(Debug)]
struct Gauges {
    items: Gauge,
    edges: Gauge,
    sessions: Gauge,
    customers: Gauge,
    vectors: Gauge,
    vector_bytes: Gauge,
    rebuild_seconds: FloatGauge,
}

pub(crate) struct Job {
    pub(crate) learner: Arc<RwLock<Learner>>,
    pub(crate) vectors: Arc<Store>,
    checkpoints: Checkpoints,
    config: RecommendConfig,
    replica: String,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    /// When the state was last checkpointed, and the positions that checkpoint covers.
    saved: Mutex<(Instant, BTreeMap<String, i64>)>,
    /// Interactions learnt since the vectors were last rebuilt.
    unbuilt: AtomicU64,
    pub(crate) readiness: runtime::Readiness,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Job {
    pub(crate) fn open(
        config: &RecommendConfig,
        registry: &Registry,
        metrics: Arc<Metrics>,
    ) -> Result<Job, RecommendError> {
        let Some(dir) = config.dir.clone() else {
            return Err(RecommendError::Config(
                "recommend.dir must be set: the learnt state lives there (the binary puts it under data_dir)"
                    .into(),
            ));
        };
        let checkpoints = Checkpoints::open(&dir)?;
        let (replica, mut learner) = match checkpoints.load::<Saved>(CHECKPOINT)? {
            Some(saved) => {
                tracing::info!(replica = %saved.replica, "recommendations resumed from the checkpoint");
                (saved.replica, saved.learner)
            }
            None => (
                uuid::Uuid::now_v7().simple().to_string(),
                Learner::default(),
            ),
        };
        learner.ids.reindex();
        let positions = learner.positions.clone();
        let vectors = Arc::new(Store::open(&dir.join("vectors"))?);
        vectors.set_oversampling(config.vector_oversampling);
        let job = "recommend";
        let gauges = Gauges {
            items: registry.gauge(
                "shopstream_recommend_items",
                "Products recommendations know",
                job,
            ),
            edges: registry.gauge(
                "shopstream_recommend_edges",
                "Neighbour entries in the viewed-together and bought-together graphs",
                job,
            ),
            sessions: registry.gauge(
                "shopstream_recommend_sessions",
                "Live sessions remembered",
                job,
            ),
            customers: registry.gauge(
                "shopstream_recommend_customers",
                "Customers whose recent items are remembered",
                job,
            ),
            vectors: registry.gauge(
                "shopstream_recommend_vectors",
                "Items in the current arroy index",
                job,
            ),
            vector_bytes: registry.gauge(
                "shopstream_recommend_vector_bytes",
                "Bytes the current arroy index takes on disk",
                job,
            ),
            rebuild_seconds: registry.float_gauge(
                "shopstream_recommend_rebuild_seconds",
                "How long the last vector rebuild took",
                job,
            ),
        };
        Ok(Job {
            learner: Arc::new(RwLock::new(learner)),
            vectors,
            checkpoints,
            config: config.clone(),
            replica,
            metrics,
            gauges,
            saved: Mutex::new((Instant::now(), positions)),
            unbuilt: AtomicU64::new(1),
            readiness: runtime::Readiness::new(),
        })
    }

    fn group(&self) -> String {
        format!("{}-{}", self.config.group_id, self.replica)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Learner> {
        self.learner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a catalog record read ahead of the consumer (see [`driver::read_ahead`]); the
    /// consumer applies it again in its turn, which changes nothing: a product's catalog
    /// events set its state, and replaying them in order sets the same state.
    fn apply_ahead(&self, record: &InRecord) {
        if let Ok(envelope) = codec::decode(record.payload.as_deref().unwrap_or_default()) {
            self.write().apply(&envelope, &self.config.learn);
        }
    }

    fn apply(&self, record: &InRecord) -> Result<Applied, RecommendError> {
        let position = driver::position_key(&record.topic_name, record.partition);
        if !self.write().take(&position, record.offset) {
            self.metrics.replayed_skipped.inc();
            return Ok(Applied::Done);
        }
        let envelope = match codec::decode(record.payload.as_deref().unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(error) => return Ok(Applied::DeadLetter(Reason::from(&error))),
        };
        self.metrics.events_in.inc();
        let mut learner = self.write();
        let before = learner.interactions;
        learner.apply(&envelope, &self.config.learn);
        self.unbuilt
            .fetch_add(learner.interactions - before, Ordering::Relaxed);
        Ok(Applied::Done)
    }

    /// Checkpoints the state when due (or `force`); the positions the last checkpoint covers.
    fn flush(&self, force: bool) -> Result<Vec<Position>, RecommendError> {
        let due = force
            || lock(&self.saved).0.elapsed()
                >= Duration::from_millis(self.config.checkpoint_interval_ms);
        if due {
            let started = Instant::now();
            let learner = self
                .learner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let saved = Saved {
                replica: self.replica.clone(),
                learner,
            };
            let bytes = self.checkpoints.save(CHECKPOINT, &saved)?;
            self.metrics.checkpointed();
            self.metrics
                .checkpoint_seconds
                .set(started.elapsed().as_secs_f64());
            self.metrics
                .checkpoint_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            let sizes = saved.learner.sizes();
            let set = |gauge: &Gauge, n: usize| gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
            set(&self.gauges.items, sizes.items);
            set(&self.gauges.edges, sizes.viewed_edges + sizes.bought_edges);
            set(&self.gauges.sessions, sizes.sessions);
            set(&self.gauges.customers, sizes.customers);
            *lock(&self.saved) = (Instant::now(), saved.learner.positions);
        }
        Ok(driver::positions_of(&lock(&self.saved).1))
    }

    /// Rebuilds the item vectors from the viewed-together graph and swaps them in.
    pub(crate) fn rebuild(&self) -> Result<(), RecommendError> {
        let unbuilt = self.unbuilt.swap(0, Ordering::Relaxed);
        if unbuilt == 0 {
            return Ok(());
        }
        let edges = {
            let learner = self
                .learner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            learner.viewed.edges(learner.now, self.config.learn.decay())
        };
        let started = Instant::now();
        let vectors = embed::embed(&edges, self.config.dimensions, self.config.seed);
        let rebuilt = self
            .vectors
            .rebuild(&vectors, self.config.dimensions, self.config.seed)?;
        let seconds = started.elapsed().as_secs_f64();
        self.gauges.rebuild_seconds.set(seconds);
        self.gauges
            .vectors
            .set(i64::try_from(rebuilt.items).unwrap_or(i64::MAX));
        self.gauges
            .vector_bytes
            .set(i64::try_from(rebuilt.bytes).unwrap_or(i64::MAX));
        tracing::debug!(
            items = rebuilt.items,
            generation = rebuilt.generation,
            seconds,
            "item vectors rebuilt"
        );
        Ok(())
    }

    fn set_lag(&self, ends: &[(TopicPartition, i64)]) {
        let learner = self
            .learner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        driver::report_lag(
            ends,
            |key| learner.positions.get(key).copied(),
            self.config.ready_max_lag,
            "recommend.ready_max_lag",
            &self.readiness,
            &self.metrics,
        );
    }
}

struct OnDriver(Arc<Job>);

impl driver::Job for OnDriver {
    type Error = RecommendError;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, RecommendError> {
        self.0.apply(record)
    }

    async fn flush(&mut self) -> Result<Vec<Position>, RecommendError> {
        // A checkpoint serialises and fsyncs the whole state: the CPU pool's work.
        let job = Arc::clone(&self.0);
        runtime::cpu::run(move || job.flush(false)).await?
    }

    async fn log_ends(&mut self, ends: &[(TopicPartition, i64)]) {
        self.0.set_lag(ends);
    }
}

/// Runs the job until `shutdown`: consuming, checkpointing, and rebuilding the vectors; one
/// last checkpoint on the way out.
pub(crate) async fn run(
    job: Arc<Job>,
    bus: &Bus,
    shutdown: &CancellationToken,
) -> Result<(), RecommendError> {
    let settings = Settings {
        group: job.group(),
        topics: TOPICS.to_vec(),
        hook: Arc::new(NoHook),
        stage: "recommend".to_owned(),
        flush_every: Duration::from_millis(job.config.checkpoint_interval_ms.clamp(20, 1_000)),
        tick_every: None,
        dead_letters: Some(job.metrics.dead_letters.clone()),
    };
    let rebuilds = {
        let job = Arc::clone(&job);
        let shutdown = shutdown.clone();
        async move {
            let every = Duration::from_millis(job.config.rebuild_interval_ms.max(100));
            let mut due = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A rebuild that overran is not followed by a burst of catch-up rebuilds.
            due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Ends only by failing: on shutdown it waits for the consumer to finish.
                tokio::select! {
                    () = shutdown.cancelled() => std::future::pending::<()>().await,
                    _ = due.tick() => {}
                }
                let job = Arc::clone(&job);
                match runtime::cpu::run(move || job.rebuild()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err::<(), RecommendError>(error),
                    Err(error) => return Err(error.into()),
                }
            }
        }
    };
    let mut on_driver = OnDriver(Arc::clone(&job));
    let consume = driver::run(bus, settings, Offsets::FromFlush, &mut on_driver, shutdown);
    // Interactions are learnt only for products the catalog announced: read it to its end
    // first, or the consumer would meet a click before its product's upsert.
    driver::read_ahead(bus, Topic::Catalog, shutdown, |record| {
        job.apply_ahead(record)
    })
    .await?;
    let outcome = tokio::select! {
        outcome = consume => outcome,
        failed = rebuilds => failed,
    };
    let last = Arc::clone(&job);
    runtime::cpu::run(move || last.flush(true)).await??;
    outcome
}
