//! Trending as one stage: the job, the serving state that follows the `trending` topic, and
//! its routes for the front door.

use std::sync::{Arc, RwLock};

use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use model::trending::TrendingRecord;
use model::{Topic, codec};
use runtime::Stage;
use runtime::metrics::{Metrics, Registry};
use runtime::window::Hopping;
use tokio_util::sync::CancellationToken;

use super::http::{api, routes};
use super::job::{Job, consume};
use super::{Audience, TrendingConfig, TrendingView};
use crate::StreamError;

/// Starts trending as a stage, its series in `metrics`: the job (a consumer group over clicks and orders), the
/// serving view that follows the `trending` and `catalog` topics, and `GET /v1/trending`. Its
/// work runs until `shutdown`; then it publishes and checkpoints what it holds, commits and
/// leaves the group.
pub fn stage(
    config: TrendingConfig,
    bus: Arc<Bus>,
    metrics: &Registry,
    shutdown: CancellationToken,
) -> Result<Stage, StreamError> {
    stage_with_trends(config, bus, metrics, shutdown).map(|(stage, _)| stage)
}

/// [`stage`], and its view as [`runtime::reports::ShopTrending`] for the dashboards.
pub fn stage_with_trends(
    config: TrendingConfig,
    bus: Arc<Bus>,
    metrics: &Registry,
    shutdown: CancellationToken,
) -> Result<(Stage, ShopTrends), StreamError> {
    let metrics = Arc::new(Metrics::new(metrics, "trending"));
    let job = Arc::new(Job::new(config.clone(), &bus, Arc::clone(&metrics))?);
    let windows: Vec<Hopping> = config
        .windows
        .iter()
        .filter_map(|w| Hopping::new(w.size_ms, w.slide_ms).ok())
        .collect();
    let view = Arc::new(RwLock::new(TrendingView::new(
        &windows,
        config.weights,
        config.max_products_per_pane,
    )));
    let readiness = job.readiness.clone();
    let served = Arc::clone(&view);
    let work = async move {
        // The job and the view stop on a token of our own (the one we were given is the
        // supervisor's), so either failing stops the other and the stage reports it.
        let stop = shutdown.child_token();
        let mut serving = tokio::spawn(serve_view(Arc::clone(&bus), served, stop.clone()));
        let consuming = consume(job, &bus, &stop);
        tokio::pin!(consuming);
        let (consumed, followed) = tokio::select! {
            consumed = &mut consuming => {
                stop.cancel();
                (consumed, serving.await)
            }
            followed = &mut serving => {
                // The view ended first: stop the job (it publishes and checkpoints), then
                // report why the view ended.
                stop.cancel();
                let followed = followed.map_err(|e| StreamError::Http(std::io::Error::other(e)));
                let followed = match followed {
                    Ok(Ok(())) if !shutdown.is_cancelled() => {
                        Err(StreamError::Stopped("trending view"))
                    }
                    other => other.and_then(|inner| inner),
                };
                (consuming.await, Ok(followed))
            }
        };
        let followed = followed.map_err(|e| StreamError::Http(std::io::Error::other(e)))?;
        consumed?;
        followed?;
        Ok(())
    };
    let stage = Stage {
        name: "trending",
        routes: routes(Arc::clone(&view), config.max_limit),
        api: api(),
        readiness,
        work: work.map_err(|e: StreamError| e.into()).boxed(),
    };
    Ok((stage, ShopTrends { view }))
}

/// The serving view as the dashboards read it: one shop's top products in the first window.
#[derive(Clone)]
pub struct ShopTrends {
    view: Arc<RwLock<TrendingView>>,
}

impl std::fmt::Debug for ShopTrends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopTrends").finish_non_exhaustive()
    }
}

impl runtime::reports::ShopTrending for ShopTrends {
    fn trending(
        &self,
        merchant_id: &str,
        limit: usize,
    ) -> Result<serde_json::Value, runtime::http::ApiError> {
        let view = self
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(window) = view.windows().next().copied() else {
            return Ok(serde_json::Value::Null);
        };
        let audience = Audience::Merchant(model::MerchantId::new(merchant_id));
        serde_json::to_value(view.top(&window, &audience, limit))
            .map_err(|error| runtime::http::ApiError::internal(format!("trending answer: {error}")))
    }
}

/// Keeps `view` up to date with the whole `trending` and `catalog` topics until `shutdown`.
pub async fn serve_view(
    bus: Arc<Bus>,
    view: Arc<RwLock<TrendingView>>,
    shutdown: CancellationToken,
) -> Result<(), StreamError> {
    let reader = bus.reader(&[Topic::Trending, Topic::Catalog]).await?;
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = reader.recv() => match received {
                Ok(record) => record,
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "reading trending failed; retrying");
                    continue;
                }
                Err(error) => return Err(error.into()),
            },
        };
        let payload = record.payload.as_deref().unwrap_or_default();
        let mut view = view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match record.topic {
            Topic::Trending => match TrendingRecord::decode(payload) {
                Ok(trending) => view.apply(trending),
                // Only the job writes this topic; a record it cannot read is a bug to see.
                Err(error) => {
                    tracing::error!(%error, offset = record.offset, "unreadable trending record")
                }
            },
            _ => {
                if let Ok(envelope) = codec::decode(payload) {
                    view.apply_catalog(&envelope);
                }
            }
        }
    }
}
