//! Soak: the demo with a data dir at ten times the generator's default rate, while a client
//! posts clicks on made-up product ids to the collector (the load that grew trending without
//! bound before products per pane were capped). Every sample: the child's RSS, the broker
//! snapshot's size and save time, the largest consumer lag, and the collector's p99 over the
//! interval, marked when a snapshot save fell inside it.
//!
//! Length: `SHOPSTREAM_SOAK_SECS` (default 150 s, what CI runs); `SHOPSTREAM_SOAK=1` runs 30
//! minutes. The broker's time retention is a third of the run, so the log reaches its steady
//! size inside it. `SHOPSTREAM_DEMO_BIN=target/release/shopstream` soaks a release build;
//! `SHOPSTREAM_SOAK_REPORT=FILE` keeps the table. Fails if a post fails or is refused, or if
//! RSS or lag are still climbing over the last third of the run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rand::{Rng, SeedableRng};
use testkit::demo::{Demo, metric_max, metric_sum};

/// Clicks on made-up products the flood client posts per batch, and batches per second.
const BATCH: usize = 50;
const BATCHES_PER_SECOND: u64 = 10;

#[derive(Debug, Clone)]
struct Sample {
    at_s: u64,
    rss_mib: f64,
    snapshot_mib: f64,
    save_s: f64,
    saves: f64,
    max_lag: f64,
    posts: usize,
    post_p99_ms: f64,
    saved_in_interval: bool,
}

fn soak_length() -> Result<Duration> {
    if std::env::var("SHOPSTREAM_SOAK").is_ok_and(|v| v == "1") {
        return Ok(Duration::from_secs(30 * 60));
    }
    let secs = match std::env::var("SHOPSTREAM_SOAK_SECS") {
        Ok(text) => text
            .parse()
            .with_context(|| format!("SHOPSTREAM_SOAK_SECS={text:?} is not a number"))?,
        Err(_) => 150,
    };
    Ok(Duration::from_secs(secs))
}

fn batch(rng: &mut impl Rng) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (0..BATCH)
        .map(|_| {
            let id = uuid::Builder::from_unix_timestamp_millis(now, &rng.random()).into_uuid();
            format!(
                "{{\"event_id\":\"{id}\",\"event_time\":{now},\"event_type\":\"click.product_viewed\",\
                 \"merchant_id\":\"m-soak\",\"schema_version\":1,\"payload\":{{\"product_id\":\
                 \"p-made-up-{}\",\"session_id\":\"s-soak-{}\"}}}}\n",
                rng.random::<u64>(),
                rng.random_range(0..1_000)
            )
        })
        .collect()
}

/// Posts batches until `stop`; returns each post's latency in ms, with the time it ended.
async fn flood(
    http: std::net::SocketAddr,
    key: String,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Vec<(Instant, f64)>> {
    let client = reqwest::Client::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut latencies = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(1_000 / BATCHES_PER_SECOND));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        every.tick().await;
        let body = batch(&mut rng);
        let started = Instant::now();
        let posted = testkit::demo::post_ndjson(&client, http, &key, body).await;
        latencies.push((Instant::now(), started.elapsed().as_secs_f64() * 1e3));
        posted?;
    }
    Ok(latencies)
}

fn p99(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() * 99).div_ceil(100) - 1]
}

fn table(samples: &[Sample]) -> String {
    let mut out = String::from(
        "  t(s)  RSS(MiB)  snapshot(MiB)  save(s)  saves  max lag  posts  post p99(ms)  save in interval\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{:>6}  {:>8.1}  {:>13.1}  {:>7.2}  {:>5}  {:>7}  {:>5}  {:>12.1}  {}\n",
            s.at_s,
            s.rss_mib,
            s.snapshot_mib,
            s.save_s,
            s.saves,
            s.max_lag,
            s.posts,
            s.post_p99_ms,
            if s.saved_in_interval { "yes" } else { "" }
        ));
    }
    out
}

