//! What every stage shares, so that a stage is "routes + work on the runtime + a line in the
//! binary's stage list".
//!
//! - [`stage`]: the one shape of a stage ([`stage::Stage`]: routes, OpenAPI part, readiness,
//!   background work) that the binary mounts and supervises.
//! - [`driver`]: the consumer loop every stream stage runs on (consume, apply, dead-letter,
//!   make durable, store and commit offsets, leave the group on shutdown).
//! - [`supervisor`]: runs a process's stage list behind the front door and stops it in the
//!   documented order; the binary, the tests and the benches start stages through it.
//! - [`cpu`]: the CPU pool, where encodes, checkpoint writes and index builds run instead of
//!   the I/O runtime.
//! - [`http`]: the front door every route is served from: the one [`http::ApiError`] (codes
//!   from [`model::api::ErrorCode`]), connection and request limits, the per-address bucket,
//!   `/healthz`, `/readyz`, `/metrics`, and one OpenAPI document; [`http::auth`] turns an API
//!   key into a [`http::auth::Caller`] on any stage's route, from keys the binary injects
//!   (the core's database, or [`keys::KeyTable`] following the `api-keys` topic).
//! - [`lake`]: the lakehouse's committed files as batch jobs read them, a trait the binary
//!   injects; [`reports`]: a merchant's live analytics as the dashboards read them, another.
//! - The stream runtime, pure except for checkpoint files: time comes in as arguments (event
//!   time from envelopes, processing time from the caller's clock), so the pieces are tested
//!   without Kafka, clocks or disks.
//!   - each input partition is a *shard* with its own state and its own event-time progress;
//!   - [`watermark::Watermarks`] turns per-shard progress into the job watermark, ignoring
//!     idle shards;
//!   - [`window::Hopping`] and [`window::Panes`] count into panes once per event and build
//!     any sliding window from whole panes; [`session`] has gap-based session windows;
//!   - [`checkpoint::Checkpoints`] stores each shard's state together with the offset it
//!     covers, atomically, so a restarted or newly assigned owner resumes exactly where the
//!     state ends;
//!   - [`dedup::Dedup`] drops re-published events by `event_id` within a horizon of records,
//!     saved with the partition's state;
//!   - [`metrics::Registry`] is the process's one `prometheus-client` registry;
//!     [`metrics::Metrics`] a stream job's series in it.

pub mod checkpoint;
pub mod cpu;
pub mod dedup;
pub mod driver;
pub mod http;
pub mod keys;
pub mod lake;
pub mod metrics;
pub mod reports;
pub mod session;
pub mod stage;
pub mod supervisor;
pub mod watermark;
pub mod window;

pub use stage::{Readiness, Stage, StageError};

/// Processing time in UTC ms (wall clock): commit stamps, promises, request times; never
/// event time, which comes with the event.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
