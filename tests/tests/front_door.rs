//! The front door: every stage's routes on one port with one error shape, one OpenAPI
//! document, `/metrics`, `/healthz` and `/readyz`; the per-address bucket ahead of key checks;
//! and real requests still answered while 10,000 slow connections are held open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use futures::StreamExt as _;
use reqwest::StatusCode;
use runtime::http::FrontConfig;
use runtime::supervisor::{self, StageList};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// The core and trending in one stage list, as `shopstream serve` runs them.
async fn core_and_trending(
    test: &str,
    front: Option<FrontConfig>,
) -> Result<(supervisor::Running, tempfile::TempDir)> {
    let bus = testkit::bus(test)?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let dir = tempfile::tempdir()?;
    let mut list = StageList::default();
    let token = CancellationToken::new();
    let config = ingest::service::CoreConfig {
        admin_key: Some(testkit::core::ADMIN_KEY.to_owned()),
        ..Default::default()
    };
    let (core, _) = ingest::service::stage(
        config,
        dir.path().join("core"),
        None,
        Arc::clone(&bus),
        &list.metrics(),
        token.clone(),
    )
    .await?;
    list.push(core, token);
    let trending = testkit::trending::job_config(dir.path().join("checkpoints"));
    let metrics = list.metrics();
    list.add("trending", |token| async move {
        streams::trending::stage(trending, bus, &metrics, token)
    })
    .await?;
    let running = match front {
        None => supervisor::spawn_local(list).await?,
        Some(config) => {
            let listener = supervisor::bind(&config).await?;
            supervisor::spawn(config, listener, list)?
        }
    };
    Ok((running, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_every_stage_with_one_document_and_one_error_shape() -> Result<()> {
    let (running, _dir) = core_and_trending("front-one-port", None).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await?;
    ensure!(health.status() == StatusCode::OK);
    // Ready once the core's store is open and trending owns its partitions and has caught up.
    testkit::wait_until(Duration::from_secs(60), "/readyz to answer 200", || {
        let (http, base) = (&http, &base);
        async move {
            let response = http.get(format!("{base}/readyz")).send().await?;
            if response.status() == StatusCode::OK {
                return Ok(Some(()));
            }
            let body: Value = response.json().await?;
            ensure!(body["error"]["code"] == "unavailable", "{body}");
            ensure!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("trending")),
                "{body}"
            );
            Ok(None)
        }
    })
    .await?;

    // The core's routes and trending's answer on the same port.
    let merchant = http
        .post(format!("{base}/v1/merchants"))
        .bearer_auth(testkit::core::ADMIN_KEY)
        .json(&json!({"merchant_id": "m-1", "name": "Corner Store"}))
        .send()
        .await?;
    ensure!(
        merchant.status() == StatusCode::CREATED,
        "{}",
        merchant.status()
    );
    let trending = http
        .get(format!("{base}/v1/trending?window=10s"))
        .send()
        .await?;
    ensure!(trending.status() == StatusCode::OK, "{}", trending.status());

    // One document covers both.
    let document: Value = http
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    for (method, path) in [
        ("post", "/v1/orders"),
        ("post", "/v1/events"),
        ("get", "/v1/trending"),
    ] {
        ensure!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the one document"
        );
    }
    ensure!(document["components"]["securitySchemes"]["api_key"].is_object());
    // The answers any route can give are declared once and referenced: 401/403 where a key
    // is taken, 429/503 everywhere; a route's own 503 stays its own.
    for name in ["Unauthorized", "Forbidden", "RateLimited", "Overloaded"] {
        ensure!(
            document["components"]["responses"][name]["content"]["application/json"].is_object(),
            "components.responses.{name} missing"
        );
    }
    let reference = |path: &str, method: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["$ref"].clone()
    };
    ensure!(reference("/v1/orders", "post", "401") == "#/components/responses/Unauthorized");
    ensure!(reference("/v1/orders", "post", "429") == "#/components/responses/RateLimited");
    ensure!(reference("/v1/trending", "get", "503") == "#/components/responses/Overloaded");
    ensure!(document["paths"]["/v1/trending"]["get"]["responses"]["401"].is_null());
    ensure!(
        document["paths"]["/v1/events"]["post"]["responses"]["503"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("broker")),
        "the collector's own 503 was replaced"
    );

    // One error shape for unknown paths and wrong methods, from any stage.
    for (method, path, status, code) in [
        ("GET", "/v1/nothing", 404, "not_found"),
        ("POST", "/v1/trending", 405, "method_not_allowed"),
        ("DELETE", "/v1/orders", 405, "method_not_allowed"),
    ] {
        let response = http
            .request(method.parse()?, format!("{base}{path}"))
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == status,
            "{method} {path}: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        ensure!(body["error"]["code"] == code, "{method} {path}: {body}");
    }

    // A body over the limit gets the same JSON error shape.
    let huge = http
        .post(format!("{base}/v1/merchants"))
        .bearer_auth(testkit::core::ADMIN_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await?;
    ensure!(
        huge.status() == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        huge.status()
    );
    // The unread rest of the body is on the wire: the connection must not be reused.
    ensure!(
        huge.headers()
            .get("connection")
            .is_some_and(|v| v == "close"),
        "{:?}",
        huge.headers()
    );
    let body: Value = huge.json().await?;
    ensure!(body["error"]["code"] == "payload_too_large", "{body}");

    // axum's own refusals of a query string or path (plain text from its extractors) get
    // the one shape too, their text as the message. Found by schemathesis.
    for path in [
        "/v1/customers/c-1/orders?limit=9223372036854775808",
        "/v1/customers/c-1/orders?unknown=1",
        "/v1/orders/%FF%FE",
    ] {
        let refused = http
            .get(format!("{base}{path}"))
            .bearer_auth(testkit::core::ADMIN_KEY)
            .send()
            .await?;
        ensure!(
            refused.status() == StatusCode::BAD_REQUEST,
            "{path}: {}",
            refused.status()
        );
        let body: Value = refused.json().await?;
        ensure!(
            body["error"]["code"] == "invalid_parameter"
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }

    // Every stage's series on one /metrics.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("shopstream_events_in_total{job=\"trending\"}"),
        "{metrics}"
    );
    // Each family is declared once, however many stages report it.
    let mut declared: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("# TYPE "))
        .collect();
    let families = declared.len();
    declared.sort_unstable();
    declared.dedup();
    ensure!(declared.len() == families, "{metrics}");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_limited_and_key_guessing_is_refused_before_any_lookup() -> Result<()> {
    // Every call from an address takes from its bucket, a key or not.
    let config = FrontConfig {
        listen: "127.0.0.1:0".into(),
        per_address_per_second: 1,
        per_address_burst: 5,
        ..FrontConfig::default()
    };
    let (running, _dir) = core_and_trending("front-address", Some(config)).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    for _ in 0..4 {
        let response = http.get(format!("{base}/v1/trending")).send().await?;
        ensure!(response.status() == StatusCode::OK, "{}", response.status());
    }
    let keyed = http
        .get(format!("{base}/v1/products/p-1/stock"))
        .bearer_auth(testkit::core::ADMIN_KEY)
        .send()
        .await?;
    ensure!(
        keyed.status() == StatusCode::NOT_FOUND,
        "{}",
        keyed.status()
    );
    for attempt in [
        http.get(format!("{base}/v1/trending")),
        http.get(format!("{base}/v1/products/p-1/stock"))
            .bearer_auth(testkit::core::ADMIN_KEY),
        http.get(format!("{base}/v1/trending"))
            .bearer_auth("anything"),
    ] {
        let refused = attempt.send().await?;
        ensure!(
            refused.status() == StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.status()
        );
        ensure!(refused.headers().contains_key("retry-after"));
        let body: Value = refused.json().await?;
        ensure!(body["error"]["code"] == "rate_limited", "{body}");
    }
    // Probes are outside every limit.
    let health = http.get(format!("{base}/healthz")).send().await?;
    ensure!(health.status() == StatusCode::OK, "{}", health.status());
    running.stop().await?;

    // Failed key checks spend a small bucket of their own; then the address is refused with
    // 429 before any lookup, while the call bucket still has room.
    let config = FrontConfig {
        listen: "127.0.0.1:0".into(),
        failed_keys_per_second: 1,
        failed_keys_burst: 3,
        ..FrontConfig::default()
    };
    let (running, _dir) = core_and_trending("front-guessing", Some(config)).await?;
    let base = format!("http://{}", running.addr);
    let mut statuses = Vec::new();
    for guess in 0..6 {
        let response = http
            .get(format!("{base}/v1/products/p-1/stock"))
            .bearer_auth(format!("sk_guess_{guess}"))
            .send()
            .await?;
        statuses.push(response.status().as_u16());
    }
    ensure!(statuses[..3] == [401, 401, 401], "{statuses:?}");
    ensure!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    running.stop().await?;
    Ok(())
}

