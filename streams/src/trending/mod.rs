//! Trending products: top-K by weighted score (views, cart adds, orders) over sliding
//! event-time windows, per audience (global, merchant, city, category), plus the fastest
//! risers against the previous window.
//!
//! - [`counter`]: the job's pure operator, per input partition: counts per pane and scope.
//! - `job`: the Kafka edge (consumer group, checkpoints, DLQ, `trending` topic).
//! - [`view`]: the pure serving state rebuilt from the `trending` topic and the catalog.
//! - `http`: `GET /v1/trending` for the front door.
//! - `service`: the stage: job, view and routes.

pub mod counter;
mod http;
mod job;
mod service;
pub mod view;

pub use job::{TrendingConfig, WindowConfig};
pub use service::{serve_view, stage};
pub use view::{Audience, Entry, TrendingAnswer, TrendingView, Weights};
