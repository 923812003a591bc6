//! A data dir's stage positions are offsets in one Kafka cluster's log. Started against
//! another cluster (re-created empty, or the embedded broker swapped for an external one),
//! the binary refuses before any stage runs, naming both clusters and the way out.

#![allow(clippy::unwrap_used)]

use anyhow::{Result, ensure};
use shopstream::config::Config;
use shopstream::recovery::CLUSTER_FILE;

fn config(data_dir: &std::path::Path) -> Result<Config> {
    let settings = [
        ("data_dir", format!("{:?}", data_dir.display().to_string())),
        ("bus.embedded_listen", "\"127.0.0.1:0\"".to_owned()),
    ]
    .map(|(key, value)| (key.to_owned(), value));
    Config::load(None, &settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_another_cluster_is_refused_with_the_way_out() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let config = config(&data)?;

    // The first start records the cluster it runs on.
    let bus = shopstream::app::connect(&config).await?;
    drop(bus);
    let recorded = std::fs::read_to_string(data.join(CLUSTER_FILE))?;
    let cluster = recorded.trim().to_owned();
    ensure!(!cluster.is_empty(), "no cluster id recorded");
    let bus = shopstream::app::connect(&config).await?;
    drop(bus);

    // The same data dir against another cluster.
    std::fs::write(data.join(CLUSTER_FILE), "a-cluster-that-is-gone\n")?;
    let refused = shopstream::app::connect(&config).await.err().unwrap();
    let message = format!("{refused:#}");
    for expected in [
        "a-cluster-that-is-gone",
        cluster.as_str(),
        "nothing was started",
        &data.join("lake").display().to_string(),
        &data.join("checkpoints").display().to_string(),
    ] {
        ensure!(message.contains(expected), "no {expected:?} in: {message}");
    }

    // The way out: the positions moved aside, the record deleted.
    std::fs::rename(data.join("checkpoints"), dir.path().join("old-checkpoints")).ok();
    std::fs::remove_file(data.join(CLUSTER_FILE))?;
    let bus = shopstream::app::connect(&config).await?;
    drop(bus);
    ensure!(std::fs::read_to_string(data.join(CLUSTER_FILE))?.trim() == cluster);
    Ok(())
}
