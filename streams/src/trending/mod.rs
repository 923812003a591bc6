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
pub use service::{ShopTrends, serve_view, stage, stage_with_trends};
pub use view::{Audience, Entry, OtherCounts, TrendingAnswer, TrendingView, Weights};

use runtime::checkpoint::{CheckpointError, Checkpoints};

/// Each shard's checkpointed position under `dir` (topic, partition, next offset): where the
/// job resumes and below which it skips records as already counted.
pub fn checkpointed_positions(
    dir: &std::path::Path,
) -> Result<Vec<(model::Topic, i32, i64)>, CheckpointError> {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let checkpoints = Checkpoints::open(dir)?;
    let mut positions = Vec::new();
    for name in names {
        if let Some(shard) = checkpoints.load::<counter::ShardSnapshot>(&name)? {
            positions.push((shard.shard.topic, shard.shard.partition, shard.next_offset));
        }
    }
    Ok(positions)
}
