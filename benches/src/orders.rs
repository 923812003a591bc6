//! `shopstream-bench orders` and `bench collector`: the orders core started in-process (its
//! store as configured: SQLite in a temporary directory, or `core.store.url`), driven over
//! HTTP on 127.0.0.1 by concurrent clients, as a storefront would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use shopstream::config::Config;

pub(crate) const ADMIN_KEY: &str = "sk_bench_admin";
const PRODUCTS: usize = 200;
/// Orders placed before the timed run, `--concurrency` clients back to back, not counted.
const WARM_UP: usize = 1_000;

struct Running {
    base: String,
    storefront: String,
    core: runtime::supervisor::Running,
    bus: Arc<bus::Bus>,
    /// The core's scratch store, removed at the end of the run.
    _store: tempfile::TempDir,
}

/// The orders core alone behind a front door on a free port of 127.0.0.1, with a scratch
/// store (so runs never see each other's orders), the bench's admin key, and the per-key and
/// per-address limits lifted: every client of a bench is one key on one address, and the
/// buckets would measure themselves.
pub(crate) async fn start_core(
    config: &Config,
) -> Result<(
    runtime::supervisor::Running,
    tempfile::TempDir,
    Arc<bus::Bus>,
)> {
    let bus = shopstream::app::connect(config).await?;
    let store = tempfile::tempdir()?;
    let core_config = ingest::service::CoreConfig {
        admin_key: Some(ADMIN_KEY.to_owned()),
        rate_limit: ingest::http::auth::RateLimit {
            per_second: 1e9,
            burst: 1e9,
        },
        ..config.core.clone()
    };
    let token = CancellationToken::new();
    let (stage, _) = ingest::service::stage(
        core_config,
        store.path().to_owned(),
        None,
        Arc::clone(&bus),
        &runtime::metrics::Registry::default(),
        token.clone(),
    )
    .await?;
    let mut list = runtime::supervisor::StageList::default();
    list.push(stage, token);
    let front = runtime::http::FrontConfig {
        listen: "127.0.0.1:0".into(),
        per_address_per_second: 1_000_000,
        per_address_burst: 1_000_000,
        // One address stands in for every shopper: an open-loop run holds a connection per
        // order in flight, and a stall would otherwise meet the per-address cap.
        max_connections_per_address: 100_000,
        ..config.http.clone()
    };
    let listener = runtime::supervisor::bind(&front).await?;
    Ok((
        runtime::supervisor::spawn(front, listener, list)?,
        store,
        bus,
    ))
}

