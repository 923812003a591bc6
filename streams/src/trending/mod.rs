//! Trending products, v0: the proof that events flow from the generator through Kafka into a
//! job and out of an HTTP API.

mod board;
mod http;
mod job;

pub use board::{Board, Counts, Entry, TrendingAnswer, Weights};
pub use http::router;
pub use job::{TrendingConfig, run};
