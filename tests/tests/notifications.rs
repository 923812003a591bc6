//! Notifications end to end: the core in-process against a real broker, a webhook receiver on
//! port 0, orders driven over HTTP. Every order change is told once per channel, a replayed
//! event tells nobody again, a failing receiver is retried and then dead-lettered, and a
//! merchant is told once when its product runs low.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bus::{Bus, NoHook};
use ingest::breaker::BreakerPolicy;
use ingest::notify::{NotifyConfig, WebhookConfig};
use ingest::payments::SimulatedConfig;
use ingest::service::CoreConfig;
use model::dlq::header;
use model::payload::{MerchantNotified, NotificationSent, StockLow};
use model::{Event, Topic};
use reqwest::Method as M;
use serde_json::Value;
use testkit::api::{Client, order_body, shop};
use testkit::core::start_core;

type Answer = dyn Fn(usize, &Value) -> StatusCode + Send + Sync;

/// A webhook endpoint that records every request and answers what `answer` says for the
/// n-th request (from 0) and its body.
#[derive(Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    answer: Arc<Answer>,
}

#[derive(Debug, Clone)]
struct Request {
    idempotency_key: String,
    body: Value,
    answered: StatusCode,
}

impl Receiver {
    async fn start(
        answer: impl Fn(usize, &Value) -> StatusCode + Send + Sync + 'static,
    ) -> Result<(Self, String)> {
        let receiver = Receiver {
            requests: Arc::default(),
            answer: Arc::new(answer),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(axum::serve(listener, app).into_future());
        Ok((receiver, url))
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Idempotency key -> how many requests with it were answered 2xx.
    fn accepted(&self) -> BTreeMap<String, usize> {
        let mut accepted = BTreeMap::new();
        for request in self.requests() {
            if request.answered.is_success() {
                *accepted.entry(request.idempotency_key).or_default() += 1;
            }
        }
        accepted
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> StatusCode {
    let Ok(mut requests) = receiver.requests.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let answered = (receiver.answer)(requests.len(), &body.0);
    requests.push(Request {
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.0,
        answered,
    });
    answered
}

fn config(webhook_url: &str, max_tries: u32) -> CoreConfig {
    let mut config = CoreConfig::default();
    config.payments.simulated = vec![SimulatedConfig {
        name: "upi-sim".to_owned(),
        latency_ms: 1,
        ..SimulatedConfig::default()
    }];
    config.notify = NotifyConfig {
        webhook: Some(WebhookConfig {
            url: webhook_url.to_owned(),
            timeout_ms: 2_000,
            breaker: BreakerPolicy::default(),
        }),
        max_tries,
        initial_backoff_ms: 10,
        max_backoff_ms: 100,
        commit_interval_ms: 50,
        ..NotifyConfig::default()
    };
    config
}

async fn place(client: &Client, storefront: &str, idempotency_key: &str) -> Result<String> {
    let placed = client
        .ok(
            M::POST,
            "/v1/orders",
            storefront,
            Some(order_body(1)),
            &[("Idempotency-Key", idempotency_key)],
        )
        .await?;
    placed["order_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no order_id in {placed}"))
}

/// Reads `notification.sent` events until `done` holds for what was read so far.
async fn notifications_until(
    bus: &Bus,
    group: &str,
    done: impl Fn(&[NotificationSent]) -> bool,
) -> Result<Vec<NotificationSent>> {
    let told = |event| match event {
        Event::NotificationSent(sent) => Some(sent),
        _ => None,
    };
    recorded_until(bus, group, told, done).await
}

/// Reads the notifications topic until `done` holds for the events `pick` kept.
async fn recorded_until<T: std::fmt::Debug>(
    bus: &Bus,
    group: &str,
    pick: impl Fn(Event) -> Option<T>,
    done: impl Fn(&[T]) -> bool,
) -> Result<Vec<T>> {
    let consumer = bus.consumer(group, &[Topic::Notifications], Arc::new(NoHook), &[])?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !done(&seen) {
        let Ok(record) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            bail!("notifications did not arrive; saw {seen:#?}");
        };
        let envelope = model::codec::decode(record?.payload.as_deref().unwrap_or_default())?;
        seen.extend(pick(envelope.event));
    }
    Ok(seen)
}

fn count(seen: &[NotificationSent], order_id: &str, channel: &str) -> usize {
    seen.iter()
        .filter(|n| n.order_id.as_str() == order_id && n.channel == channel)
        .count()
}

const LIFECYCLE: [&str; 5] = [
    "order.placed",
    "order.confirmed",
    "order.packed",
    "order.shipped",
    "order.delivered",
];

async fn pay_pack_ship(
    client: &Client,
    order_id: &str,
    merchant: &str,
    storefront: &str,
) -> Result<()> {
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/pay"),
            storefront,
            None,
            &[],
        )
        .await?;
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/pack"),
            merchant,
            None,
            &[],
        )
        .await?;
    let ship = serde_json::json!({"courier_id": "bluedart", "promised_at": 4_102_444_800_000_i64});
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/ship"),
            merchant,
            Some(ship),
            &[],
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_change_is_told_once_per_channel_and_a_replay_tells_nobody() -> Result<()> {
    let bus = testkit::bus("notify-once")?;
    // The first two deliveries fail as an overloaded receiver would; retries carry them.
    let (receiver, url) = Receiver::start(|n, _| {
        if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    })
    .await?;
    let core = start_core(Arc::clone(&bus), config(&url, 5)).await?;
    let client = Client::new(&core);
    let (merchant, storefront) = shop(&client, &core.admin_key).await?;
    let order_id = place(&client, &storefront, "notify-1").await?;
    pay_pack_ship(&client, &order_id, &merchant, &storefront).await?;
    let shipped = LIFECYCLE.len() - 1;
    notifications_until(&bus, "check-notify-1", |seen| {
        count(seen, &order_id, "webhook") == shipped && count(seen, &order_id, "log") == shipped
    })
    .await?;

    // Replay the order's events so far unchanged, as a relay restarted after publishing
    // would. They share the order's partition, so once the delivery that follows them is
    // told, the notifier has read past every replay.
    let consumer = bus.consumer("check-replay", &[Topic::Orders], Arc::new(NoHook), &[])?;
    let producer = bus.producer()?;
    for _ in 0..shipped {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        producer
            .send(bus::OutRecord {
                topic: Topic::Orders,
                key: record.key.as_deref().unwrap_or_default(),
                payload: record.payload.as_deref().unwrap_or_default(),
                headers: &[],
            })
            .await?;
    }
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/deliver"),
            &merchant,
            None,
            &[],
        )
        .await?;

