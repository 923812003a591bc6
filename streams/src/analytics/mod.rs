//! Merchant analytics, live: per-merchant sales, funnel, products, searches and refunds,
//! seconds after the events, for the merchant's own key.
//!
//! - [`live`]: the pure operator: minute buckets and per-day lists per merchant over a window
//!   behind the latest event, bounded and order-independent.
//! - [`query`]: ranges and grains in IST, and each metric's answer, pure; [`delivery`]:
//!   deliveries against promises, by courier and destination state; [`stock`]: days of cover
//!   and low-stock alerts, once per crossing.
//! - `job`: the Kafka edge (consumer group, catalog and logistics read ahead, checkpoint, DLQ,
//!   alerts published as `inventory.stock_low` before the checkpoint that forgets them).
//! - `http`: `/v1/merchants/{merchant_id}/analytics/{metric}` and `.../alerts`.

pub mod delivery;
mod http;
mod job;
pub mod live;
pub mod query;
pub mod stock;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use runtime::Stage;
use runtime::http::auth::{Keys, Limiter};
use runtime::metrics::{Metrics, Registry};
use tokio_util::sync::CancellationToken;

pub use http::Reports;
pub use job::{AnalyticsConfig, TOPICS, fold};

use crate::StreamError;

/// Starts live analytics as a stage: the job folding the topics into the live state, and its
/// route, which authenticates callers through `keys` (the orders core's, or the api-keys
/// topic's in a process of its own).
pub fn stage(
    config: AnalyticsConfig,
    keys: Arc<dyn Keys>,
    bus: Arc<Bus>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Stage, StreamError> {
    stage_with_reports(config, keys, bus, registry, shutdown).map(|(stage, _)| stage)
}

/// [`stage`], and its answers as [`runtime::reports::ShopReports`] for the dashboards.
pub fn stage_with_reports(
    config: AnalyticsConfig,
    keys: Arc<dyn Keys>,
    bus: Arc<Bus>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(Stage, Reports), StreamError> {
    let metrics = Arc::new(Metrics::new(registry, "analytics"));
    let job = Arc::new(job::Job::open(
        config.clone(),
        registry,
        metrics,
        bus.producer()?,
    )?);
    let readiness = job.readiness.clone();
    let reports = Reports::new(Arc::clone(&job.live), config.clone());
    let routes = http::routes(
        reports.clone(),
        keys,
        Arc::new(Limiter::new(config.rate_limit)),
    );
    let work = async move { job::consume(job, &bus, &shutdown).await };
    let stage = Stage {
        name: "analytics",
        routes,
        api: http::api(),
        readiness,
        work: work.map_err(|e: StreamError| e.into()).boxed(),
    };
    Ok((stage, reports))
}
