//! Stream jobs: consumer-group members that turn topics into serving state.
//!
//! Today this is trending v0 ([`trending`]): weighted view/cart/order counts per product over
//! a recent event-time window, served at `GET /v1/trending`. Each job is split the same way: a
//! pure operator over [`model::Envelope`]s (tested without Kafka), a thin consumer loop over
//! [`bus::Consumer`], and an axum shell over the operator's state. The streaming-runtime issue
//! adds watermarks, checkpoints and exactly-once outputs under the same shape.

pub mod trending;

/// Why a stream job stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The broker failed in a way retrying did not fix.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// The HTTP listener failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// The job's configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}
