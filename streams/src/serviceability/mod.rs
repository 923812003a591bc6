//! Serviceability and delivery promises: where a product can go, and by when, learnt from
//! real deliveries.
//!
//! - [`network`]: warehouses, couriers, coverage, holidays and stock, folded from the
//!   reference and inventory topics.
//! - [`histogram`]: a distribution of whole days, decayed on event time.
//! - [`learn`]: the pure operator: handling per warehouse, transit per lane at four levels
//!   (pincode, district, state, distance band), promise accuracy per courier.
//! - [`promise`]: the arithmetic from an order time to a delivery date in IST.
//! - `state`: the serving state, and [`model::deliver::Deliverability`] for other stages.
//! - `job`: the Kafka edge (consumer group, checkpoint, DLQ).
//! - `http`: `/v1/serviceability`, `/v1/promise`, `/v1/promise/accuracy`.

mod bounded;
pub mod coverage;
pub mod histogram;
mod http;
mod job;
pub mod learn;
pub mod network;
pub mod promise;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use runtime::Stage;
use runtime::metrics::{Metrics, Registry};
use tokio_util::sync::CancellationToken;

pub use job::{ServiceabilityConfig, TOPICS, checkpointed_positions};
pub use state::{Serviceability, State};

use crate::StreamError;

/// Starts serviceability as a stage: the job that learns from the topics into `service`, and
/// its routes. The caller keeps `service` to hand to other stages as their
/// [`model::deliver::Deliverability`].
pub fn stage(
    config: ServiceabilityConfig,
    service: Arc<Serviceability>,
    bus: Arc<Bus>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Stage, StreamError> {
    let metrics = Arc::new(Metrics::new(registry, "serviceability"));
    let job = Arc::new(job::Job::open(
        config.clone(),
        Arc::clone(&service),
        registry,
        metrics,
    )?);
    let readiness = job.readiness.clone();
    let work = async move { job::consume(job, &bus, &shutdown).await };
    Ok(Stage {
        name: "serviceability",
        routes: http::routes(service, config.max_items, config.max_order_time_skew_ms),
        api: http::api(),
        readiness,
        work: work.map_err(|e: StreamError| e.into()).boxed(),
    })
}

/// The serving state for `config`, empty until the stage's job restores or learns it.
pub fn service(config: &ServiceabilityConfig) -> Arc<Serviceability> {
    Arc::new(Serviceability::new(
        config.learn.clone(),
        config.promise.clone(),
    ))
}
