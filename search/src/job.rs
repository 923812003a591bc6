//! The Kafka edge of search: a consumer of the catalog and inventory topics (into the
//! index) and of searches, clicks and orders (into the popularity prior). The index commits
//! every `commit_interval_ms` with its positions in tantivy's commit payload; the prior is
//! checkpointed with its own positions every `prior_checkpoint_interval_ms`. Each skips the
//! records below its positions, so a redelivery after a crash is not applied twice.
//!
//! Every instance keeps a whole replica: the group is named after the index's generation,
//! so two instances (or a rebuilt index) each read every partition from the start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bus::{Bus, InRecord, NoHook, TopicPartition};
use model::dlq::Reason;
use model::{Topic, codec};
use runtime::checkpoint::Checkpoints;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::{Gauge, Metrics, Registry};
use tokio_util::sync::CancellationToken;

use crate::index::{Indexer, Opened, SearchIndex};
use crate::prior::Prior;
use crate::{SearchConfig, SearchError};

/// The topics the job reads.
pub const TOPICS: [Topic; 5] = [
    Topic::Catalog,
    Topic::Inventory,
    Topic::Searches,
    Topic::Clicks,
    Topic::Orders,
];

const PRIOR: &str = "search-prior";

fn indexes(topic: Topic) -> bool {
    matches!(topic, Topic::Catalog | Topic::Inventory)
}

#[derive(Debug)]
struct Gauges {
    documents: Gauge,
    disk_bytes: Gauge,
    prior_pairs: Gauge,
}

