//! Recommendations for the storefront, learnt continuously from the clicks and orders
//! topics: viewed-together and bought-together neighbours (weighted, time-decayed
//! co-visitation), session next-item, for-you from a customer's recent items, item vectors
//! (PPMI + truncated SVD) served from arroy, and a trending fallback for cold starts.
//!
//! - [`graph`]: decayed weights and bounded neighbour lists (pure).
//! - [`learn`]: the fold from events to what is learnt (pure).
//! - [`embed`]: item vectors from the graph (pure); [`vectors`]: the arroy index, swapped whole.
//! - [`engine`]: one answer, end to end.
//! - `job` and `http`: the Kafka edge and the routes.

pub mod embed;
pub mod engine;
pub mod graph;
mod http;
mod job;
pub mod learn;
#[cfg(test)]
mod tests;
pub mod vectors;

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
pub use http::MAX_ITEMS;
pub use job::TOPICS;

use crate::engine::ServeConfig;
use crate::learn::LearnConfig;

/// Why recommendations could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("recommend configuration: {0}")]
    Config(String),
    #[error("recommend vectors: {0}")]
    Vectors(String),
    #[error("recommend state: {0}")]
    Io(String),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Checkpoint(#[from] runtime::checkpoint::CheckpointError),
    #[error(transparent)]
    Cpu(#[from] runtime::cpu::CpuError),
}

impl From<std::io::Error> for RecommendError {
    fn from(error: std::io::Error) -> Self {
        RecommendError::Io(error.to_string())
    }
}

/// Recommendation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendConfig {
    /// The consumer group's name; the replica id is appended, so every instance keeps a
    /// whole replica of what is learnt.
    pub group_id: String,
    /// Where the checkpoint and the vector index live; the binary puts it under `data_dir`.
    pub dir: Option<PathBuf>,
    /// How often the learnt state is checkpointed with its positions, ms.
    pub checkpoint_interval_ms: u64,
    /// How often the item vectors are rebuilt (when anything was learnt since), ms.
    pub rebuild_interval_ms: u64,
    /// Item vector length.
    pub dimensions: usize,
    /// Seeds the sketch and arroy's trees, so a rebuild of the same graph is the same index.
    pub seed: u64,
    /// Tree nodes a vector query inspects, in multiples of arroy's default: 16 keeps
    /// recall@10 near 0.96 over 1,000,000 vectors (BENCHMARKS.md).
    pub vector_oversampling: usize,
    /// Ready once every partition is at most this many records behind.
    pub ready_max_lag: i64,
    /// Requests answered at once; more are refused with 503 and Retry-After.
    pub max_in_flight: usize,
    pub learn: LearnConfig,
    pub serve: ServeConfig,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        Self {
            group_id: "recommend".into(),
            dir: None,
            checkpoint_interval_ms: 5_000,
            rebuild_interval_ms: 60_000,
            dimensions: 32,
            seed: 42,
            vector_oversampling: 16,
            ready_max_lag: 10_000,
            max_in_flight: 64,
            learn: LearnConfig::default(),
            serve: ServeConfig::default(),
        }
    }
}

impl RecommendConfig {
    pub fn validate(&self) -> Result<(), RecommendError> {
        let fail = |m: &str| Err(RecommendError::Config(m.to_owned()));
        let learn = &self.learn;
        if self.dimensions == 0 || self.dimensions > 1024 {
            return fail("recommend.dimensions must be from 1 to 1024");
        }
        if self.max_in_flight == 0 || self.vector_oversampling == 0 {
            return fail("recommend.max_in_flight and vector_oversampling must be at least 1");
        }
        if learn.half_life_hours.is_nan() || learn.half_life_hours <= 0.0 {
            return fail("recommend.learn.half_life_hours must be above 0");
        }
        if [
            learn.view_view,
            learn.search_click,
            learn.view_cart,
            learn.cart_order,
        ]
        .iter()
        .any(|w| w.is_nan() || *w < 0.0)
        {
            return fail("recommend.learn pair weights must not be negative");
        }
        if learn.neighbours == 0 || learn.session_items == 0 || learn.trending_keep == 0 {
            return fail(
                "recommend.learn.neighbours, session_items and trending_keep must be at least 1",
            );
        }
        let recency = self.serve.recency;
        if recency.is_nan() || recency <= 0.0 || recency > 1.0 {
            return fail("recommend.serve.recency must be above 0 and at most 1");
        }
        Ok(())
    }
}

/// Starts recommendations as a stage: the job that learns from the streams and rebuilds the
/// vectors, and the routes. `deliverability` answers `pincode` filters.
pub fn stage(
    config: RecommendConfig,
    deliverability: Option<Arc<dyn Deliverability>>,
    bus: Arc<Bus>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Stage, RecommendError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new(registry, "recommend"));
    let job = Arc::new(job::Job::open(&config, registry, Arc::clone(&metrics))?);
    let engine = Arc::new(Engine {
        learner: Arc::clone(&job.learner),
        vectors: Arc::clone(&job.vectors),
        learn: config.learn.clone(),
        serve: config.serve.clone(),
        deliverability,
    });
    let readiness = job.readiness.clone();
    let routes = http::routes(engine, &config);
    let work = async move { job::run(job, &bus, &shutdown).await };
    Ok(Stage {
        name: "recommend",
        routes,
        api: http::api(),
        readiness,
        work: work.map_err(|e: RecommendError| e.into()).boxed(),
    })
}
