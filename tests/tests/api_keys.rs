//! Keys that fit the callers: storefront keys bound to one shop, publishable collector keys
//! that post events for their own merchant and nothing else, the collector's rate limit
//! counting events, revocation, and a replaced admin key that stops working.

use std::sync::Arc;

use anyhow::{Result, ensure};
use ingest::service::CoreConfig;
use reqwest::Method as M;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{Client, code, order_body, shop};
use testkit::core::start_core;
use tokio_util::sync::CancellationToken;

fn click(merchant: &str) -> String {
    let envelope = model::Envelope::new(
        uuid::Uuid::now_v7(),
        ingest::store::now_ms(),
        model::MerchantId::new(merchant),
        model::Event::ProductViewed(model::payload::ProductViewed {
            session_id: "s-1".into(),
            customer_id: None,
            product_id: "p-chai".into(),
        }),
    );
    String::from_utf8(model::codec::encode(&envelope)).unwrap_or_default()
}

async fn key(client: &Client, admin: &str, body: Value) -> Result<(String, String)> {
    let made = client
        .ok(M::POST, "/v1/api-keys", admin, Some(body), &[])
        .await?;
    Ok((
        made["api_key"].as_str().unwrap_or_default().to_owned(),
        made["key_id"].as_str().unwrap_or_default().to_owned(),
    ))
}

async fn post_events(client: &Client, key: &str, body: String) -> Result<(StatusCode, Value)> {
    let response = client
        .http
        .post(format!("{}/v1/events", client.base))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_keys_reach_their_own_shop_only() -> Result<()> {
    let core = start_core(testkit::bus("keys-bound")?, CoreConfig::default()).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.as_str();
    let (_, marketplace) = shop(&client, admin).await?;
    client
        .ok(
            M::POST,
            "/v1/merchants",
            admin,
            Some(json!({"merchant_id": "m-2", "name": "Other Shop"})),
            &[],
        )
        .await?;
    let (own_front, _) = key(
        &client,
        admin,
        json!({"role": "storefront", "merchant_id": "m-1"}),
    )
    .await?;
    let (other_front, _) = key(
        &client,
        admin,
        json!({"role": "storefront", "merchant_id": "m-2"}),
    )
    .await?;

    // A marketplace key places the order; m-2's storefront cannot see it, m-1's can.
    let placed = client
        .ok(
            M::POST,
            "/v1/orders",
            &marketplace,
            Some(order_body(1)),
            &[("Idempotency-Key", "k-1")],
        )
        .await?;
    let order = format!(
        "/v1/orders/{}",
        placed["order_id"].as_str().unwrap_or_default()
    );
    let (status, value, _) = client
        .call(M::GET, &order, Some(&other_front), None, &[])
        .await?;
    ensure!(
        status == StatusCode::NOT_FOUND && code(&value) == "unknown_order",
        "{status} {value}"
    );
    ensure!(
        !value.to_string().contains("m-1"),
        "the answer names the other shop: {value}"
    );
    let (status, _, _) = client
        .call(M::GET, &order, Some(&own_front), None, &[])
        .await?;
    ensure!(status == StatusCode::OK, "{status}");
    let history = client
        .ok(M::GET, "/v1/customers/c-7/orders", &other_front, None, &[])
        .await?;
    ensure!(
        history["orders"].as_array().is_some_and(Vec::is_empty),
        "{history}"
    );

    // A bound storefront cannot place orders at another shop.
    let (status, value, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&other_front),
            Some(order_body(1)),
            &[("Idempotency-Key", "k-2")],
        )
        .await?;
    ensure!(
        status == StatusCode::FORBIDDEN && code(&value) == "forbidden",
        "{status} {value}"
    );

    // A collector key posts its own merchant's clicks, refuses another's, and does nothing else.
    let (collector, _) = key(
        &client,
        admin,
        json!({"role": "collector", "merchant_id": "m-2"}),
    )
    .await?;
    let (status, answer) = post_events(
        &client,
        &collector,
        format!("{}\n{}\n", click("m-2"), click("m-1")),
    )
    .await?;
    ensure!(status == StatusCode::OK, "{status} {answer}");
    ensure!(
        answer["accepted"] == 1 && answer["rejected"] == 1,
        "{answer}"
    );
    ensure!(answer["results"][1]["code"] == "forbidden", "{answer}");
    for (method, path, body) in [
        (M::GET, order.as_str(), None),
        (M::POST, "/v1/orders", Some(order_body(1))),
        (M::GET, "/v1/products/p-chai/stock", None),
        (M::POST, "/v1/api-keys", Some(json!({"role": "storefront"}))),
    ] {
        let (status, value, _) = client
            .call(
                method.clone(),
                path,
                Some(&collector),
                body,
                &[("Idempotency-Key", "k-3")],
            )
            .await?;
        ensure!(
            status == StatusCode::FORBIDDEN,
            "{method} {path}: {status} {value}"
        );
    }
    // Keys are refused the wrong way round.
    let (status, _, _) = client
        .call(
            M::POST,
            "/v1/api-keys",
            Some(admin),
            Some(json!({"role": "collector"})),
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST,
        "a collector key without a merchant: {status}"
    );
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_limit_counts_events_and_revoked_keys_stop_at_once() -> Result<()> {
    let config = CoreConfig {
        rate_limit: ingest::http::auth::RateLimit {
            per_second: 0.01,
            burst: 10.0,
        },
        ..CoreConfig::default()
    };
    let core = start_core(testkit::bus("keys-revoke")?, config).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.as_str();
    let (merchant, _) = shop(&client, admin).await?;
    let (collector, collector_id) = key(
        &client,
        admin,
        json!({"role": "collector", "merchant_id": "m-1"}),
    )
    .await?;
    // Eight events in one call take eight of the ten tokens; four more are over.
    let batch = |n: usize| (0..n).map(|_| click("m-1") + "\n").collect::<String>();
    let (status, answer) = post_events(&client, &collector, batch(8)).await?;
    ensure!(
        status == StatusCode::OK && answer["accepted"] == 8,
        "{status} {answer}"
    );
    let (status, answer) = post_events(&client, &collector, batch(4)).await?;
    ensure!(
        status == StatusCode::TOO_MANY_REQUESTS && code(&answer) == "rate_limited",
        "{status} {answer}"
    );

    // The merchant revokes its own collector key; it stops working at once.
    let (other, other_id) = key(&client, admin, json!({"role": "storefront"})).await?;
    let (status, value, _) = client
        .call(
            M::DELETE,
            &format!("/v1/api-keys/{other_id}"),
            Some(&merchant),
            None,
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::NOT_FOUND && code(&value) == "unknown_key",
        "a merchant revoked a key that is not its own: {status} {value}"
    );
    let (status, _, _) = client
        .call(
            M::DELETE,
            &format!("/v1/api-keys/{collector_id}"),
            Some(&merchant),
            None,
            &[],
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status}");
    let (status, value) = post_events(&client, &collector, batch(1)).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {value}");
    let (status, _, _) = client
        .call(
            M::DELETE,
            &format!("/v1/api-keys/{other_id}"),
            Some(admin),
            None,
            &[],
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status}");
    let (status, _, _) = client
        .call(M::GET, "/v1/customers/c-7/orders", Some(&other), None, &[])
        .await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status}");
    core.stop().await
}

