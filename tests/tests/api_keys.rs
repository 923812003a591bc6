//! Keys that fit the callers: storefront keys bound to one shop, publishable collector keys
//! that post events for their own merchant and nothing else, the collector's rate limit
//! counting events, revocation, and a replaced admin key that stops working.

use std::sync::Arc;

use anyhow::{Result, ensure};
use futures::FutureExt as _;
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
    let (stage, _) = ingest::service::stage(
        config,
        dir.to_owned(),
        None,
        bus,
        &runtime::metrics::Registry::default(),
        token.clone(),
    )
    .await?;
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

/// A stage in a process of its own: the key table from the api-keys topic, and one route that
/// takes a key and says whose it is.
async fn keyed_stage_without_a_database(
    bus: Arc<bus::Bus>,
) -> Result<runtime::supervisor::Running> {
    use axum::extract::FromRef;
    use runtime::http::auth::{Authenticator, Caller, Limiter, RateLimit};

    #[derive(Clone)]
    struct State(Authenticator);
    impl FromRef<State> for Authenticator {
        fn from_ref(state: &State) -> Authenticator {
            state.0.clone()
        }
    }

    let mut list = runtime::supervisor::StageList::default();
    let token = CancellationToken::new();
    let (keys_stage, table) = runtime::keys::stage(bus, token.clone());
    list.push(keys_stage, token);
    let state = State(Authenticator {
        keys: table,
        limiter: Arc::new(Limiter::new(RateLimit::default())),
    });
    let routes = axum::Router::new()
        .route(
            "/v1/whoami",
            axum::routing::get(|caller: Caller| async move {
                axum::Json(json!({
                    "role": caller.role.as_str(),
                    "merchant_id": caller.merchant_id.map(|m| m.as_str().to_owned()),
                }))
            }),
        )
        .with_state(state);
    let token = CancellationToken::new();
    let stopped = token.clone();
    let mut whoami = runtime::Stage::background(
        "whoami",
        async move {
            stopped.cancelled().await;
            Ok(())
        }
        .boxed(),
    );
    whoami.routes = routes;
    list.push(whoami, token);
    Ok(runtime::supervisor::spawn_local(list).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_without_the_database_accepts_the_cores_keys_until_revoked() -> Result<()> {
    let bus = testkit::bus("keys-topic")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.clone();
    let (merchant_key, _) = shop(&client, &admin).await?;
    let (front_key, front_id) = key(
        &client,
        &admin,
        json!({"role": "storefront", "merchant_id": "m-1"}),
    )
    .await?;

    // The relay has published every key so far (the admin key, the shop's two, this one).
    let reader = bus.reader(&[model::Topic::ApiKeys]).await?;
    testkit::wait_until(
        std::time::Duration::from_secs(30),
        "the relay to publish the keys",
        || {
            let reader = &reader;
            async move {
                let records: i64 = reader.log_ends().await?.iter().map(|(_, end)| end).sum();
                Ok((records >= 4).then_some(()))
            }
        },
    )
    .await?;

    let stage = keyed_stage_without_a_database(Arc::clone(&bus)).await?;
    let base = format!("http://{}", stage.addr);
    let http = reqwest::Client::new();
    // Ready only once the table holds what was on the topic when it started.
    testkit::wait_until(
        std::time::Duration::from_secs(30),
        "the key table to catch up",
        || {
            let (http, base) = (&http, &base);
            async move {
                let ready = http.get(format!("{base}/readyz")).send().await?.status();
                Ok((ready == StatusCode::OK).then_some(()))
            }
        },
    )
    .await?;
    let whoami = |key: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let response = http
                .get(format!("{base}/v1/whoami"))
                .bearer_auth(key)
                .send()
                .await?;
            let status = response.status();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    // Keys made before the stage started, and the admin key, work there as in the core.
    let (status, body) = whoami(front_key.clone()).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    ensure!(
        body == json!({"role": "storefront", "merchant_id": "m-1"}),
        "{body}"
    );
    let (status, body) = whoami(merchant_key.clone()).await?;
    ensure!(body["role"] == "merchant", "{status} {body}");
    let (status, body) = whoami(admin.clone()).await?;
    ensure!(
        body == json!({"role": "admin", "merchant_id": null}),
        "{status} {body}"
    );
    let (status, body) = whoami("sk_not_a_key".to_owned()).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body}");
    ensure!(code(&body) == "unauthorized", "{body}");

    // A key made now works there once its record arrives; a revoked one stops.
    let (late_key, _) = key(
        &client,
        &admin,
        json!({"role": "collector", "merchant_id": "m-1"}),
    )
    .await?;
    testkit::wait_until(
        std::time::Duration::from_secs(30),
        "the new key to work on the stage",
        || {
            let late_key = late_key.clone();
            let whoami = &whoami;
            async move { Ok((whoami(late_key).await?.0 == StatusCode::OK).then_some(())) }
        },
    )
    .await?;
    client
        .ok(
            M::DELETE,
            &format!("/v1/api-keys/{front_id}"),
            &admin,
            None,
            &[],
        )
        .await?;
    testkit::wait_until(
        std::time::Duration::from_secs(30),
        "the revoked key to stop working on the stage",
        || {
            let front_key = front_key.clone();
            let whoami = &whoami;
            async move {
                Ok((whoami(front_key).await?.0 == StatusCode::UNAUTHORIZED).then_some(()))
            }
        },
    )
    .await?;
    ensure!(whoami(merchant_key).await?.0 == StatusCode::OK);
    stage.stop().await?;
    core.stop().await
}
