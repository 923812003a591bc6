//! Exactly once end to end, from at-least-once inputs: every event of a generated stream
//! published twice (as a relay killed between the broker's acknowledgement and its stamp, or a
//! client resending after a 503, would), the copy a random distance later within the dedup
//! horizon, gives the same lake tables and `daily_sales`, byte for byte, and the same trending
//! counts as the stream published once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionConfig;
use lakehouse::query::{Scope, session};
use lakehouse::sink::SinkStats;
use model::{Envelope, Table, Topic};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use testkit::lake::{expected_rows, sink_config, start_sink, wait_committed};

/// `events` with every event published a second time, 1 to `spread` positions later.
fn twice(events: &[Envelope], seed: u64, spread: usize) -> Vec<Envelope> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut copies: BTreeMap<usize, Vec<Envelope>> = BTreeMap::new();
    for (index, envelope) in events.iter().enumerate() {
        copies
            .entry(index + rng.random_range(1..=spread))
            .or_default()
            .push(envelope.clone());
    }
    let mut out = Vec::with_capacity(events.len() * 2);
    for (index, envelope) in events.iter().enumerate() {
        out.push(envelope.clone());
        out.extend(copies.remove(&index).unwrap_or_default());
    }
    out.extend(copies.into_values().flatten());
    out
}

/// Every table and `daily_sales` as text, rows in key order.
async fn contents(config: &lakehouse::LakeConfig) -> Result<BTreeMap<String, String>> {
    let context = session(&config.storage()?, SessionConfig::new(), &Scope::All).await?;
    let mut out = BTreeMap::new();
    let mut queries: Vec<(String, String)> = Table::ALL
        .iter()
        .map(|table| {
            (
                table.name().to_owned(),
                format!(
                    "SELECT * FROM {} ORDER BY {}",
                    table.name(),
                    table.row_key().join(", ")
                ),
            )
        })
        .collect();
    queries.push((
        "daily_sales".into(),
        "SELECT * FROM daily_sales ORDER BY merchant_id, day, currency".into(),
    ));
    for (name, sql) in queries {
        let batches = context.sql(&sql).await?.collect().await?;
        out.insert(name, pretty_format_batches(&batches)?.to_string());
    }
    Ok(out)
}

/// Produces `stream` into a fresh lake and returns the committed contents once they hold
/// what `events` make.
async fn lake_of(
    test: &str,
    stream: &[Envelope],
    events: &[Envelope],
) -> Result<(Arc<bus::Bus>, BTreeMap<String, String>, Arc<SinkStats>)> {
    let bus = testkit::bus(test)?;
    bus.ensure_topics(&Topic::ALL).await?;
    testkit::produce_all(&bus.producer()?, stream).await?;
    let dir = tempfile::tempdir()?;
    let config = sink_config(dir.path());
    let sink = start_sink(&config, &bus);
    wait_committed(&config, &expected_rows(events), Duration::from_secs(120)).await?;
    let contents = contents(&config).await?;
    let stats = sink.stop().await?;
    Ok((bus, contents, stats))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_published_twice_changes_no_table_and_no_trending_count() -> Result<()> {
    let events = testkit::lake::events(13, 8_000)?;
    let doubled = twice(&events, 13, 400);
    assert_eq!(doubled.len(), 2 * events.len());

    let (_, once, _) = lake_of("dup-once", &events, &events).await?;
    let (bus, twice, stats) = lake_of("dup-twice", &doubled, &events).await?;
    for (name, table) in &once {
        if twice.get(name) != Some(table) {
            bail!(
                "{name} differs when every event is published twice:\nonce:\n{}\ntwice:\n{}",
                table.lines().take(12).collect::<Vec<_>>().join("\n"),
                twice
                    .get(name)
                    .map(|t| t.lines().take(12).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            );
        }
    }
    assert_eq!(
        stats.duplicates_dropped.get(),
        events.len() as u64,
        "every copy was dropped as a duplicate"
    );

    // Trending over the doubled stream counts each event once.
    let checkpoints = tempfile::tempdir()?;
    let job = testkit::trending::start(
        testkit::trending::job_config(checkpoints.path().to_owned()),
        Arc::clone(&bus),
    )
    .await?;
    let counted: Vec<Envelope> = events
        .iter()
        .filter(|e| matches!(e.topic(), Topic::Clicks | Topic::Orders))
        .cloned()
        .collect();
    testkit::trending::wait_matches_batch(&bus, &counted).await?;
    let metrics = reqwest::get(format!("http://{}/metrics", job.addr))
        .await?
        .text()
        .await?;
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("shopstream_duplicates_dropped_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<usize>().ok());
    assert_eq!(dropped, Some(counted.len()), "{metrics}");
    job.stop().await?;
    Ok(())
}
