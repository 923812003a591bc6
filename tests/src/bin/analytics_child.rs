//! The process `analytics.rs` kills: runs the live analytics stage against the broker and
//! topic prefix the parent names, checkpointing into the directory it names, until SIGKILL.

use std::sync::Arc;

use anyhow::{Result, bail};
use runtime::supervisor::{self, StageList};
use streams::analytics::AnalyticsConfig;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(prefix), Some(dir)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: analytics_child BOOTSTRAP TOPIC_PREFIX DIR (started by analytics.rs)");
    };
    let bus = Arc::new(testkit::child::bus(
        bootstrap,
        prefix,
        "analytics-child",
        "6000",
    )?);
    let config = AnalyticsConfig {
        checkpoint_dir: Some(dir.into()),
        checkpoint_interval_ms: 100,
        ..AnalyticsConfig::default()
    };
    // Nobody calls the routes here: no key is needed.
    let keys = Arc::new(runtime::keys::KeyTable::default());
    let mut list = StageList::default();
    let metrics = list.metrics();
    list.add("analytics", |token| async move {
        streams::analytics::stage(config, keys, bus, &metrics, token)
    })
    .await?;
    let running = supervisor::spawn_local(list).await?;
    // Runs until it is killed; a stage failure ends the child with its error.
    running.task.await??;
    Ok(())
}
