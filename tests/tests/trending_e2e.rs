//! End to end through public interfaces: a known generated event set goes onto the topics,
//! the trending job runs in-process on port 0, and `GET /v1/trending` must give exactly the
//! answer computed independently from the same events.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first surprise; that is the point.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bus::NoHook;
use model::{Event, Topic};
use serde_json::{Value, json};
use streams::trending::TrendingConfig;
use tokio_util::sync::CancellationToken;

const BUCKET_MS: i64 = 10_000;
const WINDOW_MS: i64 = 60_000;

fn events() -> Vec<model::Envelope> {
    let config = traffic::GeneratorConfig {
        seed: 11,
        rate: 400.0,
        products: 200,
        merchants: 10,
        customers: 1_000,
        ..traffic::GeneratorConfig::default()
    };
    traffic::Generator::new(config)
        .unwrap()
        .take(12_000)
        .collect()
}

/// The expected answer, computed straight from the definition: weighted counts of views,
/// cart adds and ordered products over the six 10 s buckets ending with the newest one.
fn expected(events: &[model::Envelope], limit: usize) -> Vec<Value> {
    let mut titles = HashMap::new();
    let mut hits: Vec<(i64, String, usize)> = Vec::new(); // (bucket, product, kind)
    for envelope in events {
        let bucket = envelope.event_time.div_euclid(BUCKET_MS) * BUCKET_MS;
        match &envelope.event {
            Event::ProductUpserted(p) => {
                titles.insert(p.product_id.to_string(), p.title.clone());
            }
            Event::ProductViewed(v) => hits.push((bucket, v.product_id.to_string(), 0)),
            Event::CartAdded(c) => hits.push((bucket, c.product_id.to_string(), 1)),
            Event::OrderPlaced(o) => {
                let products: BTreeSet<String> =
                    o.lines.iter().map(|l| l.product_id.to_string()).collect();
                hits.extend(products.into_iter().map(|p| (bucket, p, 2)));
            }
            _ => {}
        }
    }
    let newest = hits.iter().map(|h| h.0).max().unwrap();
    let mut counts: HashMap<String, [u64; 3]> = HashMap::new();
    for (bucket, product, kind) in hits {
        if bucket > newest - WINDOW_MS {
            counts.entry(product).or_default()[kind] += 1;
        }
    }
    let mut ranked: Vec<(u64, String, [u64; 3])> = counts
        .into_iter()
        .map(|(p, c)| (c[0] + 3 * c[1] + 10 * c[2], p, c))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked
        .into_iter()
        .take(limit)
        .map(|(score, product, c)| {
            json!({"product_id": product, "title": titles[&product], "score": score,
                   "views": c[0], "carts": c[1], "orders": c[2]})
        })
        .collect()
}

fn shape(answer: &Value) -> Vec<Value> {
    answer["products"]
        .as_array()
        .map(|products| {
            products
                .iter()
                .map(|p| {
                    json!({"product_id": p["product_id"], "title": p["title"], "score": p["score"],
                           "views": p["views"], "carts": p["carts"], "orders": p["orders"]})
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_in_exact_trending_answer_out() -> Result<()> {
    let bus = testkit::bus("trending")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let events = events();
    let producer = bus.producer()?;
    testkit::produce_all(&producer, &events).await?;
    // One record no stage can read: it must reach the DLQ with its bytes and a reason.
    let garbage = b"{\"event_type\": \"click.product_viewed\", oops";
    producer
        .send(bus::OutRecord {
            topic: Topic::Clicks,
            key: b"s-x",
            payload: garbage,
            headers: &[],
        })
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let config = TrendingConfig {
        bucket_ms: BUCKET_MS,
        default_window_ms: WINDOW_MS,
        ..TrendingConfig::default()
    };
    let job = tokio::spawn(streams::trending::run(
        config,
        Arc::clone(&bus),
        listener,
        shutdown.clone(),
    ));

    let want = expected(&events, 10);
    assert_eq!(want.len(), 10);
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/trending?window=1m&limit=10");
    let answer = testkit::wait_until(Duration::from_secs(60), "the exact trending answer", || {
        let (client, url, want) = (&client, &url, &want);
        async move {
            let answer: Value = client.get(url).send().await?.json().await?;
            Ok((shape(&answer) == *want).then_some(answer))
        }
    })
    .await?;
    assert_eq!(answer["window"], "1m");

    for (query, status, code) in [
        ("window=7s", 400, "invalid_parameter"),
        ("window=2h", 400, "invalid_parameter"),
        ("window=fast", 400, "invalid_parameter"),
        ("limit=0", 400, "invalid_parameter"),
        ("limit=1000", 400, "invalid_parameter"),
        ("colour=red", 400, "invalid_parameter"),
    ] {
        let response = client
            .get(format!("{base}/v1/trending?{query}"))
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), status, "{query}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let missing = client.get(format!("{base}/v1/nothing")).send().await?;
    assert_eq!(missing.status().as_u16(), 404);

    let dlq = bus.consumer("dlq-reader", &[Topic::Dlq], Arc::new(NoHook), &[])?;
    let dead = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await??;
    assert_eq!(dead.payload.as_deref(), Some(&garbage[..]));
    assert_eq!(dead.header("reason"), Some(&b"malformed_json"[..]));
    assert_eq!(
        dead.header("source.topic"),
        Some(bus.topic_name(Topic::Clicks).as_bytes())
    );

    shutdown.cancel();
    job.await??;
    // A clean stop committed everything the job consumed.
    let clicks = bus.topic_name(Topic::Clicks);
    let checker = bus.consumer("trending", &[Topic::Clicks], Arc::new(NoHook), &[])?;
    let committed = testkit::wait_until(Duration::from_secs(30), "an assignment", || {
        let checker = &checker;
        async move {
            // Polling drives the group join; nothing should be left to read.
            if let Ok(Ok(record)) =
                tokio::time::timeout(Duration::from_millis(200), checker.recv()).await
            {
                anyhow::bail!(
                    "record at {}:{} was not committed",
                    record.partition,
                    record.offset
                );
            }
            let committed = checker.committed()?;
            Ok((!committed.is_empty()).then_some(committed))
        }
    })
    .await?;
    assert!(
        committed
            .iter()
            .all(|(tp, offset)| tp.topic == clicks && offset.is_some()),
        "{committed:?}"
    );
    Ok(())
}
