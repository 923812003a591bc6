//! Stream jobs: consumer-group members that turn topics into serving state.
//!
//! The `runtime` crate is what every job shares: watermarks, pane-based hopping windows,
//! session windows, per-partition checkpoints, metrics. [`trending`] is the first job on it. Each job
//! is split the same way: a pure operator over [`model::Envelope`]s (tested without Kafka), a
//! thin consumer loop over [`bus::Consumer`] that checkpoints, and an axum shell over serving
//! state.

pub mod analytics;
pub mod serviceability;
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
    /// State could not be checkpointed or restored; the job stops rather than run without it.
    #[error(transparent)]
    Checkpoint(#[from] runtime::checkpoint::CheckpointError),
    /// Handing partitions over or taking them on failed inside the rebalance callback.
    #[error("rebalance: {0}")]
    Rebalance(String),
    /// A part of the job stopped on its own before shutdown.
    #[error("the {0} stopped before shutdown")]
    Stopped(&'static str),
    /// Work on the CPU pool panicked: a bug.
    #[error(transparent)]
    Cpu(#[from] runtime::cpu::CpuError),
}