/// Whether `values` are still climbing: the last third's peak above the middle third's by
/// more than `slack` (a fraction) plus `floor`.
fn climbing(values: &[f64], slack: f64, floor: f64) -> bool {
    let third = values.len() / 3;
    if third == 0 {
        return false;
    }
    let middle = values[third..2 * third].iter().copied().fold(0.0, f64::max);
    let last = values[2 * third..].iter().copied().fold(0.0, f64::max);
    last > middle * (1.0 + slack) + floor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_at_ten_times_its_rate_levels_off_in_memory_and_lag() -> Result<()> {
    let length = soak_length()?;
    let every = Duration::from_secs(if length > Duration::from_secs(600) {
        30
    } else {
        10
    });
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let retention_ms = (length.as_millis() / 3).max(30_000);
    let settings = vec![
        "generator.rate=2000".to_owned(),
        format!("bus.retention_ms={retention_ms}"),
        "core.rate_limit.per_second=100000".to_owned(),
        "core.rate_limit.burst=100000".to_owned(),
    ];
    let demo = Demo::start(env!("CARGO_BIN_EXE_demo_child"), &data, &settings, "soak").await?;
    let base = format!("http://{}", demo.http);
    let stop = tokio_util::sync::CancellationToken::new();
    let flooding = tokio::spawn(flood(demo.http, demo.admin_key()?, stop.clone()));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_saves = 0.0;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    while started.elapsed() < length {
        ticker.tick().await;
        ensure!(
            !flooding.is_finished(),
            "the flood client stopped early: {:?}",
            flooding.await?
        );
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let saves = metric_sum(&metrics, "shopstream_broker_snapshot_saves");
        samples.push(Sample {
            at_s: started.elapsed().as_secs(),
            rss_mib: demo.rss_kib()? as f64 / 1024.0,
            snapshot_mib: metric_sum(&metrics, "shopstream_broker_snapshot_bytes") / 1048576.0,
            save_s: metric_sum(&metrics, "shopstream_broker_snapshot_save_seconds"),
            saves,
            max_lag: metric_max(&metrics, "shopstream_consumer_lag_records"),
            posts: 0,
            post_p99_ms: 0.0,
            saved_in_interval: saves > last_saves,
        });
        last_saves = saves;
    }
    stop.cancel();
    let latencies = flooding.await??;
    // Each post's latency goes to the sample interval it ended in.
    for (index, sample) in samples.iter_mut().enumerate() {
        let from = started + every * index as u32;
        let to = from + every;
        let inside: Vec<f64> = latencies
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, ms)| *ms)
            .collect();
        sample.posts = inside.len();
        sample.post_p99_ms = p99(inside);
    }
    let report = table(&samples);
    let during_saves = p99(samples
        .iter()
        .filter(|s| s.saved_in_interval)
        .map(|s| s.post_p99_ms)
        .collect());
    let summary = format!(
        "soak of {} s at generator.rate=2000 plus {} made-up clicks/s, retention {retention_ms} ms:\n{report}\
         post p99 over the run {:.1} ms, worst interval p99 with a snapshot save {during_saves:.1} ms\n",
        length.as_secs(),
        BATCH as u64 * BATCHES_PER_SECOND,
        p99(latencies.iter().map(|(_, ms)| *ms).collect()),
    );
    println!("{summary}");
    if let Ok(path) = std::env::var("SHOPSTREAM_SOAK_REPORT") {
        std::fs::write(&path, &summary)?;
    }
    let ended = demo.stop(Duration::from_secs(120)).await?;
    ensure!(
        ended.success,
        "the demo did not stop cleanly:\n{}",
        ended.log_tail
    );
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mib).collect();
    let lag: Vec<f64> = samples.iter().map(|s| s.max_lag).collect();
    ensure!(
        !climbing(&rss, 0.25, 64.0),
        "RSS was still climbing over the last third:\n{summary}"
    );
    ensure!(
        !climbing(&lag, 0.5, 20_000.0),
        "consumer lag was still climbing over the last third:\n{summary}"
    );
    Ok(())
}
