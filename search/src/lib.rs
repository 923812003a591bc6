//! Product search for the storefront: a tantivy index kept current from the `catalog` and
//! `inventory` topics, typo-tolerant query understanding, ranking with a popularity prior
//! learnt from searches, clicks and orders, facets and filters, deliverability to a pincode,
//! and `/v1/search` and `/v1/suggest` on the front door.
//!
//! - [`text`]: units, the analyzer, the typo budget, synonyms and stop words.
//! - [`record`]: a product as search holds it, folded from events (pure).
//! - [`schema`] and [`index`]: the fields, and the index with its commit payload.
//! - [`query`]: words to a tantivy query; [`collect`]: matches and facets.
//! - [`prior`]: the popularity prior (pure).
//! - [`engine`]: one search or completion, end to end.
//! - `job` and `http`: the Kafka edge and the routes.

pub mod collect;
pub mod engine;
mod http;
pub mod index;
mod job;
pub mod prior;
pub mod query;
pub mod record;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use model::deliver::Deliverability;
use runtime::Stage;
use runtime::metrics::{Metrics, Registry};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use engine::Engine;
pub use job::TOPICS;

use crate::prior::PriorConfig;
use crate::query::RankConfig;

/// Why search could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search configuration: {0}")]
    Config(String),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Io(String),
    #[error("search index holds something unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Checkpoint(#[from] runtime::checkpoint::CheckpointError),
    #[error(transparent)]
    Cpu(#[from] runtime::cpu::CpuError),
}

impl From<std::io::Error> for SearchError {
    fn from(error: std::io::Error) -> Self {
        SearchError::Io(error.to_string())
    }
}

/// Search settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The consumer group's name; the index's generation is appended, so a new or rebuilt
    /// index reads the topics from the start and every instance keeps its own replica.
    pub group_id: String,
    /// Where the index and the prior's checkpoint live; the binary puts it under `data_dir`.
    pub dir: Option<PathBuf>,
    /// How often what was indexed is committed and shown to searches, ms.
    pub commit_interval_ms: u64,
    /// How often the popularity prior is checkpointed, ms.
    pub prior_checkpoint_interval_ms: u64,
    /// The index writer's buffer, MB (at least 15).
    pub writer_memory_mb: usize,
    /// Ready once every partition is at most this many records behind.
    pub ready_max_lag: i64,
    /// Searches answered at once; more are refused with 503 and Retry-After.
    pub max_in_flight: usize,
    /// Longest `q`, characters.
    pub max_query_chars: usize,
    pub max_per_page: usize,
    /// With `pincode`, how many of the best matches are checked for delivery.
    pub pincode_window: usize,
    /// Synonyms and stop words (the shipped list when unset; see search/data/vocabulary.toml).
    pub vocabulary_file: Option<PathBuf>,
    pub rank: RankConfig,
    pub prior: PriorConfig,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            group_id: "search".into(),
            dir: None,
            commit_interval_ms: 200,
            prior_checkpoint_interval_ms: 5_000,
            writer_memory_mb: 64,
            ready_max_lag: 10_000,
            max_in_flight: 64,
            max_query_chars: 200,
            max_per_page: 100,
            pincode_window: 500,
            vocabulary_file: None,
            rank: RankConfig::default(),
            prior: PriorConfig::default(),
        }
    }
}

impl SearchConfig {
    pub fn validate(&self) -> Result<(), SearchError> {
        let fail = |m: &str| Err(SearchError::Config(m.to_owned()));
        if self.writer_memory_mb < 15 {
            return fail("search.writer_memory_mb must be at least 15 (tantivy's floor)");
        }
        if self.max_in_flight == 0 || self.max_per_page == 0 || self.max_query_chars == 0 {
            return fail(
                "search.max_in_flight, max_per_page and max_query_chars must be at least 1",
            );
        }
        if self.prior.smoothing <= 0.0 || self.prior.base_ctr <= 0.0 {
            return fail("search.prior.smoothing and base_ctr must be above 0");
        }
        if self.prior.ctr_weight < 0.0 || self.prior.sales_weight < 0.0 || self.rank.in_stock < 0.0
        {
            return fail(
                "search boosts (prior.ctr_weight, prior.sales_weight, rank.in_stock) must not be negative",
            );
        }
        Ok(())
    }
}

/// Starts search as a stage: the job that keeps the index and the prior current, and the
/// routes. `deliverability` answers `pincode` filters (the serviceability stage's state).
pub fn stage(
    config: SearchConfig,
    deliverability: Option<Arc<dyn Deliverability>>,
    bus: Arc<Bus>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Stage, SearchError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new(registry, "search"));
    let job = job::Job::open(&config, registry, Arc::clone(&metrics))?;
    let engine = Arc::new(Engine {
        index: Arc::clone(&job.index),
        prior: Arc::clone(&job.prior),
        vocabulary: text::Vocabulary::load(config.vocabulary_file.as_deref())?,
        rank: config.rank.clone(),
        prior_config: config.prior.clone(),
        deliverability,
        pincode_window: config.pincode_window,
    });
    let readiness = job.readiness.clone();
    let producer = bus.producer()?;
    let routes = http::routes(engine, &config, producer, registry);
    let work = async move { job::consume(job, &bus, &shutdown).await };
    Ok(Stage {
        name: "search",
        routes,
        api: http::api(),
        readiness,
        work: work.map_err(|e: SearchError| e.into()).boxed(),
    })
}
