//! The whole demo, as a user runs it with a data dir, SIGKILLed again and again while clicks
//! with known ids are posted to its collector. After each kill the next start either runs or
//! refuses, naming the stages that are ahead of the broker's log and what to move aside; the
//! test does what the message says. At the end it reports how many acknowledged clicks the
//! broker lost, and proves that no stage skips what comes after: a final batch of views is
//! counted exactly by trending and committed exactly once to the lake.
//!
//! Rounds: `SHOPSTREAM_KILL_ROUNDS` (default 3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::demo::Demo;

const MERCHANT: &str = "m-kill";

fn settings() -> Vec<String> {
    [
        // Saves often, so each kill loses a little, not everything.
        "bus.embedded_autosave_ms=1500",
        "lakehouse.commit_interval_ms=500",
        "trending.checkpoint_interval_ms=1000",
        "generator.rate=100",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts the demo; after a refusal, moves aside what the message names and starts again.
/// Returns the demo and the refusal, if there was one.
async fn start_following_the_way_out(data: &Path, round: usize) -> Result<(Demo, Option<String>)> {
    let child = env!("CARGO_BIN_EXE_demo_child");
    let refusal = match Demo::start(child, data, &settings(), &format!("run-{round}")).await {
        Ok(demo) => return Ok((demo, None)),
        Err(error) => format!("{error:#}"),
    };
    let named = refusal
        .split("move aside ")
        .nth(1)
        .and_then(|rest| rest.split(" so the stage rebuilds").next())
        .with_context(|| format!("the start failed without naming the way out:\n{refusal}"))?;
    ensure!(
        refusal.contains("nothing was started and nothing has been skipped"),
        "{refusal}"
    );
    for state in named.split(" and ") {
        let state = PathBuf::from(state.trim());
        ensure!(
            state.starts_with(data),
            "the message names {} outside the data dir",
            state.display()
        );
        let aside = state.with_extension(format!("moved-{round}"));
        std::fs::rename(&state, &aside)
            .with_context(|| format!("moving {} aside", state.display()))?;
    }
    let demo = Demo::start(child, data, &settings(), &format!("run-{round}-after")).await?;
    Ok((demo, Some(refusal)))
}

fn view_line(rng: &mut ChaCha8Rng, product: &str) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let id = uuid::Builder::from_unix_timestamp_millis(now, &rng.random()).into_uuid();
    let line = format!(
        "{{\"event_id\":\"{id}\",\"event_time\":{now},\"event_type\":\"click.product_viewed\",\
         \"merchant_id\":\"{MERCHANT}\",\"schema_version\":1,\"payload\":{{\"product_id\":\
         \"{product}\",\"session_id\":\"s-kill\"}}}}\n"
    );
    (id.to_string(), line)
}

/// Posts one batch of views of `product`; the ids the collector acknowledged.
async fn post_views(
    demo: &Demo,
    rng: &mut ChaCha8Rng,
    product: &str,
    count: usize,
) -> Result<Vec<String>> {
    let (ids, body): (Vec<String>, String) = (0..count).map(|_| view_line(rng, product)).unzip();
    demo.post_events(&reqwest::Client::new(), body).await?;
    Ok(ids)
}

/// Which of `acknowledged` the broker's clicks topic still holds.
async fn still_on_the_broker(
    kafka: &str,
    acknowledged: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let bus = bus::Bus::connect(bus::BusConfig {
        bootstrap_servers: Some(kafka.to_owned()),
        ..bus::BusConfig::default()
    })?;
    let consumer = bus.consumer(
        "kill-test-reader",
        &[model::Topic::Clicks],
        std::sync::Arc::new(bus::NoHook),
        &[],
    )?;
    let mut found = BTreeSet::new();
    // The generator keeps producing, so the topic never goes quiet: read until every id is
    // found, or none of them has turned up for 10 s (they sit at the oldest offsets). The
    // clock starts at the first record, after the group join.
    let mut last_found: Option<Instant> = None;
    let reading_since = Instant::now();
    while found.len() < acknowledged.len()
        && last_found.is_none_or(|at| at.elapsed() < Duration::from_secs(10))
    {
        ensure!(
            reading_since.elapsed() < Duration::from_secs(120),
            "read the clicks topic for 120 s; found {} of {} acknowledged ids",
            found.len(),
            acknowledged.len()
        );
        let Ok(record) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await else {
            continue;
        };
        let record = record?;
        last_found.get_or_insert_with(Instant::now);
        if let Ok(envelope) = model::codec::decode(record.payload.as_deref().unwrap_or_default()) {
            let id = envelope.event_id.to_string();
            if acknowledged.contains(&id) && found.insert(id) {
                last_found = Some(Instant::now());
            }
        }
    }
    Ok(found)
}

async fn trending_views(demo: &Demo, product: &str) -> Result<Option<u64>> {
    let answer: serde_json::Value = reqwest::get(format!(
        "http://{}/v1/trending?scope=merchant&key={MERCHANT}&window=5m&limit=100",
        demo.http
    ))
    .await?
    .json()
    .await?;
    Ok(answer["products"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["product_id"] == product)
        .and_then(|p| p["views"].as_u64()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkills_lose_only_the_autosave_window_and_never_skip_what_follows() -> Result<()>
{
    let rounds: usize = match std::env::var("SHOPSTREAM_KILL_ROUNDS") {
        Ok(text) => text.parse()?,
        Err(_) => 3,
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut acknowledged = BTreeSet::new();
    let mut report = Vec::new();
    for round in 0..rounds {
        let (demo, refusal) = start_following_the_way_out(&data, round)
            .await
            .with_context(|| format!("starting round {round}"))?;
        let started = Instant::now();
        let run_for = Duration::from_millis(rng.random_range(3_000..7_000));
        let mut posted = 0;
        while started.elapsed() < run_for {
            let ids = post_views(&demo, &mut rng, &format!("p-round-{round}"), 20).await?;
            posted += ids.len();
            acknowledged.extend(ids);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo.kill()?;
        report.push(format!(
            "round {round}: {} ran {:.1} s, {posted} clicks acknowledged, then SIGKILL",
            if refusal.is_some() {
                "refused, state moved aside as told, then"
            } else {
                "started,"
            },
            run_for.as_secs_f64()
        ));
    }

    let (demo, refusal) = start_following_the_way_out(&data, rounds).await?;
    let kept = still_on_the_broker(&demo.kafka, &acknowledged).await?;
    report.push(format!(
        "final start {}: {} of {} acknowledged clicks lost by the broker across {rounds} kills",
        if refusal.is_some() {
            "refused, then ran after moving the named state aside"
        } else {
            "ran"
        },
        acknowledged.len() - kept.len(),
        acknowledged.len()
    ));

    // What comes after must be counted in full: not one record skipped as already seen.
    const AFTER: usize = 100;
    post_views(&demo, &mut rng, "p-after", AFTER).await?;
    let counted = testkit::wait_until(Duration::from_secs(90), "trending to count p-after", || {
        let demo = &demo;
        async move {
            Ok(trending_views(demo, "p-after")
                .await?
                .filter(|views| *views >= AFTER as u64))
        }
    })
    .await?;
    ensure!(
        counted == AFTER as u64,
        "trending counted {counted} views of p-after, {AFTER} were posted"
    );
    let lake = testkit::lake::sink_config(&data.join("lake"));
    let in_lake = testkit::wait_until(Duration::from_secs(60), "the lake to hold p-after", || {
        let lake = &lake;
        async move {
            let rows = testkit::lake::query_int(
                lake,
                "SELECT count(*) FROM clicks WHERE product_id = 'p-after'",
            )
            .await?;
            Ok((rows >= AFTER as i64).then_some(rows))
        }
    })
    .await?;
    ensure!(
        in_lake == AFTER as i64,
        "the lake holds {in_lake} rows of p-after"
    );
    let ended = demo.stop(Duration::from_secs(120)).await?;
    if !ended.success {
        bail!("the final run did not stop cleanly:\n{}", ended.log_tail);
    }
    println!("{}", report.join("\n"));
    Ok(())
}
