//! The process `trending_crash.rs` kills: runs the trending job against the broker, topic
//! prefix and checkpoint directory the parent names, until SIGKILL.

use std::sync::Arc;

use anyhow::{Result, bail};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,streams=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(prefix), Some(checkpoints)) =
        (args.next(), args.next(), args.next())
    else {
        bail!(
            "usage: trending_child BOOTSTRAP TOPIC_PREFIX CHECKPOINT_DIR (started by trending_crash.rs)"
        );
    };
    // A killed member holds its partitions until its session times out; a short session
    // keeps the 20 restarts from waiting 10 s each.
    let session =
        std::env::var("SHOPSTREAM_TEST_SESSION_TIMEOUT_MS").unwrap_or_else(|_| "10000".into());
    let bus = testkit::child::bus(bootstrap, prefix, "trending-child", &session)?;
    let config = testkit::trending::job_config(checkpoints.into());
    let running = testkit::trending::start(config, Arc::new(bus)).await?;
    // Runs until it is killed; a stage failure ends the child with its error.
    running.task.await??;
    Ok(())
}
