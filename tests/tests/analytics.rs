//! Live merchant analytics through the broker: orders placed through the core, clicks and
//! searches as the collector and search publish them, read back per merchant with the
//! merchant's own key; every metric refuses other shops' keys; bad ranges are named. And an
//! aggregator SIGKILLed at random moments resumes to exactly the numbers of one that never
//! stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ingest::service::CoreConfig;
use model::payload::{CartChanged, ProductViewed, SearchPerformed};
use model::{Envelope, Event, MARKETPLACE, MerchantId, ProductId, SessionId};
use reqwest::Method as M;
use runtime::supervisor::{self, StageList};
use serde_json::{Value, json};
use streams::analytics::AnalyticsConfig;
use streams::analytics::live::Live;
use streams::analytics::query::{Grain, Range};
use testkit::api::Client;
use testkit::core::start_core;

const METRICS: [&str; 6] = [
    "sales", "funnel", "products", "search", "refunds", "delivery",
];

async fn start_analytics(bus: Arc<bus::Bus>, dir: &std::path::Path) -> Result<supervisor::Running> {
    let config = AnalyticsConfig {
        checkpoint_dir: Some(dir.to_owned()),
        checkpoint_interval_ms: 200,
        ..AnalyticsConfig::default()
    };
    let mut list = StageList::default();
    let token = tokio_util::sync::CancellationToken::new();
    let (keys_stage, keys) = runtime::keys::stage(Arc::clone(&bus), token.clone());
    list.push(keys_stage, token);
    let metrics = list.metrics();
    list.add("analytics", |token| async move {
        streams::analytics::stage(config, keys, bus, &metrics, token)
    })
    .await?;
    Ok(supervisor::spawn_local(list).await?)
}

