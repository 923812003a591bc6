//! Exactly-once under SIGKILL: generated traffic is produced at a steady pace while the sink
//! runs as a child process that is killed at random moments and restarted. Afterwards the rows
//! per table and `event_date` equal what was produced and no row key appears twice.
//!
//! `SHOPSTREAM_SOAK=1` kills 100 times instead of 20 (`SHOPSTREAM_KILLS=n`: n times).

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use model::{Envelope, Topic};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::lake::{events, expected_rows, sink_config, wait_committed};

/// Produces `events` in order at about `per_second`, acknowledged one slice at a time.
fn produce_steadily(
    bus: Arc<bus::Bus>,
    events: Vec<Envelope>,
    per_second: usize,
) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let producer = bus.producer()?;
        let slice = (per_second / 20).max(1);
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for chunk in events.chunks(slice) {
            pace.tick().await;
            testkit::produce_all(&producer, chunk).await?;
        }
        Ok(())
    })
}

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
    let load = produce_steadily(Arc::clone(&bus), events, 2_000);

    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_lake_child"))
            .arg(bus.bootstrap_servers())
            .arg(&bus.config().topic_prefix)
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
    };
    for _ in 0..kills {
        let mut child = spawn()?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        if let Some(status) = child.try_wait()? {
            bail!("the sink exited by itself ({status}) instead of being killed");
        }
        child.kill()?; // SIGKILL
        child.wait()?;
    }
    load.await??;

    let mut last = spawn()?;
    let config = sink_config(dir.path());
    let outcome = wait_committed(&config, &want, Duration::from_secs(120)).await;
    last.kill()?;
    last.wait()?;
    outcome
}
