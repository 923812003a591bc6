//! Trending as one service: the job, the serving state that follows the `trending` topic,
//! and the HTTP API, until shutdown.

use std::sync::{Arc, RwLock};

use bus::Bus;
use model::trending::TrendingRecord;
use model::{Topic, codec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::job::{Job, consume};
use super::{TrendingConfig, TrendingView, router};
use crate::StreamError;
use crate::runtime::metrics::Metrics;
use crate::runtime::window::Hopping;

/// Runs the trending job and its HTTP API on `listener` until `shutdown`; then publishes and
/// checkpoints what it holds, commits and leaves the group.
pub async fn run(
    config: TrendingConfig,
    bus: Arc<Bus>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StreamError> {
    let metrics = Arc::new(Metrics::default());
    let job = Arc::new(Job::new(config.clone(), &bus, Arc::clone(&metrics))?);
    let windows: Vec<Hopping> = config
        .windows
        .iter()
        .filter_map(|w| Hopping::new(w.size_ms, w.slide_ms).ok())
        .collect();
    let view = Arc::new(RwLock::new(TrendingView::new(&windows, config.weights)));
    let app = router(Arc::clone(&view), metrics, config.max_limit);
    let http = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let serving = tokio::spawn(serve_view(Arc::clone(&bus), view, shutdown.clone()));
    let consumed = consume(job, &bus, &shutdown).await;
    // Whatever ended consumption, stop serving too, so the caller sees one outcome.
    shutdown.cancel();
    let served = http
        .await
        .map_err(|e| StreamError::Http(std::io::Error::other(e)))?;
    let followed = serving
        .await
        .map_err(|e| StreamError::Http(std::io::Error::other(e)))?;
    consumed?;
    served?;
    followed?;
    Ok(())
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
