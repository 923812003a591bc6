//! Topics by kind: event topics expire by time, the catalog (a reference topic) never does, so
//! a stage started after the event topics' retention has passed still knows every product; and
//! existing topics whose settings differ are altered at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bus::{Bus, BusConfig, TopicSettings};
use model::{Envelope, Event, Topic};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_topics_are_altered_to_the_settings_their_kind_asks_for() -> Result<()> {
    let first = testkit::bus("ref-align")?;
    first
        .ensure_topics(&[Topic::Clicks, Topic::Catalog])
        .await?;
    let catalog = first.topic_config(Topic::Catalog).await?;
    ensure!(
        catalog.get("cleanup.policy").map(String::as_str) == Some("compact"),
        "{catalog:?}"
    );
    ensure!(
        catalog.get("retention.ms").map(String::as_str) == Some("-1"),
        "{catalog:?}"
    );
    let clicks = first.topic_config(Topic::Clicks).await?;
    ensure!(
        clicks.get("retention.ms").map(String::as_str) == Some("3600000"),
        "{clicks:?}"
    );

    // A later start with another retention for clicks alters the existing topic.
    let mut config = BusConfig {
        bootstrap_servers: Some(first.bootstrap_servers().to_owned()),
        ..first.config().clone()
    };
    config.topics.insert(
        "clicks".into(),
        TopicSettings {
            retention_ms: Some(86_400_000),
            retention_bytes: Some(1 << 30),
        },
    );
    let second = Bus::connect(config)?;
    let altered = second
        .ensure_topics(&[Topic::Clicks, Topic::Catalog])
        .await?;
    let changed: BTreeSet<&str> = altered.iter().map(|a| a.setting).collect();
    ensure!(
        changed.contains("retention.ms") && changed.contains("retention.bytes"),
        "{altered:?}"
    );
    ensure!(
        altered
            .iter()
            .all(|a| a.topic == second.topic_name(Topic::Clicks)),
        "only clicks differed: {altered:?}"
    );
    let clicks = first.topic_config(Topic::Clicks).await?;
    ensure!(
        clicks.get("retention.ms").map(String::as_str) == Some("86400000"),
        "{clicks:?}"
    );
    ensure!(
        clicks.get("retention.bytes").map(String::as_str) == Some("1073741824"),
        "{clicks:?}"
    );
    // A second start with the same settings changes nothing.
    ensure!(second.ensure_topics(&[Topic::Clicks]).await?.is_empty());
    Ok(())
}

/// Every record currently readable on `topic`, read until the topic has been quiet a while.
async fn readable(bus: &Bus, topic: Topic) -> Result<Vec<Envelope>> {
    let reader = bus.reader(&[topic]).await?;
    let mut out = Vec::new();
    while let Ok(record) = tokio::time::timeout(Duration::from_millis(700), reader.recv()).await {
        let record = record?;
        out.push(model::codec::decode(
            record.payload.as_deref().unwrap_or_default(),
        )?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_started_after_event_retention_still_knows_every_product() -> Result<()> {
    // Event topics keep records for 2 s; the catalog keeps them for good.
    let config = BusConfig {
        retention_ms: 2_000,
        ..testkit::bus_config("ref-retention")?
    };
    let bus = Arc::new(Bus::connect(config)?);
    bus.ensure_topics(&Topic::ALL).await?;
    let events = traffic::Generator::new(traffic::GeneratorConfig {
        seed: 5,
        start_ms: ingest::store::now_ms(),
        rate: 400.0,
        products: 40,
        merchants: 4,
        customers: 300,
        ..traffic::GeneratorConfig::default()
    })?
    .take(12_000)
    .collect::<Vec<_>>();
    let (catalog, traffic): (Vec<Envelope>, Vec<Envelope>) = events
        .into_iter()
        .partition(|e| e.topic() == Topic::Catalog);
    let titles: BTreeMap<String, (String, String)> = catalog
        .iter()
        .filter_map(|e| match &e.event {
            Event::ProductUpserted(p) => Some((
                p.product_id.to_string(),
                (p.title.clone(), p.category.clone()),
            )),
            _ => None,
        })
        .collect();
    ensure!(titles.len() >= 20, "only {} products", titles.len());
    let (early, rest) = traffic.split_at(3_000);
    let producer = bus.producer()?;
    testkit::produce_all(&producer, &catalog).await?;
    testkit::produce_all(&producer, early).await?;
    let early_clicks: BTreeSet<_> = early
        .iter()
        .filter(|e| e.topic() == Topic::Clicks)
        .map(|e| e.event_id)
        .collect();

    // Retention deletes only closed segments; fresh records roll them, so keep producing
    // until no early click is readable any more.
    let mut fillers = rest.chunks(50);
    testkit::wait_until(
        Duration::from_secs(90),
        "the early clicks to expire",
        || {
            let (bus, producer, early_clicks) = (&bus, &producer, &early_clicks);
            let filler = fillers.next().unwrap_or_default().to_vec();
            async move {
                testkit::produce_all(producer, &filler).await?;
                let left = readable(bus, Topic::Clicks)
                    .await?
                    .iter()
                    .filter(|e| early_clicks.contains(&e.event_id))
                    .count();
                Ok((left == 0).then_some(()))
            }
        },
    )
    .await?;
    let still: BTreeSet<String> = readable(&bus, Topic::Catalog)
        .await?
        .iter()
        .filter_map(|e| match &e.event {
            Event::ProductUpserted(p) => Some(p.product_id.to_string()),
            _ => None,
        })
        .collect();
    ensure!(
        still.len() == titles.len(),
        "the catalog lost products to retention: {} of {} left",
        still.len(),
        titles.len()
    );

    // Trending starts now, long after the catalog was written, and names every product.
    let checkpoints = tempfile::tempdir()?;
    let job = testkit::trending::start(
        testkit::trending::job_config(checkpoints.path().to_owned()),
        Arc::clone(&bus),
    )
    .await?;
    let fresh: Vec<Envelope> = fillers.flatten().cloned().collect();
    testkit::produce_all(&producer, &fresh).await?;
    let url = format!("http://{}/v1/trending?window=10s&limit=20", job.addr);
    let http = reqwest::Client::new();
    let products = testkit::wait_until(Duration::from_secs(60), "a trending answer", || {
        let (http, url) = (&http, &url);
        async move {
            let answer: Value = http.get(url).send().await?.json().await?;
            let products = answer["products"].as_array().cloned().unwrap_or_default();
            Ok((!products.is_empty()).then_some(products))
        }
    })
    .await?;
    for product in &products {
        let id = product["product_id"].as_str().unwrap_or_default();
        let (title, category) = titles
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("{id} is not in the catalog"))?;
        ensure!(product["title"] == title.as_str(), "{product}");
        ensure!(product["category"] == category.as_str(), "{product}");
    }
    job.stop().await?;
    Ok(())
}
