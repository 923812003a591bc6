//! `shopstream-bench nexmark`: Nexmark q5 ("hot items", HOP 10 s / 2 s, count per auction,
//! top auctions per window) over generated bids, in-process on one thread; and
//! `shopstream-bench trending`: the trending job's rate and freshness through the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::nexmark::Query5;
use anyhow::Result;
use bus::Bus;
use indicatif::ProgressBar;
use model::{Envelope, Topic, codec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runtime::window::Hopping;
use tokio_util::sync::CancellationToken;

use shopstream::config::Config;

/// Bids shaped like Nexmark's generator: half go to a few hot auctions, the rest spread over
/// the auctions open at the time; event time advances `events_per_second` per second.
fn bids(count: usize, events_per_second: u64) -> Vec<(i64, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let hot = 100u64;
    (0..count as u64)
        .map(|i| {
            let time = i64::try_from(i * 1_000 / events_per_second).unwrap_or(i64::MAX);
            let newest_auction = 1_000 + i / 50;
            let auction = if rng.random_bool(0.5) {
                newest_auction - rng.random_range(0..hot) * 37 % newest_auction
            } else {
                newest_auction - rng.random_range(0..1_000.min(newest_auction))
            };
            (time, auction)
        })
        .collect()
}

pub fn nexmark(events: usize, events_per_second: u64) -> Result<()> {
    let bids = bids(events, events_per_second);
    for run in 1..=3 {
        let mut query = Query5::new(Hopping::new(10_000, 2_000)?);
        let mut closed = Vec::with_capacity(1024);
        let mut windows = 0usize;
        let mut checksum = 0u64;
        let started = Instant::now();
        for (time, auction) in &bids {
            query.bid(*time, *auction, &mut closed);
            if !closed.is_empty() {
                windows += closed.len();
                checksum = closed
                    .iter()
                    .fold(checksum, |sum, hot| sum.wrapping_add(hot.bids));
                closed.clear();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "nexmark q5 run {run}: {events} bids in {seconds:.3} s = {:.2} M events/s on one core ({windows} windows, checksum {checksum})",
            events as f64 / seconds / 1e6
        );
    }
    Ok(())
}

/// Generated clicks and orders re-timed to `per_second`, starting at `start_ms`.
fn trending_events(
    config: &Config,
    count: usize,
    start_ms: i64,
    per_second: f64,
) -> Result<Vec<Envelope>> {
    let generated = traffic::Generator::new(traffic::GeneratorConfig {
        start_ms,
        ..config.generator.clone()
    })?;
    Ok(generated
        .filter(|e| matches!(e.topic(), Topic::Clicks | Topic::Orders))
        .take(count)
        .enumerate()
        .map(|(i, mut envelope)| {
            envelope.event_time = start_ms + (i as f64 * 1_000.0 / per_second) as i64;
            envelope
        })
        .collect())
}

async fn start_job(
    config: &Config,
    bus: &Arc<Bus>,
    checkpoints: &std::path::Path,
) -> Result<(String, runtime::supervisor::Running)> {
    let trending = streams::trending::TrendingConfig {
        checkpoint_dir: Some(checkpoints.to_owned()),
        ..config.trending.clone()
    };
    let bus = Arc::clone(bus);
    let mut list = runtime::supervisor::StageList::default();
    let metrics = list.metrics();
    list.add("trending", |token| async move {
        streams::trending::stage(trending, bus, &metrics, token)
    })
    .await?;
    let running = runtime::supervisor::spawn_local(list).await?;
    Ok((format!("http://{}", running.addr), running))
}

async fn fresh_bus(config: &Config, label: &str) -> Result<Arc<Bus>> {
    let mut bus_config = config.bus.clone();
    if bus_config.bootstrap_servers.is_none() {
        bus_config.embedded_listen = "127.0.0.1:0".into();
        bus_config.embedded_data_dir = None;
    }
    bus_config.topic_prefix = format!("bench-{label}-{}.", shopstream::pump::now_ms());
    let bus = Arc::new(Bus::connect(bus_config)?);
    bus.ensure_topics(&Topic::ALL).await?;
    Ok(bus)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `shopstream-bench trending`: the job's maximum rate through the broker (a backlog consumed
/// from a standing start), then end-to-end freshness at half that rate: from producing an
/// event to the first `/v1/trending` answer whose window covers it.
pub async fn trending(config: Config, backlog: usize, seconds: u64) -> Result<()> {
    let client = reqwest::Client::new();

    let bus = fresh_bus(&config, "trending-max").await?;
    let events = trending_events(
        &config,
        backlog,
        shopstream::pump::now_ms() - 3_600_000,
        1_000.0,
    )?;
    shopstream::pump::pump(
        events.into_iter(),
        &bus.producer()?,
        false,
        &CancellationToken::new(),
        &ProgressBar::hidden(),
    )
    .await?;
    let checkpoints = tempfile::tempdir()?;
    let (base, job) = start_job(&config, &bus, checkpoints.path()).await?;
    let mut first_seen: Option<Instant> = None;
    let mut done = 0.0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while done < backlog as f64 && Instant::now() < deadline {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        done = metric(&text, "shopstream_events_in_total").unwrap_or(0.0);
        if done > 0.0 && first_seen.is_none() {
            first_seen = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds_taken = first_seen.map_or(f64::NAN, |at| at.elapsed().as_secs_f64());
    let max_rate = done / seconds_taken;
    println!(
        "trending job through the broker: {done:.0} events in {seconds_taken:.2} s = {max_rate:.0} events/s (backlog, one instance)"
    );
    job.stop().await?;

    let rate = (max_rate / 2.0).max(1.0);
    let bus = fresh_bus(&config, "trending-fresh").await?;
    let checkpoints = tempfile::tempdir()?;
    let (base, job) = start_job(&config, &bus, checkpoints.path()).await?;
    // Let the job join its group before the clock starts.
    let start_ms = shopstream::pump::now_ms() + 5_000;
    let count = (rate * seconds as f64) as usize;
    let events = trending_events(&config, count, start_ms, rate)?;
    let window = config
        .trending
        .windows
        .first()
        .map_or(300_000, |w| w.size_ms);
    let poll_url = format!("{base}/v1/trending?window={}s&limit=1", window / 1_000);
    let polls = Arc::new(std::sync::Mutex::new(Vec::<(i64, i64)>::new()));
    let poller = {
        let (polls, client, stop) = (Arc::clone(&polls), client.clone(), job.shutdown.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(response) = client.get(&poll_url).send().await
                    && let Ok(answer) = response.json::<serde_json::Value>().await
                    && let Some(end) = answer["window_end_ms"].as_i64()
                {
                    polls
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((shopstream::pump::now_ms(), end));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let produced_at = produce_paced(&bus, &events).await?;
    // Wait for the last windows to show: one slide plus the watermark delay and idle timeout.
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(
            config
                .trending
                .windows
                .first()
                .map_or(10_000, |w| w.slide_ms)
                + config.trending.idle_timeout_ms
                + 3_000,
        )
        .unwrap_or(15_000),
    ))
    .await;
    job.shutdown.cancel();
    poller.await?;
    job.stop().await?;
    let polls = polls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut freshness: Vec<i64> = events
        .iter()
        .zip(&produced_at)
        .filter_map(|(event, produced)| {
            polls
                .iter()
                .find(|(_, end)| *end > event.event_time)
                .map(|(seen, _)| seen - produced)
        })
        .collect();
    freshness.sort_unstable();
    let at = |q: f64| {
        freshness
            .get(((freshness.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "freshness at {rate:.0} events/s for {seconds} s ({} of {} events seen): p50 {} ms, p99 {} ms, max {} ms (slide {} ms)",
        freshness.len(),
        events.len(),
        at(0.5),
        at(0.99),
        freshness.last().copied().unwrap_or(-1),
        config.trending.windows.first().map_or(0, |w| w.slide_ms),
    );
    Ok(())
}

/// Produces each event when the wall clock reaches its event time; returns when each went.
async fn produce_paced(bus: &Bus, events: &[Envelope]) -> Result<Vec<i64>> {
    let producer = bus.producer()?;
    let mut produced_at = Vec::with_capacity(events.len());
    let mut pending = futures::stream::FuturesUnordered::new();
    for envelope in events {
        let wait = envelope.event_time - shopstream::pump::now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        }
        let payload = codec::encode(envelope);
        pending.push(producer.enqueue(bus::OutRecord {
            topic: envelope.topic(),
            key: envelope.key().as_bytes(),
            payload: &payload,
            headers: &[],
        })?);
        produced_at.push(shopstream::pump::now_ms());
        while pending.len() > 10_000 {
            if let Some(delivered) = futures::StreamExt::next(&mut pending).await {
                delivered?;
            }
        }
    }
    while let Some(delivered) = futures::StreamExt::next(&mut pending).await {
        delivered?;
    }
    Ok(produced_at)
}
