//! The process `serviceability.rs` kills: runs the serviceability stage (the learner) against
//! the broker and topic prefix the parent names, checkpointing into the directory it names,
//! until SIGKILL.

use std::sync::Arc;

use anyhow::{Result, bail};
use runtime::supervisor::{self, StageList};
use streams::serviceability::ServiceabilityConfig;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(prefix), Some(dir)) = (args.next(), args.next(), args.next()) else {
        bail!(
            "usage: serviceability_child BOOTSTRAP TOPIC_PREFIX DIR (started by serviceability.rs)"
        );
    };
    let bus = Arc::new(testkit::child::bus(
        bootstrap,
        prefix,
        "serviceability-child",
        "6000",
    )?);
    let config = ServiceabilityConfig {
        checkpoint_dir: Some(dir.into()),
        checkpoint_interval_ms: 200,
        ..ServiceabilityConfig::default()
    };
    let service = streams::serviceability::service(&config);
    let mut list = StageList::default();
    let registry = list.metrics();
    list.add("serviceability", |token| async move {
        streams::serviceability::stage(config, service, bus, &registry, token)
    })
    .await?;
    let running = supervisor::spawn_local(list).await?;
    // Runs until it is killed; a stage failure ends the child with its error.
    running.task.await??;
    Ok(())
}
