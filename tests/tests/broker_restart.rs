//! The embedded broker keeps records and committed group offsets across a restart when it has
//! a data directory, as `shopstream demo --data-dir` relies on. Always the embedded broker:
//! what is under test is its persistence, not a cluster's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bus::{Bus, BusConfig, NoHook, OutRecord};
use model::Topic;

const RECORDS: usize = 200;
const COMMITTED: usize = 120;

fn embedded_config(data_dir: &std::path::Path, prefix: &str) -> BusConfig {
    BusConfig {
        bootstrap_servers: None,
        embedded_listen: "127.0.0.1:0".into(),
        embedded_data_dir: Some(data_dir.to_path_buf()),
        topic_prefix: prefix.to_owned(),
        ..BusConfig::default()
    }
}

/// Reads from `group` until `count` distinct values arrived, storing offsets of values below
/// `store_below`, then commits and leaves.
async fn consume(bus: &Bus, group: &str, count: usize, store_below: usize) -> Result<Vec<usize>> {
    let consumer = bus.consumer(group, &[Topic::Clicks], Arc::new(NoHook), &[])?;
    let mut seen = Vec::new();
    let reading = async {
        while seen.iter().collect::<BTreeSet<_>>().len() < count {
            let record = consumer.recv().await?;
            let value: usize =
                std::str::from_utf8(record.payload.as_deref().unwrap_or_default())?.parse()?;
            if value < store_below {
                consumer.store(&record)?;
            }
            seen.push(value);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .map_err(|_| anyhow::anyhow!("only {} of {count} records arrived", seen.len()))??;
    consumer.close().await?;
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_committed_offsets_survive_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = embedded_config(dir.path(), &testkit::unique_prefix("restart"));

    let first = Bus::connect(config.clone())?;
    first.ensure_topics(&[Topic::Clicks]).await?;
    let producer = first.producer()?;
    for i in 0..RECORDS {
        let (key, payload) = (format!("s-{}", i % 13), i.to_string());
        producer
            .send(OutRecord {
                topic: Topic::Clicks,
                key: key.as_bytes(),
                payload: payload.as_bytes(),
                headers: &[],
            })
            .await?;
    }
    // Keys keep each partition's values increasing, so storing values below COMMITTED
    // commits a prefix of every partition.
    consume(&first, "restart", RECORDS, COMMITTED).await?;
    let first_address = first.bootstrap_servers().to_owned();
    drop(producer);
    drop(first); // Saves the log, as `demo` does on Ctrl-C.

    let second = Bus::connect(config)?;
    ensure!(
        second.bootstrap_servers() != first_address,
        "the second broker must be a new instance, not the first one still listening"
    );
    let everything = consume(&second, "fresh-group", RECORDS, 0).await?;
    ensure!(
        everything.iter().collect::<BTreeSet<_>>().len() == RECORDS,
        "a new group after the restart saw {} distinct records, expected {RECORDS}",
        everything.len()
    );
    let resumed = consume(&second, "restart", RECORDS - COMMITTED, 0).await?;
    let replayed: Vec<usize> = resumed.iter().copied().filter(|v| *v < COMMITTED).collect();
    ensure!(
        replayed.is_empty(),
        "the group resumed before its committed offsets: replayed {replayed:?}"
    );
    Ok(())
}
