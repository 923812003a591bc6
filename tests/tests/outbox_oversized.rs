//! One oversized event must not stop the outbox for everyone: text over its limit is refused
//! with a 400 naming the field, and a row the broker still refuses is parked on the DLQ with
//! its reason while the rows behind it go out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ingest::relay::{self, RelayConfig};
use ingest::service::CoreConfig;
use model::payload::ProductViewed;
use model::{Event, MerchantId, ProductId, SessionId, Topic};
use reqwest::Method as M;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{Client, code};
use testkit::core::{NOW, start_core};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_over_its_limit_is_refused_naming_the_field() -> Result<()> {
    let core = start_core(testkit::bus("oversized-http")?, CoreConfig::default()).await?;
    let client = Client::new(&core);
    let created = client
        .ok(
            M::POST,
            "/v1/merchants",
            &core.admin_key,
            Some(json!({"merchant_id": "m-1", "name": "Shop"})),
            &[],
        )
        .await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    let product = |description: String, attributes: Value| {
        json!({"category": "books", "brand": "Penguin", "title": "A Suitable Boy",
               "description": description, "attributes": attributes,
               "price": {"amount_minor": 59900, "currency": "INR"}})
    };
    let put = |body: Value| {
        let (http, base, key) = (client.http.clone(), client.base.clone(), key.clone());
        async move {
            let response = http
                .put(format!("{base}/v1/products/p-1"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await?;
            let status = response.status();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (body, field) in [
        (product("x".repeat(20_001), json!({})), "description"),
        (product(String::new(), Value::Object(many)), "attributes"),
        (
            product(String::new(), json!({"colour": "x".repeat(1_001)})),
            "attributes.colour",
        ),
    ] {
        let (status, answer) = put(body).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "{field}: {status} {answer}"
        );
        ensure!(code(&answer) == "invalid_parameter", "{answer}");
        ensure!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{answer}"
        );
    }
    // The demo's 1.5 MB description is over the front door's body limit.
    let (status, answer) = put(product("x".repeat(1_500_000), json!({}))).await?;
    ensure!(status == StatusCode::PAYLOAD_TOO_LARGE, "{status} {answer}");
    // Within every limit it is saved.
    let (status, answer) = put(product("x".repeat(20_000), json!({"colour": "red"}))).await?;
    ensure!(status == StatusCode::OK, "{status} {answer}");
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_broker_refuses_is_parked_and_the_rows_behind_it_go_out() -> Result<()> {
    let db = testkit::core::sqlite().await?;
    let store = db.store.clone();
    let bus = testkit::bus("oversized-relay")?;
    bus.ensure_topics(&Topic::ALL).await?;
    // A row written before the limits existed: 1.5 MB, over the broker's message size.
    let huge = format!("{{\"padding\": \"{}\"}}", "x".repeat(1_500_000));
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, partition_key, payload, created_at)
         VALUES ('old-huge-row', 'catalog', 'p-huge', $1, $2)",
    )
    .bind(&huge)
    .bind(NOW)
    .execute(store.pool())
    .await?;
    // Another merchant's event right behind it.
    let mut tx = store.write().await?;
    let behind = ingest::outbox::append(
        &mut tx,
        &MerchantId::new("m-2"),
        NOW,
        Event::ProductViewed(ProductViewed {
            session_id: SessionId::new("s-1"),
            customer_id: None,
            product_id: ProductId::new("p-2"),
        }),
    )
    .await?;
    tx.commit().await?;

    let started = Instant::now();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let registry = runtime::metrics::Registry::default();
    let relay = tokio::spawn({
        let (store, bus, shutdown) = (store.clone(), Arc::clone(&bus), shutdown.clone());
        let metrics = relay::RelayMetrics::new(&registry);
        async move { relay::run(RelayConfig::default(), store, &bus, metrics, shutdown).await }
    });
    let consumer = bus.consumer(
        "oversized-check",
        &[Topic::Clicks, Topic::Dlq],
        Arc::new(bus::NoHook),
        &[],
    )?;
    let (mut delivered, mut parked) = (None, None);
    let reading = async {
        while delivered.is_none() || parked.is_none() {
            let record = consumer.recv().await?;
            match record.topic {
                Topic::Clicks => delivered = Some(started.elapsed()),
                _ => parked = Some(record),
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the row behind the oversized one reached Kafka: {}; the oversized one reached the DLQ: {}",
                delivered.is_some(),
                parked.is_some()
            )
        })??;
    let parked = parked.unwrap_or_else(|| unreachable!());
    let header =
        |name: &str| String::from_utf8_lossy(parked.header(name).unwrap_or_default()).into_owned();
    ensure!(header("reason") == "unpublishable", "{:?}", parked.headers);
    ensure!(header("stage") == "outbox.relay");
    ensure!(header("source.topic").starts_with("outbox seq "));
    ensure!(
        header("reason.message").contains(&format!("{} bytes", huge.len())),
        "{}",
        header("reason.message")
    );
    ensure!(
        parked
            .payload
            .as_ref()
            .is_some_and(|p| p.len() == 64 * 1024)
    );
    testkit::wait_until(Duration::from_secs(10), "the outbox to drain", || {
        let store = &store;
        async move { Ok((relay::unsent(store).await? == 0).then_some(())) }
    })
    .await?;
    eprintln!(
        "event {} behind a 1.5 MB row reached Kafka {:?} after the relay started; the row was parked",
        behind.event_id,
        delivered.unwrap_or_default()
    );
    shutdown.cancel();
    relay.await??;
    // The backlog and what became of each row, as /metrics reports them.
    let metrics = registry.render();
    for line in [
        "shopstream_outbox_backlog{job=\"outbox\"} 0",
        "shopstream_outbox_published_total{job=\"outbox\"} 1",
        "shopstream_outbox_parked_total{job=\"outbox\"} 1",
        "shopstream_outbox_republished_total{job=\"outbox\"} 0",
    ] {
        ensure!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    Ok(())
}