fn behaviour(now: i64) -> Vec<Envelope> {
    let envelope = |merchant: &str, event: Event| {
        Envelope::new(uuid::Uuid::now_v7(), now, MerchantId::new(merchant), event)
    };
    let session = SessionId::new("s-1");
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(envelope(
            MARKETPLACE,
            Event::ProductViewed(ProductViewed {
                session_id: session.clone(),
                customer_id: None,
                product_id: ProductId::new("p-1"),
            }),
        ));
    }
    for _ in 0..2 {
        events.push(envelope(
            MARKETPLACE,
            Event::CartAdded(CartChanged {
                session_id: session.clone(),
                customer_id: None,
                product_id: ProductId::new("p-1"),
                quantity: 1,
            }),
        ));
    }
    for (query, results) in [
        ("kurta", vec!["p-1"]),
        ("Kurta", vec!["p-1"]),
        ("saree", vec![]),
    ] {
        events.push(envelope(
            "m-1",
            Event::SearchPerformed(SearchPerformed {
                session_id: session.clone(),
                customer_id: None,
                query: query.into(),
                filters: Default::default(),
                pincode: None,
                results: results.into_iter().map(ProductId::new).collect(),
            }),
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_reads_its_live_numbers_and_no_one_elses() -> Result<()> {
    let bus = testkit::bus("analytics-e2e")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let analytics = start_analytics(Arc::clone(&bus), dir.path()).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.clone();
    let m1 = testkit::api::merchant(&client, &admin, "m-1").await?;
    let m2 = testkit::api::merchant(&client, &admin, "m-2").await?;
    testkit::api::listed(&client, &m1, "p-1", None, 100).await?;
    testkit::api::listed(&client, &m2, "p-9", None, 100).await?;
    let storefront = testkit::api::storefront(&client, &admin).await?;
    let mut gmv = 0;
    let mut orders = Vec::new();
    for (i, (merchant, product, quantity)) in [
        ("m-1", "p-1", 1),
        ("m-1", "p-1", 2),
        ("m-1", "p-1", 3),
        ("m-2", "p-9", 4),
    ]
    .into_iter()
    .enumerate()
    {
        let placed = client
            .ok(
                M::POST,
                "/v1/orders",
                &storefront,
                Some(json!({
                    "merchant_id": merchant, "customer_id": "c-1", "session_id": null,
                    "delivery_pincode": "560034", "currency": "INR",
                    "lines": [{"product_id": product, "quantity": quantity}]
                })),
                &[("Idempotency-Key", &format!("analytics-{i}"))],
            )
            .await?;
        if merchant == "m-1" {
            gmv += placed["totals"]["total"]["amount_minor"]
                .as_i64()
                .context("total")?;
        }
        orders.push(placed["order_id"].as_str().context("order_id")?.to_owned());
    }
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{}/cancel", orders[0]),
            &storefront,
            Some(json!({"reason": "ordered twice"})),
            &[],
        )
        .await?;
    let now = ingest::store::now_ms();
    testkit::produce_all(&bus.producer()?, &behaviour(now)).await?;

    let http = reqwest::Client::new();
    let base = format!("http://{}", analytics.addr);
    let from = now - 3_600_000;
    let get = |key: Option<String>, path: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut request = http.get(format!("{base}{path}"));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let path = |merchant: &str, metric: &str| {
        format!("/v1/merchants/{merchant}/analytics/{metric}?from={from}&grain=minute")
    };
    let sales = testkit::wait_until(Duration::from_secs(60), "m-1's orders counted", || {
        let fetched = get(Some(m1.clone()), path("m-1", "sales"));
        async move {
            let (status, body) = fetched.await?;
            Ok((status == 200
                && body["totals"]["orders"] == 3
                && body["totals"]["cancellations"] == 1)
                .then_some(body))
        }
    })
    .await?;
    ensure!(sales["totals"]["units"] == 6, "{sales}");
    ensure!(sales["totals"]["gmv"]["INR"] == gmv, "{sales}");
    ensure!(
        sales["series"].as_array().is_some_and(|s| s.len() >= 60),
        "{sales}"
    );

    let funnel = testkit::wait_until(Duration::from_secs(30), "the clicks counted", || {
        let fetched = get(Some(m1.clone()), path("m-1", "funnel"));
        async move {
            let (_, body) = fetched.await?;
            Ok((body["totals"]["views"] == 5).then_some(body))
        }
    })
    .await?;
    ensure!(funnel["totals"]["cart_adds"] == 2, "{funnel}");
    let (_, products) = get(Some(m1.clone()), path("m-1", "products")).await?;
    ensure!(
        products["products"][0]["product_id"] == "p-1"
            && products["products"][0]["units"] == 6
            && products["products"][0]["title"] == "Kurta p-1",
        "{products}"
    );
    let search = testkit::wait_until(Duration::from_secs(30), "the searches counted", || {
        let fetched = get(Some(m1.clone()), path("m-1", "search"));
        async move {
            let (_, body) = fetched.await?;
            Ok((body["totals"]["searches"] == 3).then_some(body))
        }
    })
    .await?;
    ensure!(
        search["top_queries"][0]
            == json!({"query": "kurta", "searches": 2, "zero_results": 0, "clicks": 0, "click_through": 0.0})
            && search["zero_result_queries"][0]["query"] == "saree",
        "{search}"
    );
    let (_, refunds) = get(Some(m1.clone()), path("m-1", "refunds")).await?;
    ensure!(refunds["by_reason"]["ordered twice"] == 1, "{refunds}");
    let (_, other) = get(Some(m2.clone()), path("m-2", "sales")).await?;
    ensure!(other["totals"]["orders"] == 1, "{other}");

    // Every metric: another shop's key and a storefront key are refused, no key is 401.
    for metric in METRICS {
        for (key, status, code) in [
            (Some(m2.clone()), 403, "forbidden"),
            (Some(storefront.clone()), 403, "forbidden"),
            (None, 401, "unauthorized"),
        ] {
            let (got, body) = get(key, path("m-1", metric)).await?;
            ensure!(
                got == status && body["error"]["code"] == code,
                "{metric}: {got} {body}"
            );
        }
        let (got, body) = get(Some(admin.clone()), path("m-1", metric)).await?;
        ensure!(got == 200, "{metric} as admin: {got} {body}");
        let (got, body) = get(Some(admin.clone()), path("m-404", metric)).await?;
        ensure!(
            got == 404 && body["error"]["code"] == "unknown_merchant",
            "{got} {body}"
        );
    }

    // Bad ranges and parameters: 4xx naming what is wrong.
    let day = 86_400_000;
    for (query, status, code, mention) in [
        (
            format!("sales?from={}&grain=minute", now - 2 * day),
            400,
            "grain_too_fine",
            "grain=hour",
        ),
        (
            format!("sales?from={now}&to={from}"),
            400,
            "invalid_parameter",
            "before",
        ),
        (
            format!("sales?from={}", now + day),
            400,
            "invalid_parameter",
            "future",
        ),
        (
            "sales?from=yesterday".to_owned(),
            400,
            "invalid_parameter",
            "from",
        ),
        (
            "sales?grain=fortnight".to_owned(),
            400,
            "invalid_parameter",
            "grain",
        ),
        (
            "sales?limit=0".to_owned(),
            400,
            "invalid_parameter",
            "limit",
        ),
        (
            "sales?merchant=m-2".to_owned(),
            400,
            "invalid_parameter",
            "merchant",
        ),
        (
            format!("sales?from={}&grain=day", now - 3 * day),
            422,
            "outside_live_window",
            "48 hours",
        ),
        ("profit".to_owned(), 404, "unknown_metric", "sales"),
    ] {
        let (got, body) = get(
            Some(m1.clone()),
            format!("/v1/merchants/m-1/analytics/{query}"),
        )
        .await?;
        ensure!(
            got == status && body["error"]["code"] == code,
            "{query}: {got} {body}"
        );
        ensure!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(mention)),
            "{query}: {body} does not mention {mention}"
        );
    }

    analytics.stop().await?;
    core.stop().await?;
    Ok(())
}

