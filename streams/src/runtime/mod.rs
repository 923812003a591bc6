//! The streaming runtime the jobs share: event-time watermarks, pane-based windows, session
//! windows, checkpoints and metrics. Everything here except [`checkpoint`] is pure: time comes
//! in as arguments (event time from envelopes, processing time from the caller's clock), so the
//! pieces are tested without Kafka, clocks or disks.
//!
//! How a job uses them (see `trending::job` for the Kafka edge):
//! - each input partition is a *shard* with its own state and its own event-time progress;
//! - [`watermark::Watermarks`] turns per-shard progress into the job watermark, ignoring idle
//!   shards;
//! - [`window::Hopping`] and [`window::Panes`] count into panes once per event and build any
//!   sliding window from whole panes;
//! - [`checkpoint::Checkpoints`] stores each shard's state together with the offset it covers,
//!   atomically, so a restarted or newly assigned owner resumes exactly where the state ends.

pub mod checkpoint;
pub mod metrics;
pub mod session;
pub mod watermark;
pub mod window;