    // One order's notifications share a partition and arrive in the order they were told.
    let seen = notifications_until(&bus, "check-notify-2", |seen| {
        ["webhook", "log"].iter().all(|channel| {
            seen.iter()
                .any(|n| n.channel == *channel && n.template == "order.delivered")
        })
    })
    .await?;
    let templates: Vec<&str> = seen
        .iter()
        .filter(|n| n.channel == "webhook")
        .map(|n| n.template.as_str())
        .collect();
    ensure!(
        templates == LIFECYCLE,
        "each change told once, in order: {templates:?}"
    );
    ensure!(
        count(&seen, &order_id, "log") == LIFECYCLE.len(),
        "each change told once on the log channel: {seen:#?}"
    );
    for sent in seen.iter().filter(|n| n.channel == "log") {
        ensure!(
            !sent.text.starts_with("Hello"),
            "the log channel is short: {sent:?}"
        );
    }
    let accepted = receiver.accepted();
    ensure!(
        accepted.len() == LIFECYCLE.len() && accepted.values().all(|n| *n == 1),
        "each event accepted exactly once by the receiver: {accepted:?}"
    );
    let requests = receiver.requests();
    ensure!(
        requests.len() == LIFECYCLE.len() + 2,
        "two failures, then one request per event: {requests:#?}"
    );
    let first = &requests[2].body;
    ensure!(
        first["customer_id"] == "c-7"
            && first["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Hello c-7,")),
        "the webhook gets the long text for the customer: {first}"
    );
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_opens_its_breaker_and_notifications_wait_instead_of_calling_it()
-> Result<()> {
    let bus = testkit::bus("notify-breaker")?;
    let (receiver, url) = Receiver::start(|_, _| StatusCode::SERVICE_UNAVAILABLE).await?;
    let mut config = config(&url, 5);
    if let Some(webhook) = config.notify.webhook.as_mut() {
        webhook.breaker = BreakerPolicy {
            failures_to_open: 2,
            cool_down_ms: 60_000,
        };
    }
    let core = start_core(Arc::clone(&bus), config).await?;
    let client = Client::new(&core);
    let (_, storefront) = shop(&client, &core.admin_key).await?;
    for n in 0..3 {
        place(&client, &storefront, &format!("breaker-{n}")).await?;
    }
    // Without the breaker: 5 tries for each notification, one after the other. With it: two
    // failures, then nothing until the probe a minute later; nothing is dead-lettered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = receiver.requests().len();
    ensure!(
        calls == 2,
        "{calls} calls reached a receiver known to be down"
    );
    core.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_keeps_failing_gets_n_tries_then_the_event_goes_to_the_dlq() -> Result<()> {
    let bus = testkit::bus("notify-dlq")?;
    // Server errors for the placed order, a refusal for anything else.
    let (receiver, url) = Receiver::start(|_, body| {
        if body["template"] == "order.placed" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    })
    .await?;
    let core = start_core(Arc::clone(&bus), config(&url, 3)).await?;
    let client = Client::new(&core);
    let (_, storefront) = shop(&client, &core.admin_key).await?;
    let order_id = place(&client, &storefront, "notify-dlq").await?;
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/pay"),
            &storefront,
            None,
            &[],
        )
        .await?;
    // An order this core never placed (another core's, or generated traffic) is not ours to
    // tell: no notification, no dead letter. The malformed record after it shares its key, so
    // the notifier handles them in that order and any dead letter for the foreign order would
    // precede the malformed one on the same DLQ partition: once the malformed letter is read,
    // the foreign order has been dealt with.
    let foreign = model::Envelope::new(
        uuid::Uuid::now_v7(),
        4_102_444_800_000,
        model::MerchantId::new("m-elsewhere"),
        Event::OrderConfirmed(model::payload::OrderConfirmed {
            order_id: model::OrderId::new("o-elsewhere"),
            payment_id: model::PaymentId::new("pay-elsewhere"),
        }),
    );
    testkit::produce_all(&bus.producer()?, &[foreign]).await?;
    bus.producer()?
        .send(bus::OutRecord {
            topic: Topic::Orders,
            key: b"o-elsewhere",
            payload: b"{not json",
            headers: &[],
        })
        .await?;

    let dlq = bus.consumer("check-dlq", &[Topic::Dlq], Arc::new(NoHook), &[])?;
    let mut letters = Vec::new();
    while letters.len() < 3 {
        let record = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
            .await
            .map_err(|_| anyhow::anyhow!("dead letters missing; have {letters:?}"))??;
        let text =
            |name| String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned();
        letters.push((
            text(header::STAGE),
            text(header::REASON),
            text(header::SOURCE_TOPIC),
        ));
    }
    letters.sort();
    let orders = bus.topic_name(Topic::Orders);
    let expected = [
        ("notifier", "malformed_json"),
        ("notifier.webhook", "notification_refused"),
        ("notifier.webhook", "retries_exhausted"),
    ]
    .map(|(stage, reason)| (stage.to_owned(), reason.to_owned(), orders.clone()));
    ensure!(letters == expected, "dead letters: {letters:#?}");
    let requests = receiver.requests();
    let placed_tries = requests
        .iter()
        .filter(|r| r.body["template"] == "order.placed")
        .count();
    let confirmed_tries = requests
        .iter()
        .filter(|r| r.body["template"] == "order.confirmed")
        .count();
    ensure!(
        placed_tries == 3,
        "a server error is retried up to max_tries: {placed_tries}"
    );
    ensure!(
        confirmed_tries == 1,
        "a refusal is not retried: {confirmed_tries}"
    );

    // The log channel delivered both, whatever the webhook did.
    notifications_until(&bus, "check-dlq-log", |seen| {
        count(seen, &order_id, "log") == 2
    })
    .await?;
    ensure!(
        !receiver
            .requests()
            .iter()
            .any(|r| r.body["order_id"] == "o-elsewhere"),
        "a foreign order was notified"
    );
    core.stop().await
}