/// A shop selling 3 units an order from 20, through the core (placed, then paid): its cover
/// (available over units sold a day in the trailing 7 days) falls below the default restock
/// lead time of 7 days at the fourth order, and the shop is alerted once, not once per sale
/// after it, with the alert also on the inventory topic; a restock lifts it off the list.
/// Another shop's key sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_is_alerted_once_when_its_stock_runs_low() -> Result<()> {
    let bus = testkit::bus("analytics-alerts")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let analytics = start_analytics(Arc::clone(&bus), dir.path()).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.clone();
    let m1 = testkit::api::merchant(&client, &admin, "m-1").await?;
    let m2 = testkit::api::merchant(&client, &admin, "m-2").await?;
    testkit::api::listed(&client, &m1, "p-1", None, 20).await?;
    let storefront = testkit::api::storefront(&client, &admin).await?;
    let http = reqwest::Client::new();
    let alerts_of = |key: String| {
        let request = http
            .get(format!("http://{}/v1/merchants/m-1/alerts", analytics.addr))
            .bearer_auth(key);
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let sell = |i: usize| {
        let (client, storefront, m1) = (&client, storefront.clone(), m1.clone());
        async move {
            let placed = client
                .ok(
                    M::POST,
                    "/v1/orders",
                    &storefront,
                    Some(json!({
                        "merchant_id": "m-1", "customer_id": "c-1", "session_id": null,
                        "delivery_pincode": "560034", "currency": "INR",
                        "lines": [{"product_id": "p-1", "quantity": 3}]
                    })),
                    &[("Idempotency-Key", &format!("low-{i}"))],
                )
                .await?;
            let order = placed["order_id"].as_str().context("order_id")?;
            testkit::api::paid_and_packed(client, order, &storefront, &m1).await
        }
    };
    for i in 0..3 {
        sell(i).await?;
    }
    // Three sales: 11 left, 9 sold today, 1.29 a day: 8.6 days of cover.
    // The key reaches the stage through the api-keys topic: wait for it, and for the sales.
    let quiet = testkit::wait_until(Duration::from_secs(30), "three sales counted", || {
        let fetched = alerts_of(m1.clone());
        async move {
            let (status, body) = fetched.await?;
            Ok((status == 200).then_some(body))
        }
    })
    .await?;
    ensure!(quiet["alerts"] == json!([]), "{quiet}");
    for i in 3..6 {
        sell(i).await?;
    }
    let low = testkit::wait_until(Duration::from_secs(30), "the alert", || {
        let fetched = alerts_of(m1.clone());
        async move {
            let (_, body) = fetched.await?;
            // The sixth sale is counted once the cover has gone on falling to 2 units left.
            Ok((body["running_low"][0]["available"] == 2).then_some(body))
        }
    })
    .await?;
    let alerts = low["alerts"].as_array().context("alerts")?;
    ensure!(alerts.len() == 1, "one alert for one crossing: {low}");
    let alert = &alerts[0];
    // Raised when the fourth order reserved its units: 8 available, 9 sold (the fourth not
    // paid yet), 9/7 a day: 6.22 days against 7.
    ensure!(
        alert["product_id"] == "p-1"
            && alert["title"] == "Kurta p-1"
            && alert["available"] == 8
            && alert["restock_lead_days"] == 7
            && (alert["days_of_cover"].as_f64().unwrap_or_default() - 8.0 * 7.0 / 9.0).abs() < 1e-9,
        "{alert}"
    );
    let id = alert["alert_id"].as_str().context("alert_id")?.to_owned();
    let seen = testkit::event_ids_on(
        &bus,
        &testkit::unique_prefix("alerts-reader"),
        &[model::Topic::Inventory],
        &[id.clone()].into(),
        Duration::from_secs(30),
    )
    .await?;
    ensure!(
        seen[&id] == 1,
        "the alert's event once on the inventory topic: {seen:?}"
    );
    // Every consumer reads it with the strict decoder: the core's notifier tells the merchant.
    let told = testkit::first_event(
        &bus,
        &testkit::unique_prefix("alerts-told"),
        &[model::Topic::Notifications],
        Duration::from_secs(30),
        "the merchant's message about the alert",
        |event| match event {
            Event::MerchantNotified(told) if told.source_event_id == id => Some(told),
            _ => None,
        },
    )
    .await?;
    ensure!(told.text.contains("Kurta p-1"), "{told:?}");

    let (status, other) = alerts_of(m2.clone()).await?;
    ensure!(
        status == 403
            && other["error"]["code"] == "forbidden"
            && !other.to_string().contains("p-1"),
        "{status} {other}"
    );

    client
        .ok(
            M::POST,
            "/v1/products/p-1/stock",
            &m1,
            Some(json!({"delta": 100, "reason": "receipt"})),
            &[],
        )
        .await?;
    let restocked = testkit::wait_until(Duration::from_secs(30), "the restock", || {
        let fetched = alerts_of(m1.clone());
        async move {
            let (_, body) = fetched.await?;
            Ok((body["running_low"] == json!([])).then_some(body))
        }
    })
    .await?;
    ensure!(
        restocked["alerts"].as_array().map(Vec::len) == Some(1),
        "{restocked}"
    );

    analytics.stop().await?;
    core.stop().await?;
    Ok(())
}

