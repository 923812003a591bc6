//! The process `lake_crash.rs` kills: runs the lakehouse sink against the broker, topic prefix
//! and directory the parent names, until SIGKILL.

use std::sync::Arc;

use anyhow::{Result, bail};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(prefix), Some(dir)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: lake_child BOOTSTRAP TOPIC_PREFIX LAKE_DIR (started by lake_crash.rs)");
    };
    let bus = testkit::child::bus(bootstrap, prefix, "lake-child", "6000")?;
    let mut config = testkit::lake::sink_config(std::path::Path::new(&dir));
    // Frequent commits, so kills land before, during and after them.
    config.commit_interval_ms = 150;
    // Checkpoints of the manifest logs often, so kills land around them too.
    config.checkpoint_every = 3;
    let stats = Arc::new(lakehouse::sink::SinkStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    lakehouse::sink::run(config, &bus, stats, runtime::Readiness::new(), shutdown).await?;
    Ok(())
}
