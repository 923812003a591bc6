//! Exactly-once under SIGKILL: generated traffic is produced at a steady pace while the sink
//! runs as a child process that is killed at random moments and restarted. Afterwards the rows
//! per table and `event_date` equal what was produced and no row key appears twice, and every
//! table read from its newest manifest checkpoint (the child writes one every 3 versions, so
//! kills land between an entry and its checkpoint too) equals the table replayed from version 1.
//!
//! `SHOPSTREAM_SOAK=1` kills 100 times instead of 20 (`SHOPSTREAM_KILLS=n`: n times).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use model::Topic;
use testkit::lake::{events, expected_rows, sink_config, wait_committed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_at_random_moments_commits_every_row_exactly_once() -> Result<()> {
    let kills: usize = if std::env::var_os("SHOPSTREAM_SOAK").is_some() {
        100
    } else {
        std::env::var("SHOPSTREAM_KILLS").map_or(Ok(20), |n| n.parse())?
    };
    let bus = testkit::bus("lake-crash")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let dir = tempfile::tempdir()?;
    let events = events(31, 2_000 * kills)?;
    let want = expected_rows(&events);
    let load = testkit::produce_steadily(Arc::clone(&bus), events, 2_000);

    let spawn =
        || testkit::child::command(env!("CARGO_BIN_EXE_lake_child"), &bus, dir.path()).spawn();
    testkit::kill_at_random(kills, 11, "sink", spawn).await?;
    load.await??;

    let mut last = spawn()?;
    let config = sink_config(dir.path());
    let outcome = wait_committed(&config, &want, Duration::from_secs(120)).await;
    last.kill()?;
    last.wait()?;
    outcome?;

    let storage = config.storage()?;
    let mut checkpointed = 0;
    for table in model::Table::ALL {
        let manifest = lakehouse::manifest::Manifest::new(storage.clone(), table);
        let (read, replayed) = (manifest.snapshot().await?, manifest.replayed().await?);
        anyhow::ensure!(
            read == replayed,
            "{table} from its checkpoint is not {table} replayed: version {} against {}",
            read.version,
            replayed.version
        );
        checkpointed += usize::from(dir.path().join(table.name()).join("_checkpoints").exists());
    }
    anyhow::ensure!(checkpointed > 0, "no table's log was checkpointed");
    Ok(())
}
