//! `shopstream-bench analytics`: live merchant analytics through the broker. A full live
//! window of generated history is consumed (the catch-up rate), then, under steady
//! background traffic, one probe order at a time is produced until it is counted in
//! `/analytics/sales?grain=minute` (freshness), then the answers are loaded with `wrk` over
//! the front door.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use model::keys::{KeyRecord, Role};
use model::payload::{OrderLine, OrderPlaced, ProductViewed, SearchPerformed};
use model::{
    CustomerId, Envelope, Event, MerchantId, Money, OrderId, Pincode, ProductId, SessionId, Topic,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runtime::supervisor::StageList;
use shopstream::config::Config;

const ADMIN_KEY: &str = "sk_bench_analytics_admin";
const MERCHANTS: usize = 40;
const HOUR_MS: i64 = 3_600_000;

fn merchant(i: usize) -> String {
    format!("m-{i:04}")
}

fn order(id: String, product: ProductId, pincode: Pincode) -> Event {
    Event::OrderPlaced(OrderPlaced {
        order_id: OrderId::new(id),
        customer_id: CustomerId::new("c-1"),
        session_id: None,
        lines: vec![OrderLine {
            product_id: product,
            quantity: 1,
            unit_price: Money::inr(49_900),
            gst_bps: None,
        }],
        delivery_pincode: pincode,
        total: Money::inr(49_900),
    })
}

/// `count` views, searches and orders spread over the `hours` before `now`, across the
/// merchants (each shop's own storefront, so no catalog is needed).
fn traffic(now: i64, hours: i64, count: usize, seed: u64) -> Result<Vec<Envelope>> {
    let pincode = Pincode::parse("560034").context("pincode")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok((0..count)
        .map(|i| {
            let at = now - hours * HOUR_MS + (i as i64 * hours * HOUR_MS) / count.max(1) as i64;
            let shop = rng.random_range(0..MERCHANTS);
            // 20,000 products, each one shop's.
            let product = ProductId::new(format!(
                "p-{}",
                shop + MERCHANTS * rng.random_range(0..20_000 / MERCHANTS)
            ));
            let shop = merchant(shop);
            let session = SessionId::new(format!("s-{}", rng.random_range(0..100_000)));
            let event = match rng.random_range(0..10) {
                0..=5 => Event::ProductViewed(ProductViewed {
                    session_id: session,
                    customer_id: None,
                    product_id: product,
                }),
                6 | 7 => Event::SearchPerformed(SearchPerformed {
                    session_id: session,
                    customer_id: None,
                    query: format!("query {}", rng.random_range(0..500)),
                    filters: Default::default(),
                    pincode: None,
                    results: vec![product],
                }),
                _ => order(format!("o-{seed}-{i}"), product, pincode),
            };
            Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new(shop), event)
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: &Config,
    history_events: usize,
    rate: usize,
    samples: usize,
    connections: usize,
    seconds: u64,
    with_dashboards: bool,
) -> Result<()> {
    let bus = shopstream::app::connect(config).await?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    // An admin key, as the core publishes one.
    let record = KeyRecord {
        key_hash: runtime::http::auth::hash_key(ADMIN_KEY),
        role: Role::Admin,
        merchant_id: None,
        revoked: false,
    };
    let payload = record.encode();
    producer
        .enqueue(bus::OutRecord {
            topic: Topic::ApiKeys,
            key: record.key_hash.as_bytes(),
            payload: &payload,
            headers: &[],
        })?
        .await?;

    let now = runtime::now_ms();
    let hours = i64::from(config.analytics.live.window_hours) - 1;
    let history = traffic(now, hours, history_events, 1)?;
    crate::load::produce(&producer, &history).await?;

    let dir = tempfile::tempdir()?;
    let analytics = streams::analytics::AnalyticsConfig {
        checkpoint_dir: Some(dir.path().to_owned()),
        ..config.analytics.clone()
    };
    let mut list = StageList::default();
    let token = tokio_util::sync::CancellationToken::new();
    let (keys_stage, keys) = runtime::keys::stage(Arc::clone(&bus), token.clone());
    let keys: Arc<dyn runtime::http::auth::Keys> = keys;
    list.push(keys_stage, token);
    let (metrics, stage_bus) = (list.metrics(), Arc::clone(&bus));
    let started = Instant::now();
    let token = tokio_util::sync::CancellationToken::new();
    let (stage, reports) = streams::analytics::stage_with_reports(
        analytics,
        Arc::clone(&keys),
        stage_bus,
        &metrics,
        token.clone(),
    )?;
    list.push(stage, token);
    if with_dashboards {
        let token = tokio_util::sync::CancellationToken::new();
        let (stage, sessions) = dashboards::stage(
            config.dashboards.clone(),
            Arc::clone(&bus),
            keys,
            runtime::reports::ShopSources {
                reports: Some(Arc::new(reports)),
                trending: None,
            },
            list.metrics(),
            token.clone(),
        )?;
        list.push(stage, token);
        list.accept_sessions(sessions);
    }
    let running = crate::load::serve(config, list).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let orders_in_history = history
        .iter()
        .filter(|e| matches!(e.event, Event::OrderPlaced(_)))
        .count() as u64;
    let window_from = now - hours * HOUR_MS;
    loop {
        let mut counted = 0;
        for m in 0..MERCHANTS {
            let url = format!(
                "{base}/v1/merchants/{}/analytics/sales?from={window_from}&grain=day",
                merchant(m)
            );
            let answer: serde_json::Value = http
                .get(&url)
                .bearer_auth(ADMIN_KEY)
                .send()
                .await?
                .json()
                .await?;
            counted += answer["totals"]["orders"].as_u64().unwrap_or(0);
        }
        if counted == orders_in_history {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{counted} of {orders_in_history} history orders counted after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    println!(
        "catch-up: {history_events} events over {hours} h of {MERCHANTS} shops consumed and counted in {caught_up:.1} s ({:.0} events/s, checkpoint every {} ms)",
        history_events as f64 / caught_up,
        config.analytics.checkpoint_interval_ms
    );

    // Freshness under steady background traffic.
    let stop = tokio_util::sync::CancellationToken::new();
    let background = {
        let (bus, stop) = (Arc::clone(&bus), stop.clone());
        tokio::spawn(async move {
            let producer = bus.producer()?;
            let mut round = 0u64;
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                pace.tick().await;
                round += 1;
                let slice = traffic(runtime::now_ms() + HOUR_MS / 10, 0, rate / 10, 100 + round)?;
                crate::load::produce(&producer, &slice).await?;
            }
            anyhow::Ok(())
        })
    };
    let pincode = Pincode::parse("560034").context("pincode")?;
    let probe_url = format!(
        "{base}/v1/merchants/m-probe/analytics/sales?from={}&grain=minute",
        now - HOUR_MS
    );
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        let envelope = Envelope::new(
            uuid::Uuid::now_v7(),
            runtime::now_ms(),
            MerchantId::new("m-probe"),
            order(format!("probe-{i}"), ProductId::new("p-probe"), pincode),
        );
        let sent = Instant::now();
        producer.send_event(&envelope).await?;
        loop {
            let answer: serde_json::Value = http
                .get(&probe_url)
                .bearer_auth(ADMIN_KEY)
                .send()
                .await?
                .json()
                .await?;
            if answer["totals"]["orders"].as_u64() == Some(i as u64 + 1) {
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("probe order {i} not counted after 30 s; the last answer: {answer}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    background.await??;
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "freshness, order produced -> counted in sales?grain=minute, {samples} probes under {rate} events/s of other traffic: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );

    // Answers under load: the whole window by hour, the last day by minute, the lists.
    let script = dir.path().join("analytics.lua");
    let mut lua = std::fs::File::create(&script)?;
    writeln!(lua, "local paths = {{")?;
    let day_ago = runtime::now_ms() - 23 * HOUR_MS;
    for m in 0..MERCHANTS {
        let shop = merchant(m);
        for path in [
            format!("sales?from={window_from}&grain=hour"),
            format!("funnel?from={day_ago}&grain=minute"),
            format!("products?from={window_from}&grain=day&limit=10"),
            format!("search?from={day_ago}&grain=hour&limit=10"),
        ] {
            writeln!(lua, "  \"/v1/merchants/{shop}/analytics/{path}\",")?;
        }
    }
    writeln!(
        lua,
        "}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i], {{[\"Authorization\"] = \"Bearer {ADMIN_KEY}\"}})\nend"
    )?;
    drop(lua);
    println!(
        "{}",
        crate::load::wrk(&script, &base, connections, seconds).await?
    );
    let exposition = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in exposition.lines().filter(|line| {
        line.contains("job=\"analytics\"")
            && (line.starts_with("shopstream_checkpoint_")
                || line.starts_with("shopstream_analytics_"))
    }) {
        println!("{line}");
    }
    if with_dashboards {
        let shops: Vec<String> = (0..MERCHANTS).map(merchant).collect();
        crate::dashboards::measure(
            &base,
            ADMIN_KEY,
            &producer,
            &shops,
            samples,
            connections,
            seconds,
            dir.path(),
        )
        .await?;
    }
    println!(
        "peak RSS of the process (broker, stage, front door) {:.0} MB",
        crate::search::peak_rss_mb()
    );
    running.stop().await?;
    Ok(())
}