pub(crate) struct Job {
    pub(crate) index: Arc<SearchIndex>,
    indexer: Arc<Mutex<Indexer>>,
    pub(crate) prior: Arc<RwLock<Prior>>,
    checkpoints: Checkpoints,
    config: SearchConfig,
    group: String,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    /// When the prior was last checkpointed, and the positions that checkpoint covers.
    prior_saved: Mutex<(Instant, BTreeMap<String, i64>)>,
    pub(crate) readiness: runtime::Readiness,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("group", &self.group)
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
        config: &SearchConfig,
        registry: &Registry,
        metrics: Arc<Metrics>,
    ) -> Result<Job, SearchError> {
        let Some(dir) = config.dir.clone() else {
            return Err(SearchError::Config(
                "search.dir must be set: the index lives there (the binary puts it under data_dir)"
                    .into(),
            ));
        };
        let (index, payload, opened) = SearchIndex::open(&dir.join("index"))?;
        let checkpoints = Checkpoints::open(&dir)?;
        let mut prior: Prior = checkpoints.load(PRIOR)?.unwrap_or_default();
        if opened != Opened::Resumed {
            // A new index is read from the start under a new group; the prior starts over
            // with it rather than count the same clicks twice.
            prior = Prior::default();
        }
        match &opened {
            Opened::Resumed => tracing::info!(
                documents = index.searcher().num_docs(),
                generation = payload.generation,
                "search index resumed"
            ),
            Opened::Created => tracing::info!("search index created; indexing the catalog"),
            Opened::Rebuilt { why } => {
                tracing::warn!(%why, "search index rebuilding from the catalog topic")
            }
        }
        let saved_positions = prior.positions.clone();
        let group = format!("{}-{}", config.group_id, payload.generation);
        let indexer = Indexer::new(
            Arc::clone(&index),
            payload,
            config.writer_memory_mb * 1024 * 1024,
        )?;
        let job = "search";
        let gauges = Gauges {
            documents: registry.gauge(
                "shopstream_search_documents",
                "Products searchable in this instance's index",
                job,
            ),
            disk_bytes: registry.gauge(
                "shopstream_search_index_bytes",
                "Bytes the index takes on disk",
                job,
            ),
            prior_pairs: registry.gauge(
                "shopstream_search_prior_pairs",
                "Query and product pairs the popularity prior remembers",
                job,
            ),
        };
        Ok(Job {
            index,
            indexer: Arc::new(Mutex::new(indexer)),
            prior: Arc::new(RwLock::new(prior)),
            checkpoints,
            config: config.clone(),
            group,
            metrics,
            gauges,
            prior_saved: Mutex::new((Instant::now(), saved_positions)),
            readiness: runtime::Readiness::new(),
        })
    }

    fn apply(&self, record: &InRecord) -> Result<Applied, SearchError> {
        let position = driver::position_key(&record.topic_name, record.partition);
        let fresh = if indexes(record.topic) {
            lock(&self.indexer).take(&position, record.offset)
        } else {
            self.prior
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(&position, record.offset)
        };
        if !fresh {
            self.metrics.replayed_skipped.inc();
            return Ok(Applied::Done);
        }
        let envelope = match codec::decode(record.payload.as_deref().unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(error) => return Ok(Applied::DeadLetter(Reason::from(&error))),
        };
        self.metrics.events_in.inc();
        if indexes(record.topic) {
            match lock(&self.indexer).apply(&envelope) {
                Ok(()) => {}
                Err(Ok(invalid)) => {
                    return Ok(Applied::DeadLetter(Reason::new(
                        "invalid_product",
                        format!("{}: {invalid}", envelope.event_type()),
                    )));
                }
                Err(Err(error)) => return Err(error),
            }
        } else {
            self.prior
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .learn(&envelope, &self.config.prior);
        }
        Ok(Applied::Done)
    }

    /// Commits the index (and, when due, checkpoints the prior); the positions both cover.
    fn flush(&self, force_prior: bool) -> Result<Vec<Position>, SearchError> {
        let started = Instant::now();
        let mut positions = {
            let mut indexer = lock(&self.indexer);
            if indexer.commit()? {
                self.metrics.checkpointed();
                self.metrics
                    .checkpoint_seconds
                    .set(started.elapsed().as_secs_f64());
            }
            indexer.payload.positions.clone()
        };
        let prior_due = force_prior
            || lock(&self.prior_saved).0.elapsed()
                >= Duration::from_millis(self.config.prior_checkpoint_interval_ms);
        if prior_due {
            let prior = self
                .prior
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let bytes = self.checkpoints.save(PRIOR, &prior)?;
            self.metrics
                .checkpoint_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            self.gauges
                .prior_pairs
                .set(i64::try_from(prior.pairs()).unwrap_or(i64::MAX));
            positions.extend(prior.positions.clone());
            *lock(&self.prior_saved) = (Instant::now(), prior.positions);
        } else {
            positions.extend(lock(&self.prior_saved).1.clone());
        }
        self.gauges
            .documents
            .set(i64::try_from(self.index.searcher().num_docs()).unwrap_or(i64::MAX));
        self.gauges
            .disk_bytes
            .set(i64::try_from(self.index.disk_bytes()).unwrap_or(i64::MAX));
        Ok(driver::positions_of(&positions))
    }

    fn set_lag(&self, ends: &[(TopicPartition, i64)]) {
        let index_positions = lock(&self.indexer).payload.positions.clone();
        let prior = self
            .prior
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        driver::report_lag(
            ends,
            |key| {
                index_positions
                    .get(key)
                    .or_else(|| prior.positions.get(key))
                    .copied()
            },
            self.config.ready_max_lag,
            "search.ready_max_lag",
            &self.readiness,
            &self.metrics,
        );
    }
}

struct OnDriver(Arc<Job>);

impl driver::Job for OnDriver {
    type Error = SearchError;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, SearchError> {
        self.0.apply(record)
    }

    async fn flush(&mut self) -> Result<Vec<Position>, SearchError> {
        // A commit writes and fsyncs segments: the CPU pool's work.
        let job = Arc::clone(&self.0);
        runtime::cpu::run(move || job.flush(false)).await?
    }

    async fn log_ends(&mut self, ends: &[(TopicPartition, i64)]) {
        self.0.set_lag(ends);
    }
}

/// Runs the job until `shutdown`, committing every `commit_interval_ms` and once more, with
/// the prior, on the way out.
pub(crate) async fn consume(
    job: Job,
    bus: &Bus,
    shutdown: &CancellationToken,
) -> Result<(), SearchError> {
    let job = Arc::new(job);
    let settings = Settings {
        group: job.group.clone(),
        topics: TOPICS.to_vec(),
        hook: Arc::new(NoHook),
        stage: "search".to_owned(),
        flush_every: Duration::from_millis(job.config.commit_interval_ms.max(20)),
        tick_every: None,
        dead_letters: Some(job.metrics.dead_letters.clone()),
    };
    let outcome = driver::run(
        bus,
        settings,
        Offsets::FromFlush,
        &mut OnDriver(Arc::clone(&job)),
        shutdown,
    )
    .await;
    let last = Arc::clone(&job);
    runtime::cpu::run(move || last.flush(true)).await??;
    outcome
}