/// A day of three shops: their catalog and stock, then orders (each reserving and selling its
/// units, with a restock whenever a product is nearly sold out, so the stock crosses its
/// lead time several times), refunds, cancellations, views, cart adds and searches at event
/// times over the last two hours, seeded.
fn traffic(now: i64, count: usize) -> Result<Vec<Envelope>> {
    use model::payload::{
        OrderCancelled, OrderLine, OrderPlaced, ProductUpserted, RefundIssued, SOLD_REASON,
        StockAdjusted, StockReserved,
    };
    use model::{CustomerId, Money, OrderId, PaymentId, Pincode, RefundId, WarehouseId};
    let stock = |product: &ProductId, delta: i64, on_hand: i64, reason: String| {
        Event::StockAdjusted(StockAdjusted {
            product_id: product.clone(),
            warehouse_id: WarehouseId::new("main"),
            delta,
            on_hand,
            reason,
        })
    };
    let mut on_hand = [60i64; 30];
    let envelope = |at: i64, merchant: &str, event: Event| {
        Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new(merchant), event)
    };
    let shops = ["m-a", "m-b", "m-c"];
    let mut events = Vec::new();
    for p in 0..30 {
        events.push(envelope(
            now - 86_400_000,
            shops[p % 3],
            Event::ProductUpserted(ProductUpserted {
                product_id: ProductId::new(format!("p-{p}")),
                category: "apparel".into(),
                brand: "Fabindia".into(),
                title: format!("Kurta {p}"),
                description: String::new(),
                attributes: Default::default(),
                price: Money::inr(10_000),
            }),
        ));
        let product = ProductId::new(format!("p-{p}"));
        events.push(envelope(
            now - 86_400_000,
            shops[p % 3],
            stock(&product, 60, 60, "receipt".into()),
        ));
    }
    let mut seed = 11u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    for i in 0..count {
        let at = now - 7_200_000 + (i as i64 * 7_200_000) / count as i64;
        let p = next(30) as usize;
        let (shop, product) = (shops[p % 3], ProductId::new(format!("p-{p}")));
        let session = SessionId::new(format!("s-{}", next(500)));
        let order_id = OrderId::new(format!("o-{i}"));
        let event = match next(10) {
            0..=3 => envelope(
                at,
                MARKETPLACE,
                Event::ProductViewed(ProductViewed {
                    session_id: session,
                    customer_id: None,
                    product_id: product,
                }),
            ),
            4 => envelope(
                at,
                MARKETPLACE,
                Event::CartAdded(CartChanged {
                    session_id: session,
                    customer_id: None,
                    product_id: product,
                    quantity: 1,
                }),
            ),
            5 => envelope(
                at,
                shop,
                Event::SearchPerformed(SearchPerformed {
                    session_id: session,
                    customer_id: None,
                    query: format!("kurta {}", next(5)),
                    filters: Default::default(),
                    pincode: None,
                    results: vec![product],
                }),
            ),
            6..=8 => {
                let quantity = 1 + next(3) as u32;
                if on_hand[p] < i64::from(quantity) + 5 {
                    on_hand[p] += 40;
                    events.push(envelope(
                        at,
                        shop,
                        stock(&product, 40, on_hand[p], "receipt".into()),
                    ));
                }
                events.push(envelope(
                    at,
                    shop,
                    Event::StockReserved(StockReserved {
                        product_id: product.clone(),
                        warehouse_id: WarehouseId::new("main"),
                        order_id: order_id.clone(),
                        quantity,
                        expires_at: at + 900_000,
                    }),
                ));
                on_hand[p] -= i64::from(quantity);
                events.push(envelope(
                    at,
                    shop,
                    stock(
                        &product,
                        -i64::from(quantity),
                        on_hand[p],
                        format!("{SOLD_REASON}{order_id}"),
                    ),
                ));
                envelope(
                    at,
                    shop,
                    Event::OrderPlaced(OrderPlaced {
                        order_id,
                        customer_id: CustomerId::new("c-1"),
                        session_id: None,
                        lines: vec![OrderLine {
                            product_id: product,
                            quantity,
                            unit_price: Money::inr(10_000),
                            gst_bps: None,
                        }],
                        delivery_pincode: Pincode::parse("560034").context("pincode")?,
                        total: Money::inr(10_000),
                    }),
                )
            }
            _ => {
                // A refund of an earlier order and its cancellation.
                let earlier =
                    OrderId::new(format!("o-{}", i.saturating_sub(1 + next(50) as usize)));
                events.push(envelope(
                    at,
                    shop,
                    Event::RefundIssued(RefundIssued {
                        refund_id: RefundId::new(format!("r-{i}")),
                        payment_id: PaymentId::new(format!("pay-{i}")),
                        order_id: earlier.clone(),
                        amount: Money::inr(7_000),
                    }),
                ));
                envelope(
                    at,
                    shop,
                    Event::OrderCancelled(OrderCancelled {
                        order_id: earlier,
                        reason: "changed mind".into(),
                        refund: Money::inr(7_000),
                    }),
                )
            }
        };
        events.push(event);
    }
    Ok(events)
}