async fn start(config: &Config) -> Result<Running> {
    let (core, store, bus) = start_core(config).await?;
    let base = format!("http://{}/v1", core.addr);
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let merchant: Value = post(
        "/merchants",
        ADMIN_KEY,
        json!({"merchant_id": "m-bench", "name": "Bench Bazaar"}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let merchant_key = merchant["api_key"]
        .as_str()
        .context("no merchant key")?
        .to_owned();
    let storefront: Value = post("/api-keys", ADMIN_KEY, json!({"role": "storefront"}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    for product in 0..PRODUCTS {
        let listing = json!({"category": "grocery", "brand": "Bench", "title": format!("Item {product}"),
            "price": {"amount_minor": 10_000 + product as i64, "currency": "INR"}});
        http.put(format!("{base}/products/p-{product}"))
            .bearer_auth(&merchant_key)
            .json(&listing)
            .send()
            .await?
            .error_for_status()?;
        post(
            &format!("/products/p-{product}/stock"),
            &merchant_key,
            json!({"delta": 1_000_000, "reason": "bench"}),
        )
        .await?
        .error_for_status()?;
    }
    Ok(Running {
        base,
        storefront: storefront["api_key"].as_str().context("no key")?.to_owned(),
        core,
        bus,
        _store: store,
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Places `orders` orders of 1-3 lines: with `rate`, one every 1/rate s whatever the answers
/// (open loop; latency from when the order was due, so a stall counts against every order it
/// held up); without, `concurrency` clients back to back; either after a warm-up of
/// [`WARM_UP`] orders that are not counted. Prints orders/s, p50, p99 and the relay's lag:
/// placement to `order.placed` readable on the broker.
pub async fn orders(
    config: &Config,
    orders: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> Result<()> {
    let running = start(config).await?;
    let (placed_tx, placed_rx) = tokio::sync::oneshot::channel::<(usize, i64)>();
    let lag = tokio::spawn(relay_lag(Arc::clone(&running.bus), placed_rx));
    let http = reqwest::Client::new();
    let url = format!("{}/orders", running.base);
    // Each order is its own task, so the clients spread over the runtime's threads.
    let place = |i: usize, due: Instant| {
        let (http, url, key) = (http.clone(), url.clone(), running.storefront.clone());
        let order = tokio::spawn(async move {
            let lines: Vec<Value> = (0..1 + i % 3)
                .map(|l| json!({"product_id": format!("p-{}", (i * 7 + l * 13) % PRODUCTS), "quantity": 1}))
                .collect();
            let body = json!({"merchant_id": "m-bench", "customer_id": format!("c-{}", i % 5_000),
                "delivery_pincode": "560001", "currency": "INR", "lines": lines});
            tokio::time::sleep_until(due.into()).await;
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .header("Idempotency-Key", format!("bench-{i}"))
                .json(&body)
                .send()
                .await?;
            let status = response.status();
            // Over its limit of requests in flight the front door sheds load with 503: an
            // answer the bench counts, not a failure.
            if status.as_u16() == 503 {
                return Ok(None);
            }
            ensure!(
                status.as_u16() == 201,
                "order {i}: {status} {}",
                response.text().await?
            );
            Ok::<_, anyhow::Error>(Some(due.elapsed()))
        });
        async move { order.await? }
    };
    // Warm-up, not counted: the client's connections, the store's connections and statement
    // caches, the relay's producer. Cold, the first half second of an open-loop run at 1,000/s
    // held ~150 orders over 100 ms, which is 0.75 % of a 20,000-order run on its own.
    let warm: Vec<Result<Option<Duration>>> = futures::stream::iter(orders..orders + WARM_UP)
        .map(|i| place(i, Instant::now()))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    warm.into_iter().collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let timed_from_ms = ingest::store::now_ms();
    let answers: Vec<Result<Option<Duration>>> = match rate {
        Some(rate) => {
            ensure!(rate > 0.0, "--rate must be above 0");
            let every = Duration::from_secs_f64(1.0 / rate);
            futures::stream::iter(0..orders)
                .map(|i| place(i, started + every.mul_f64(i as f64)))
                // Enough in flight that the client never holds an order back.
                .buffer_unordered(orders.max(1))
                .collect()
                .await
        }
        None => {
            futures::stream::iter(0..orders)
                .map(|i| place(i, Instant::now()))
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await
        }
    };
    let answers: Vec<Option<Duration>> = answers.into_iter().collect::<Result<_>>()?;
    let mut latencies: Vec<Duration> = answers.iter().flatten().copied().collect();
    let placed = latencies.len();
    ensure!(placed > 0, "every order was shed (503)");
    let elapsed = started.elapsed();
    latencies.sort();
    let _ = placed_tx.send((WARM_UP + placed, timed_from_ms));
    let lag = lag.await??;
    println!(
        "orders over HTTP ({}; {}; after {WARM_UP} warm-up orders): {orders} in {:.2} s, {placed} placed = {:.0} orders/s, {} shed (503); \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; relay lag (placed -> on the broker) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if config.core.store.url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        match rate {
            Some(rate) => format!("open loop at {rate} orders/s"),
            None => format!("{concurrency} clients"),
        },
        elapsed.as_secs_f64(),
        placed as f64 / elapsed.as_secs_f64(),
        orders - placed,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        percentile(&lag, 0.50).as_secs_f64() * 1e3,
        percentile(&lag, 0.99).as_secs_f64() * 1e3,
        lag.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    running.core.stop().await.context("orders core failed")?;
    Ok(())
}

/// Reads the orders topic until as many `order.placed` events have arrived as the run says
/// were placed (sent when it ends, with when the timed part began); for each placed in the
/// timed part, how long after its placement (its event time) it was readable. The reader
/// polls continuously, so its own delay is a fetch round.
async fn relay_lag(
    bus: Arc<bus::Bus>,
    mut placed: tokio::sync::oneshot::Receiver<(usize, i64)>,
) -> Result<Vec<Duration>> {
    let reader = bus.reader(&[model::Topic::Orders]).await?;
    // (event time, lag) of every order.placed read.
    let mut seen: Vec<(i64, Duration)> = Vec::new();
    let mut expected: Option<(usize, i64)> = None;
    while expected.is_none_or(|(count, _)| seen.len() < count) {
        let record = tokio::select! {
            count = &mut placed, if expected.is_none() => {
                expected = Some(count.context("the run ended without a count")?);
                continue;
            }
            record = tokio::time::timeout(Duration::from_secs(120), reader.recv()) => record
                .with_context(|| {
                    format!("{} order.placed events on the broker; none for 120 s", seen.len())
                })??,
        };
        let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
        if let model::Event::OrderPlaced(_) = envelope.event {
            let lag_ms = ingest::store::now_ms().saturating_sub(envelope.event_time);
            seen.push((
                envelope.event_time,
                Duration::from_millis(u64::try_from(lag_ms).unwrap_or(0)),
            ));
        }
    }
    let timed_from_ms = expected.map_or(0, |(_, from)| from);
    let mut lags: Vec<Duration> = seen
        .into_iter()
        .filter(|(placed_at, _)| *placed_at >= timed_from_ms)
        .map(|(_, lag)| lag)
        .collect();
    lags.sort();
    Ok(lags)
}

/// Posts `events` click events in NDJSON batches of `batch` with `concurrency` clients;
/// prints events/s acknowledged by the broker.
pub async fn collector(
    config: &Config,
    events: usize,
    batch: usize,
    concurrency: usize,
) -> Result<()> {
    let running = start(config).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/events", running.base);
    let batches: Vec<String> = (0..events.div_ceil(batch.max(1)))
        .map(|b| {
            let now = ingest::store::now_ms();
            (0..batch)
                .map(|i| {
                    let envelope = model::Envelope::new(
                        uuid::Uuid::now_v7(),
                        now,
                        model::MerchantId::new("m-bench"),
                        model::Event::ProductViewed(model::payload::ProductViewed {
                            session_id: format!("s-{}", (b * batch + i) % 10_000).into(),
                            customer_id: None,
                            product_id: format!("p-{}", i % PRODUCTS).into(),
                        }),
                    );
                    String::from_utf8_lossy(&model::codec::encode(&envelope)).into_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(batches)
        .map(|body| {
            let (http, url, key, sent) = (
                http.clone(),
                url.clone(),
                running.storefront.clone(),
                Arc::clone(&sent),
            );
            async move {
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer: Value = response.json().await?;
                ensure!(status.as_u16() == 200, "{status} {answer}");
                let accepted = answer["accepted"].as_u64().unwrap_or(0) as usize;
                sent.fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let accepted = sent.load(std::sync::atomic::Ordering::Relaxed);
    crate::targets::print_rate(
        &format!(
            "collector events acknowledged (NDJSON batches of {batch}, {concurrency} clients)"
        ),
        accepted,
        started,
    );
    running.core.stop().await.context("orders core failed")?;
    Ok(())
}
