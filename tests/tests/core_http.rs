//! The orders core through its HTTP API, as a storefront and a merchant would use it, with the
//! core running in-process against a real broker: keys and roles, idempotent order placement,
//! the lifecycle to delivery, error codes, the per-key rate limit and the collector.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed check here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use bus::{Bus, NoHook};
use ingest::http::auth::RateLimit;
use ingest::service::CoreConfig;
use model::Topic;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{Client, code, order_body, shop};
use testkit::core::start_core;

use reqwest::Method as M;

/// (method, path, key, body, expected status, expected code)
type ErrorCase<'a> = (
    M,
    &'a str,
    Option<&'a str>,
    Option<Value>,
    StatusCode,
    &'a str,
);

/// Every event about `order_id` on the orders topic, in order, until `last` shows up.
async fn order_events(bus: &Bus, order_id: &str, last: &str) -> Result<Vec<String>> {
    let consumer = bus.consumer("check-orders", &[Topic::Orders], Arc::new(NoHook), &[])?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|t| t == last) {
        let record = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!("{last} for {order_id} not on the orders topic; saw {seen:?}")
            })??;
        let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
        if envelope.key() == order_id {
            seen.push(envelope.event_type().as_str().to_owned());
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_placement_to_delivery_over_http() -> Result<()> {
    let bus = testkit::bus("core-http-flow")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let client = Client::new(&core);
    let (merchant, storefront) = shop(&client, &core.admin_key).await?;

    let key = [("Idempotency-Key", "order-1")];
    let (status, placed, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&storefront),
            Some(order_body(2)),
            &key,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {placed}");
    let order_id = placed["order_id"].as_str().unwrap().to_owned();
    ensure!(
        placed["totals"]["total"]["amount_minor"] == 48_000,
        "{placed}"
    );
    let (_, replay, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&storefront),
            Some(order_body(2)),
            &key,
        )
        .await?;
    ensure!(replay == placed, "a retry with the same key gave {replay}");
    let (status, conflict, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&storefront),
            Some(order_body(3)),
            &key,
        )
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && code(&conflict) == "idempotency_conflict",
        "{status} {conflict}"
    );
    let (status, missing, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&storefront),
            Some(order_body(1)),
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && code(&missing) == "missing_idempotency_key",
        "{status} {missing}"
    );

    let paid = client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/pay"),
            &storefront,
            None,
            &[],
        )
        .await?;
    ensure!(paid["status"] == "confirmed", "{paid}");
    let (status, again, _) = client
        .call(
            M::POST,
            &format!("/v1/orders/{order_id}/pay"),
            Some(&storefront),
            None,
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && code(&again) == "already_paid",
        "{status} {again}"
    );
    let (status, forbidden, _) = client
        .call(
            M::POST,
            &format!("/v1/orders/{order_id}/pack"),
            Some(&storefront),
            None,
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::FORBIDDEN && code(&forbidden) == "forbidden",
        "{status} {forbidden}"
    );

    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/pack"),
            &merchant,
            None,
            &[],
        )
        .await?;
    let promised = ingest::store::now_ms() + 3_600_000;
    let shipped = client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/ship"),
            &merchant,
            Some(
                json!({"courier_id": "cr-dunzo", "origin_pincode": null, "promised_at": promised}),
            ),
            &[],
        )
        .await?;
    ensure!(
        shipped["shipment_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("sh-")),
        "{shipped}"
    );
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/deliver"),
            &merchant,
            None,
            &[],
        )
        .await?;

    let (status, too_much, _) = client
        .call(M::POST, &format!("/v1/orders/{order_id}/refunds"), Some(&merchant), Some(json!({"amount": {"amount_minor": 48_001, "currency": "INR"}, "reason": "returned"})), &[])
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && code(&too_much) == "refund_exceeds_captured",
        "{status} {too_much}"
    );
    let view = client
        .ok(
            M::GET,
            &format!("/v1/orders/{order_id}"),
            &storefront,
            None,
            &[],
        )
        .await?;
    ensure!(
        view["status"] == "delivered" && view["shipment"]["courier_id"] == "cr-dunzo",
        "{view}"
    );
    let history = client
        .ok(M::GET, "/v1/customers/c-7/orders", &storefront, None, &[])
        .await?;
    ensure!(
        history["orders"][0]["order_id"] == order_id.as_str(),
        "{history}"
    );
    let stock = client
        .ok(M::GET, "/v1/products/p-chai/stock", &merchant, None, &[])
        .await?;
    ensure!(stock["on_hand"] == 8 && stock["reserved"] == 0, "{stock}");

    let events = order_events(&bus, &order_id, "order.delivered").await?;
    ensure!(
        events
            == [
                "order.placed",
                "order.confirmed",
                "order.packed",
                "order.shipped",
                "order.delivered"
            ],
        "{events:?}"
    );
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_stable_codes() -> Result<()> {
    let core = start_core(testkit::bus("core-http-errors")?, CoreConfig::default()).await?;
    let client = Client::new(&core);
    let (merchant, storefront) = shop(&client, &core.admin_key).await?;
    let cases: Vec<ErrorCase<'_>> = vec![
        (
            M::GET,
            "/v1/orders/o-1",
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            M::GET,
            "/v1/orders/o-1",
            Some("sk_wrong"),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            M::GET,
            "/v1/orders/o-nope",
            Some(&storefront),
            None,
            StatusCode::NOT_FOUND,
            "unknown_order",
        ),
        (
            M::POST,
            "/v1/merchants",
            Some(&merchant),
            Some(json!({"merchant_id": "m-2", "name": "x"})),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            M::POST,
            "/v1/merchants",
            Some(&core.admin_key),
            Some(json!({"merchant_id": "m-1", "name": "again"})),
            StatusCode::CONFLICT,
            "already_exists",
        ),
        (
            M::PUT,
            "/v1/products/p-2",
            Some(&merchant),
            Some(
                json!({"category": "tea", "brand": "b", "title": "t", "price": {"amount_minor": "ten", "currency": "INR"}}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            M::POST,
            "/v1/products/p-chai/stock",
            Some(&merchant),
            Some(json!({"delta": -11, "reason": "count"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_stock_change",
        ),
        (
            M::GET,
            "/v1/nothing-here",
            Some(&storefront),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, key, body, status, expected) in cases {
        let (got, value, _) = client.call(method.clone(), path, key, body, &[]).await?;
        ensure!(
            got == status && code(&value) == expected,
            "{method} {path}: {got} {value}, wanted {status} {expected}"
        );
        ensure!(
            value["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{value}"
        );
    }
    let far = json!({
        "merchant_id": "m-1", "customer_id": "c-1", "session_id": null,
        "delivery_pincode": "400001", "currency": "INR",
        "lines": [{"product_id": "p-chai", "quantity": 1}]
    });
    let (status, value, _) = client
        .call(
            M::POST,
            "/v1/orders",
            Some(&storefront),
            Some(far),
            &[("Idempotency-Key", "far")],
        )
        .await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY && code(&value) == "outside_delivery_radius",
        "{status} {value}"
    );
    let (status, value, _) = client
        .call(M::PUT, "/v1/products/p-2", Some(&merchant), Some(json!({"category": "tea", "brand": "b", "title": "t", "price": {"amount_minor": "ten", "currency": "INR"}})), &[])
        .await?;
    ensure!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("price.amount_minor"),
        "{status} {value}"
    );
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_merchants_product_can_be_neither_taken_over_nor_traced_to_its_owner() -> Result<()>
{
    let core = start_core(testkit::bus("core-http-ids")?, CoreConfig::default()).await?;
    let client = Client::new(&core);
    let (first, storefront) = shop(&client, &core.admin_key).await?;
    let created = client
        .ok(
            M::POST,
            "/v1/merchants",
            &core.admin_key,
            Some(json!({"merchant_id": "m-2", "name": "Kulfi Corner"})),
            &[],
        )
        .await?;
    let second = testkit::api::key_of(&created)?;
    let product = json!({"category": "tea", "brand": "Mine", "title": "Not chai",
        "price": {"amount_minor": 100, "currency": "INR"}});
    let (status, taken, _) = client
        .call(
            M::PUT,
            "/v1/products/p-chai",
            Some(&second),
            Some(product),
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && code(&taken) == "product_id_taken",
        "{status} {taken}"
    );
    // The stock, deactivation and order paths answer as for a product that does not exist.
    for (method, path, body) in [
        (M::GET, "/v1/products/{id}/stock", None),
        (
            M::POST,
            "/v1/products/{id}/stock",
            Some(json!({"delta": -10, "reason": "count"})),
        ),
        (M::DELETE, "/v1/products/{id}", None),
    ] {
        let mut answers = Vec::new();
        for id in ["p-chai", "p-nothing"] {
            let path = path.replace("{id}", id);
            let (status, value, _) = client
                .call(method.clone(), &path, Some(&second), body.clone(), &[])
                .await?;
            answers.push((status, code(&value).to_owned(), value.to_string()));
        }
        ensure!(
            answers[0].0 == StatusCode::NOT_FOUND && answers[0].0 == answers[1].0,
            "{method} {path}: {answers:?}"
        );
        ensure!(answers[0].1 == answers[1].1, "{method} {path}: {answers:?}");
    }
    let mut refusals = Vec::new();
    for product in ["p-chai", "p-nothing"] {
        let order = json!({
            "merchant_id": "m-2", "customer_id": "c-7", "session_id": null,
            "delivery_pincode": "560042", "currency": "INR",
            "lines": [{"product_id": product, "quantity": 1}]
        });
        let (status, refused, _) = client
            .call(
                M::POST,
                "/v1/orders",
                Some(&storefront),
                Some(order),
                &[("Idempotency-Key", product)],
            )
            .await?;
        refusals.push((status, refused));
    }
    ensure!(
        refusals[0].0 == refusals[1].0 && code(&refusals[0].1) == "unknown_product",
        "{refusals:?}"
    );
    let refused = refusals.swap_remove(0).1;
    for body in [&taken, &refused] {
        let text = body.to_string();
        ensure!(
            !text.contains("m-1") && !text.contains("Chai Point"),
            "an answer names the owner: {text}"
        );
    }
    // The product is untouched.
    let stock = client
        .ok(M::GET, "/v1/products/p-chai/stock", &first, None, &[])
        .await?;
    ensure!(stock["on_hand"] == 10, "{stock}");
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after() -> Result<()> {
    let config = CoreConfig {
        rate_limit: RateLimit {
            per_second: 0.5,
            burst: 3.0,
        },
        ..CoreConfig::default()
    };
    let core = start_core(testkit::bus("core-http-rate")?, config).await?;
    let client = Client::new(&core);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, value, headers) = client
            .call(M::GET, "/v1/orders/o-x", Some(&core.admin_key), None, &[])
            .await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            ensure!(code(&value) == "rate_limited", "{value}");
            retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        statuses.push(status.as_u16());
    }
    ensure!(statuses == [404, 404, 404, 429], "{statuses:?}");
    ensure!(
        retry_after.as_deref() == Some("2"),
        "Retry-After {retry_after:?}"
    );
    core.stop().await
}

fn click_line(event_time: i64) -> String {
    let envelope = model::Envelope::new(
        uuid::Uuid::now_v7(),
        event_time,
        model::MerchantId::new("m-1"),
        model::Event::ProductViewed(model::payload::ProductViewed {
            session_id: "s-1".into(),
            customer_id: None,
            product_id: "p-chai".into(),
        }),
    );
    String::from_utf8(model::codec::encode(&envelope)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_accepts_good_lines_and_dead_letters_the_rest() -> Result<()> {
    let bus = testkit::bus("core-http-collector")?;
    let config = CoreConfig {
        collector: ingest::collector::CollectorConfig {
            max_body_bytes: 4_096,
            ..Default::default()
        },
        ..CoreConfig::default()
    };
    let core = start_core(Arc::clone(&bus), config).await?;
    let client = Client::new(&core);
    let (_, storefront) = shop(&client, &core.admin_key).await?;
    let now = ingest::store::now_ms();
    let good = click_line(now);
    let body = [
        good.clone(),
        "{not json".to_owned(),
        String::new(),
        click_line(now + 86_400_000),
    ]
    .join("\n");
    let response = client
        .http
        .post(format!("{}/v1/events", core.base))
        .bearer_auth(&storefront)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::OK);
    let answer: Value = response.json().await?;
    ensure!(
        answer["accepted"] == 1 && answer["rejected"] == 2,
        "{answer}"
    );
    ensure!(
        answer["results"][1]["line"] == 2 && answer["results"][1]["code"] == "malformed_json",
        "{answer}"
    );
    ensure!(
        answer["results"][2]["line"] == 4 && answer["results"][2]["code"] == "event_time_in_future",
        "{answer}"
    );

    let single = client
        .http
        .post(format!("{}/v1/events", core.base))
        .bearer_auth(&storefront)
        .header("content-type", "application/json")
        .body(click_line(now - 30 * 86_400_000))
        .send()
        .await?;
    ensure!(single.status() == StatusCode::UNPROCESSABLE_ENTITY);
    let value: Value = single.json().await?;
    ensure!(code(&value) == "event_time_too_old", "{value}");

    let huge = vec![good.as_str(); 100].join("\n");
    let (status, value) = {
        let response = client
            .http
            .post(format!("{}/v1/events", core.base))
            .bearer_auth(&storefront)
            .body(huge)
            .send()
            .await?;
        (response.status(), response.json::<Value>().await?)
    };
    ensure!(
        status == StatusCode::PAYLOAD_TOO_LARGE && code(&value) == "payload_too_large",
        "{status} {value}"
    );

    let consumer = bus.consumer(
        "check-collector",
        &[Topic::Clicks, Topic::Dlq],
        Arc::new(NoHook),
        &[],
    )?;
    let (mut clicks, mut reasons) = (0, Vec::new());
    while clicks < 1 || reasons.len() < 3 {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        match record.topic {
            Topic::Clicks => clicks += 1,
            _ => reasons.push(
                String::from_utf8_lossy(record.header("reason").unwrap_or_default()).into_owned(),
            ),
        }
    }
    reasons.sort();
    ensure!(
        reasons
            == [
                "event_time_in_future",
                "event_time_too_old",
                "malformed_json"
            ],
        "{reasons:?}"
    );
    ensure!(clicks == 1);
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_answers_503_when_the_broker_is_down() -> Result<()> {
    // A port nothing listens on: the broker is unreachable from the start.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let bus_config = bus::BusConfig {
        bootstrap_servers: Some(dead.to_string()),
        ..testkit::bus_config("core-http-dead")?
    };
    let config = CoreConfig {
        collector: ingest::collector::CollectorConfig {
            ack_timeout_ms: 1_000,
            ..Default::default()
        },
        ..CoreConfig::default()
    };
    let core = testkit::core::launch_core(Arc::new(Bus::connect(bus_config)?), config).await?;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", core.base))
        .bearer_auth(&core.admin_key)
        .body(click_line(ingest::store::now_ms()))
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.status()
    );
    ensure!(response.headers().get("retry-after").is_some());
    let value: Value = response.json().await?;
    ensure!(code(&value) == "unavailable", "{value}");
    // The relay cannot drain to a dead broker; stopping must still end, with its error.
    let Ok(stopped) = tokio::time::timeout(Duration::from_secs(30), core.stop()).await else {
        anyhow::bail!("the core did not stop within 30 s with its broker down");
    };
    // The keys it published at start are still in its outbox; it says so.
    ensure!(
        stopped
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("next start")),
        "{stopped:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_documents_itself_and_serves_swagger_ui_from_the_binary() -> Result<()> {
    let bus = testkit::bus("core-openapi")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let http = reqwest::Client::new();
    let document: Value = http
        .get(format!("{}/v1/openapi.json", core.base))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let operations = [
        ("post", "/v1/merchants"),
        ("post", "/v1/api-keys"),
        ("delete", "/v1/api-keys/{key_id}"),
        ("put", "/v1/products/{product_id}"),
        ("delete", "/v1/products/{product_id}"),
        ("get", "/v1/products/{product_id}/stock"),
        ("post", "/v1/products/{product_id}/stock"),
        ("put", "/v1/warehouses/{warehouse_id}"),
        ("get", "/v1/warehouses"),
        ("post", "/v1/orders"),
        ("get", "/v1/orders/{order_id}"),
        ("post", "/v1/orders/{order_id}/pay"),
        ("post", "/v1/orders/{order_id}/cancel"),
        ("put", "/v1/orders/{order_id}/address"),
        ("post", "/v1/orders/{order_id}/pack"),
        ("post", "/v1/orders/{order_id}/ship"),
        ("post", "/v1/orders/{order_id}/deliver"),
        ("post", "/v1/orders/{order_id}/refunds"),
        ("get", "/v1/customers/{customer_id}/orders"),
        ("post", "/v1/events"),
    ];
    for (method, path) in operations {
        let operation = &document["paths"][path][method];
        ensure!(operation.is_object(), "{method} {path} is not documented");
        ensure!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| r.contains_key("401") && r.contains_key("429")),
            "{method} {path} documents its auth and rate-limit errors"
        );
    }
    let documented: usize = document["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .filter_map(Value::as_object)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or_default();
    ensure!(
        documented == operations.len(),
        "{documented} operations documented"
    );

    // The schema of an order is the one the API parses: the body the tests send fits it.
    let schema = &document["components"]["schemas"]["PlaceOrder"];
    let body = order_body(1);
    let sent: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for key in &sent {
        ensure!(
            properties.contains_key(*key),
            "{key} is sent but not in the PlaceOrder schema"
        );
    }
    for required in schema["required"].as_array().cloned().unwrap_or_default() {
        ensure!(
            sent.iter()
                .any(|key| Some(key.as_str()) == required.as_str()),
            "the schema requires {required}, which a valid order does not send"
        );
    }

    // Swagger UI and its assets come from the binary.
    let page = http.get(format!("{}/docs/", core.base)).send().await?;
    ensure!(page.status() == StatusCode::OK, "{}", page.status());
    let page = page.text().await?;
    ensure!(page.contains("swagger-ui"), "{page}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let response = http
            .get(format!("{}/docs/{asset}", core.base))
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::OK,
            "{asset}: {}",
            response.status()
        );
        let text = response.text().await?;
        ensure!(
            !text.contains("https://unpkg") && !text.contains("cdn."),
            "{asset} loads from the network"
        );
    }
    let initializer = http
        .get(format!("{}/docs/swagger-initializer.js", core.base))
        .send()
        .await?
        .text()
        .await?;
    ensure!(initializer.contains("/v1/openapi.json"), "{initializer}");
    core.stop().await
}