fn checkpointed(dir: &std::path::Path) -> Result<Option<Live>> {
    Ok(runtime::checkpoint::Checkpoints::open(dir)?.load::<Live>("analytics")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_killed_at_random_moments_resumes_with_exact_totals() -> Result<()> {
    let bus = testkit::bus("analytics-crash")?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let now = ingest::store::now_ms();
    let events = traffic(now, 6_000)?;
    let expected = {
        let mut live = Live::default();
        for event in &events {
            streams::analytics::fold(&mut live, event, &AnalyticsConfig::default());
        }
        live
    };
    // Alerts of different products come in the order their partitions were read: compared
    // as sets.
    let alerts = |live: &Live| {
        let mut all: Vec<_> = ["m-a", "m-b", "m-c"]
            .iter()
            .flat_map(|shop| live.stock.alerts_of(shop))
            .collect();
        all.sort_by_key(|alert| alert.alert_id);
        all
    };
    let expected_alerts = alerts(&expected);
    ensure!(
        expected_alerts.len() > 10,
        "the traffic should cross lead times often: {} alerts",
        expected_alerts.len()
    );
    let load = testkit::produce_steadily(Arc::clone(&bus), events, 1_000);
    let dir = tempfile::tempdir()?;
    let spawn =
        || testkit::child::command(env!("CARGO_BIN_EXE_analytics_child"), &bus, dir.path()).spawn();
    testkit::kill_at_random(5, 17, "aggregator", spawn).await?;
    load.await??;
    // The last run is left to finish; its checkpoint is the state it resumed to.
    let mut last = spawn()?;
    let waited = testkit::wait_until(Duration::from_secs(90), "every event counted", || {
        let done = checkpointed(dir.path())
            .ok()
            .flatten()
            .is_some_and(|live| live.shops == expected.shops && alerts(&live) == expected_alerts);
        async move { Ok(done.then_some(())) }
    })
    .await;
    last.kill()?;
    last.wait()?;
    if let Err(error) = waited {
        let resumed = checkpointed(dir.path())?.context("no checkpoint")?;
        let range = Range::new(now - 3 * 3_600_000, now + 60_000, Grain::Day, now)?;
        let (got, want) = (
            streams::analytics::query::sales(resumed.shops.get("m-a"), &range).totals,
            streams::analytics::query::sales(expected.shops.get("m-a"), &range).totals,
        );
        anyhow::bail!(
            "{error}: m-a's sales resumed to {got:?}, a straight fold gives {want:?}; {} alerts resumed, {} in a straight fold",
            alerts(&resumed).len(),
            expected_alerts.len()
        );
    }
    Ok(())
}
