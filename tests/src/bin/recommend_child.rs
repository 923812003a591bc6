//! The process `recommend.rs` kills: runs the recommendations stage against the broker and
//! topic prefix the parent names, keeping its state in the directory it names, until
//! SIGKILL.

use std::sync::Arc;

use anyhow::{Result, bail};
use runtime::supervisor::{self, StageList};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(prefix), Some(dir)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: recommend_child BOOTSTRAP TOPIC_PREFIX DIR (started by recommend.rs)");
    };
    let bus = Arc::new(testkit::child::bus(
        bootstrap,
        prefix,
        "recommend-child",
        "6000",
    )?);
    let config = testkit::recommend::config(dir.into());
    let mut list = StageList::default();
    let metrics = list.metrics();
    list.add("recommend", |token| async move {
        recommend::stage(config, None, bus, &metrics, token)
    })
    .await?;
    let running = supervisor::spawn_local(list).await?;
    // Runs until it is killed; a stage failure ends the child with its error.
    running.task.await??;
    Ok(())
}
