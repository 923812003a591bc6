//! End to end through public interfaces: a known generated event set goes onto the topics,
//! the trending job runs in-process on port 0, and `GET /v1/trending` must give exactly the
//! answer computed independently from the same events.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first surprise; that is the point.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bus::NoHook;
use model::{Event, Topic};
use serde_json::{Value, json};

/// The expected top ten over the newest complete 10 s window, from DataFusion's batch sums of
/// the same events: weighted counts of views, cart adds and ordered products.
async fn expected(events: &[model::Envelope], category: Option<&str>) -> Result<(i64, Vec<Value>)> {
    let mut catalog = HashMap::new();
    for envelope in events {
        if let Event::ProductUpserted(p) = &envelope.event {
            catalog.insert(
                p.product_id.to_string(),
                (p.title.clone(), p.category.clone()),
            );
        }
    }
    // Every partition goes idle at the end, so windows close up to the newest event.
    let newest = events
        .iter()
        .filter(|e| matches!(e.topic(), Topic::Clicks | Topic::Orders))
        .map(|e| e.event_time)
        .max()
        .unwrap();
    let end = (newest + 1).div_euclid(2_000) * 2_000;
    let sums = testkit::trending::batch_windows(events, 10_000, &[end]).await?;
    let mut ranked: Vec<(u64, String, [u64; 3])> = sums
        .iter()
        .filter(|((_, (scope, product)), _)| {
            scope == "global"
                && category.is_none_or(|c| catalog.get(product).is_some_and(|(_, pc)| pc == c))
        })
        .map(|((_, (_, product)), c)| {
            (
                c.views + 3 * c.carts + 10 * c.orders,
                product.clone(),
                [c.views, c.carts, c.orders],
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let top = ranked
        .into_iter()
        .take(10)
        .map(|(score, product, c)| {
            json!({"product_id": product, "title": catalog[&product].0, "score": score,
                   "views": c[0], "carts": c[1], "orders": c[2]})
        })
        .collect();
    Ok((end, top))
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
    let events = testkit::trending::generated(11, 12_000)?;
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

    let checkpoints = tempfile::tempdir()?;
    let config = testkit::trending::job_config(checkpoints.path().to_owned());
    let job = testkit::trending::start(config, Arc::clone(&bus)).await?;
    let base = format!("http://{}", job.addr);

    let (end, want) = expected(&events, None).await?;
    assert_eq!(want.len(), 10);
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/trending?window=10s&limit=10");
    let answer = testkit::wait_until(Duration::from_secs(60), "the exact trending answer", || {
        let (client, url, want) = (&client, &url, &want);
        async move {
            let answer: Value = client.get(url).send().await?.json().await?;
            Ok((shape(&answer) == *want).then_some(answer))
        }
    })
    .await?;
    assert_eq!(answer["window"], "10s");
    assert_eq!(answer["window_end_ms"], end);
    assert_eq!(answer["scope"], "global");

    // A category answer is the global counts of that category's products.
    let category = answer["products"][0]["category"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, want) = expected(&events, Some(&category)).await?;
    let url = format!("{base}/v1/trending?window=10s&limit=10&scope=category&key={category}");
    let answer: Value = client.get(&url).send().await?.json().await?;
    assert_eq!(shape(&answer), want, "{url}");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for series in [
        "shopstream_events_in_total{job=\"trending\"}",
        "shopstream_checkpoints_total{job=\"trending\"}",
        "shopstream_window_emission_delay_ms_count{job=\"trending\"}",
        "shopstream_late_events_total{job=\"trending\"} 0",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    for (query, status, code) in [
        ("window=7s", 400, "invalid_parameter"),
        ("window=2h", 400, "invalid_parameter"),
        ("scope=city", 400, "invalid_parameter"),
        ("scope=global&key=x", 400, "invalid_parameter"),
        ("scope=planet&key=x", 400, "invalid_parameter"),
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

    job.stop().await?;
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