/// A low-stock alert for the test shop's product, as the analytics stage publishes it.
fn stock_low(merchant: &str, available: i64) -> model::Envelope {
    model::Envelope::new(
        uuid::Uuid::now_v7(),
        4_102_444_800_000,
        model::MerchantId::new(merchant),
        Event::StockLow(StockLow {
            product_id: model::ProductId::new("p-chai"),
            warehouse_id: model::WarehouseId::new("w-1"),
            available,
            units_sold: 21,
            velocity_days: 7,
            restock_lead_days: 5,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_is_told_once_when_its_product_runs_low() -> Result<()> {
    let bus = testkit::bus("notify-stock")?;
    let (receiver, url) = Receiver::start(|_, _| StatusCode::NO_CONTENT).await?;
    let core = start_core(Arc::clone(&bus), config(&url, 3)).await?;
    let client = Client::new(&core);
    shop(&client, &core.admin_key).await?;
    // All keyed by the product, so the notifier reads them in this order: a merchant this core
    // does not hold, the shop's alert, the same alert replayed, then a later alert. Once the
    // later one is told, the three before it have been dealt with.
    let first = stock_low("m-1", 6);
    let later = stock_low("m-1", 2);
    let later_id = later.event_id.to_string();
    let producer = bus.producer()?;
    for envelope in [
        stock_low("m-elsewhere", 1),
        first.clone(),
        first.clone(),
        later,
    ] {
        testkit::produce_all(&producer, &[envelope]).await?;
    }
    let told = |event| match event {
        Event::MerchantNotified(sent) => Some(sent),
        _ => None,
    };
    // Each message is keyed by its alert, so the two alerts' messages may be read in either
    // order: wait for both alerts on both channels. A replay told again would show on the
    // webhook below, which the notifier calls before it moves on to the later alert.
    let first_id = first.event_id.to_string();
    let seen: Vec<MerchantNotified> = recorded_until(&bus, "check-stock", told, |seen| {
        let of = |id: &str| seen.iter().filter(|n| n.source_event_id == id).count();
        of(&first_id) >= 2 && of(&later_id) >= 2
    })
    .await?;
    for channel in ["log", "webhook"] {
        let told = seen
            .iter()
            .filter(|n| n.channel == channel && n.source_event_id == first_id)
            .count();
        ensure!(
            told == 1,
            "the first alert told {told} times on {channel}: {seen:#?}"
        );
    }
    let requests = receiver.requests();
    ensure!(
        requests.len() == 2 && receiver.accepted().values().all(|n| *n == 1),
        "one webhook call per alert, none for another merchant: {requests:#?}"
    );
    let body = &requests[0].body;
    ensure!(
        body["to"] == "merchant"
            && body["merchant_id"] == "m-1"
            && body["template"] == "inventory.stock_low"
            && body.get("order_id").is_none(),
        "the webhook is told it is for the merchant: {body}"
    );
    ensure!(
        body["text"]
            .as_str()
            .is_some_and(|text| text.starts_with("Hello Chai Point,")
                && text.contains("Masala chai 250 g (p-chai) has 6 left at w-1")
                && text.contains("about 2.0 days at 3.0 sold a day; restocking takes 5 days")),
        "the merchant reads the product, its cover and the lead time: {body}"
    );
    core.stop().await
}
