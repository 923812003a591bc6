//! `shopstream-bench front-door`: requests through the front door (the orders core behind it,
//! as `serve` runs it) with concurrent clients, first alone (the baseline), then while
//! `--slow` connections from 127.0.0.2 to 127.0.0.11 hold half a request each (slow-loris).
//! Prints both, side by side, and how many slow connections the server held.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::orders::{ADMIN_KEY, percentile};
use shopstream::config::Config;

/// p50, p99 and the rate of `requests` stock reads by `concurrency` clients.
async fn measure(
    base: &str,
    requests: usize,
    concurrency: usize,
) -> Result<(Duration, Duration, f64)> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..requests)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/v1/products/p-0/stock"));
            async move {
                let sent = Instant::now();
                let response = http.get(&url).bearer_auth(ADMIN_KEY).send().await?;
                ensure!(
                    response.status().as_u16() == 404,
                    "unexpected {}",
                    response.status()
                );
                Ok::<_, anyhow::Error>(sent.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok((
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        rate,
    ))
}

pub async fn front_door(
    config: &Config,
    slow: usize,
    requests: usize,
    concurrency: usize,
) -> Result<()> {
    let (running, _store, _bus) = crate::orders::start_core(config).await?;
    let front = &config.http;
    let target = running.addr;
    let base = format!("http://{target}");

    let (p50, p99, rate) = measure(&base, requests, concurrency).await?;
    println!(
        "front door, {concurrency} clients, no slow connections (baseline): {rate:.0} requests/s, p50 {p50:?}, p99 {p99:?}"
    );
    let opened = Instant::now();
    let held: Vec<tokio::net::TcpStream> = futures::stream::iter(0..slow)
        .map(|n| async move {
            // Ten source addresses, so the server holds up to ten times its per-address cap.
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("127.0.0.{}:0", 2 + n % 10).parse()?)?;
            let mut stream = socket.connect(target).await?;
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n")
                .await;
            anyhow::Ok(stream)
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()
        .context("opening the slow connections (is the open-files limit high enough?)")?;
    let opening = opened.elapsed();
    let (p50, p99, rate) = measure(&base, requests, concurrency).await?;
    let still_held = held
        .iter()
        .filter(|s| {
            let mut byte = [0u8; 1];
            matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    println!(
        "front door, {concurrency} clients, {slow} slow connections opened in {opening:.2?} ({still_held} held by the server, cap {} per address, header deadline {} ms): {rate:.0} requests/s, p50 {p50:?}, p99 {p99:?}",
        front.max_connections_per_address, front.header_read_timeout_ms
    );
    drop(held);
    running.stop().await?;
    Ok(())
}