fn open_files_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| anyhow::anyhow!("no open-files line in /proc/self/limits"))?;
    Ok(line
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// 10,000 connections from ten loopback addresses (127.0.0.2 to 127.0.0.11) that send half a
/// request and wait; meanwhile requests from 127.0.0.1 are answered. The front door holds up
/// to `max_connections_per_address` from each address (so thousands at once), closes the rest
/// at accept, and closes the ones it holds at the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_requests_are_answered_while_10000_slow_connections_are_held() -> Result<()> {
    const SLOW: usize = 10_000;
    const ADDRESSES: usize = 10;
    ensure!(
        open_files_limit()? >= SLOW as u64 + 2_000,
        "this test holds {SLOW} sockets: raise the open-files limit (ulimit -n)"
    );
    let config = FrontConfig {
        listen: "127.0.0.1:0".into(),
        header_read_timeout_ms: 5_000,
        ..FrontConfig::default()
    };
    let (running, _dir) = core_and_trending("front-slowloris", Some(config.clone())).await?;
    let target = running.addr;

    let opened = Instant::now();
    let slow: Vec<tokio::net::TcpStream> = futures::stream::iter(0..SLOW)
        .map(|n| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("127.0.0.{}:0", 2 + n % ADDRESSES).parse()?)?;
            let mut stream = socket.connect(target).await?;
            // Half a request: the headers never end.
            let _ = stream
                .write_all(b"GET /v1/trending HTTP/1.1\r\nHost: shop\r\n")
                .await;
            anyhow::Ok(stream)
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let opening = opened.elapsed();
    // How many slow sockets the server still holds: closed ones read EOF (or reset) at once.
    let still_open = |streams: &[tokio::net::TcpStream]| {
        streams
            .iter()
            .filter(|s| {
                let mut byte = [0u8; 1];
                matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    // Closed-at-accept sockets show as closed once their reset has been seen.
    let cap = config.max_connections_per_address * ADDRESSES;
    let held = testkit::wait_until(
        Duration::from_secs(3),
        "the slow connections over the caps to be closed at accept",
        || {
            let count = still_open(&slow);
            async move { Ok((count <= cap).then_some(count)) }
        },
    )
    .await?;
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let sent = Instant::now();
        let response = http
            .get(format!("http://{target}/v1/products/p-1/stock"))
            .bearer_auth(testkit::core::ADMIN_KEY)
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::NOT_FOUND,
            "a real request got {} while slow connections were held",
            response.status()
        );
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!(
        "slow-loris: {SLOW} connections from {ADDRESSES} addresses opened in {opening:?}, {held} \
         held by the server (cap {} per address); 100 real requests meanwhile: p50 {:?}, p99 {:?}",
        config.max_connections_per_address, latencies[49], latencies[98]
    );
    ensure!(
        held >= cap / 2,
        "only {held} slow connections were held: the test did not load the server"
    );
    // Past the header deadline the server closes the ones it took.
    testkit::wait_until(
        Duration::from_secs(30),
        "the held slow connections to be closed at the header deadline",
        || {
            let count = still_open(&slow);
            async move { Ok((count == 0).then_some(())) }
        },
    )
    .await?;
    drop(slow);
    running.stop().await?;
    Ok(())
}