/// The core on `dir` with `admin_key` configured, behind a front door on a free port.
async fn core_on(
    dir: &std::path::Path,
    bus: Arc<bus::Bus>,
    admin_key: &str,
) -> Result<runtime::supervisor::Running> {
    let config = CoreConfig {
        admin_key: Some(admin_key.to_owned()),
        ..CoreConfig::default()
    };
    let token = CancellationToken::new();
    let (stage, _) = ingest::service::stage(config, dir.to_owned(), bus, token.clone()).await?;
    let mut list = runtime::supervisor::StageList::default();
    list.push(stage, token);
    Ok(runtime::supervisor::spawn_local(list).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_admin_key_stops_working() -> Result<()> {
    let bus = testkit::bus("keys-admin")?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let merchants = |addr: std::net::SocketAddr, key: &'static str, id: &'static str| {
        http.post(format!("http://{addr}/v1/merchants"))
            .bearer_auth(key)
            .json(&json!({"merchant_id": id, "name": "Shop"}))
            .send()
    };
    let first = core_on(dir.path(), Arc::clone(&bus), "sk_first_admin").await?;
    ensure!(
        merchants(first.addr, "sk_first_admin", "m-a")
            .await?
            .status()
            == StatusCode::CREATED
    );
    first.stop().await?;

    let second = core_on(dir.path(), Arc::clone(&bus), "sk_second_admin").await?;
    let old = merchants(second.addr, "sk_first_admin", "m-b").await?;
    ensure!(
        old.status() == StatusCode::UNAUTHORIZED,
        "the replaced key still works: {}",
        old.status()
    );
    let new = merchants(second.addr, "sk_second_admin", "m-c").await?;
    ensure!(new.status() == StatusCode::CREATED, "{}", new.status());
    second.stop().await?;
    Ok(())
}
