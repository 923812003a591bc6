//! Exactly-once under SIGKILL and under rebalancing. Generated traffic is produced at a steady
//! pace while the trending job runs; the job is killed at random moments and restarted (or a
//! second instance joins and leaves), and afterwards the newest pane records on the
//! `trending` topic, summed over partitions, equal DataFusion's batch sums of the same events:
//! nothing lost, nothing counted twice.
//!
//! `SHOPSTREAM_SOAK=1` kills 100 times instead of 20 (`SHOPSTREAM_KILLS=n`: n times).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use model::{Envelope, Topic};
use testkit::trending::generated;

/// Waits until the job has published everything and it equals the batch recomputation.
fn trending_events(seed: u64, count: usize) -> Result<Vec<Envelope>> {
    Ok(generated(seed, count)?
        .into_iter()
        .filter(|e| matches!(e.topic(), Topic::Clicks | Topic::Orders))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_at_random_moments_counts_everything_exactly_once() -> Result<()> {
    let kills: usize = if std::env::var_os("SHOPSTREAM_SOAK").is_some() {
        100
    } else {
        std::env::var("SHOPSTREAM_KILLS").map_or(Ok(20), |n| n.parse())?
    };
    let bus = testkit::bus("trending-crash")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let checkpoints = tempfile::tempdir()?;
    let events = trending_events(21, 3_000 * kills / 4)?;
    let load = testkit::produce_steadily(Arc::clone(&bus), events.clone(), 1_500);

    let spawn = || {
        testkit::child::command(
            env!("CARGO_BIN_EXE_trending_child"),
            &bus,
            checkpoints.path(),
        )
        .env("SHOPSTREAM_TEST_SESSION_TIMEOUT_MS", "6000")
        .spawn()
    };
    testkit::kill_at_random(kills, 7, "job", spawn).await?;
    load.await??;
    let mut last = spawn()?;
    let outcome = testkit::trending::wait_matches_batch(&bus, &events).await;
    last.kill()?;
    last.wait()?;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_joining_and_leaving_changes_nothing() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,streams=info")
        .try_init();
    let mut config = testkit::bus_config("trending-rebalance")?;
    config
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    config
        .properties
        .insert("max.poll.interval.ms".into(), "10000".into());
    let bus = Arc::new(bus::Bus::connect(config)?);
    bus.ensure_topics(&Topic::ALL).await?;
    let checkpoints = tempfile::tempdir()?;
    let events = trending_events(22, 30_000)?;
    let start = || {
        let bus = Arc::clone(&bus);
        let config = testkit::trending::job_config(checkpoints.path().to_owned());
        async move {
            let running = testkit::trending::start(config, bus).await?;
            let metrics = format!("http://{}/metrics", running.addr);
            Ok::<_, anyhow::Error>((running, metrics))
        }
    };
    let producer = bus.producer()?;
    let mut slices = events.chunks(200);
    let (first, _) = start().await?;
    for slice in slices.by_ref().take(15) {
        testkit::produce_all(&producer, slice).await?;
    }
    // The second instance joins mid-stream and keeps taking records until it has applied some
    // of its own, then leaves; the first takes its partitions back from their checkpoints.
    let (second, metrics) = start().await?;
    let client = reqwest::Client::new();
    let mut second_counted = false;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for slice in slices.by_ref() {
        pace.tick().await;
        testkit::produce_all(&producer, slice).await?;
        let text = client.get(&metrics).send().await?.text().await?;
        if !text.contains("shopstream_events_in_total{job=\"trending\"} 0\n") {
            second_counted = true;
            break;
        }
    }
    assert!(second_counted, "the second instance never got a partition");
    second.stop().await?;
    for slice in slices {
        testkit::produce_all(&producer, slice).await?;
    }
    testkit::trending::wait_matches_batch(&bus, &events).await?;
    first.stop().await?;
    Ok(())
}
