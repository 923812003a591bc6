//! The promise a shopper is shown is the promise a shipment carries: a merchant registers a
//! warehouse through the core's API, the serviceability stage learns it from the logistics
//! topic, an order placed through the core records the day serviceability promised, and
//! shipping it without naming a promise sends that day on `shipment.created`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use model::calendar::IstDate;
use model::{CourierId, Envelope, Event, MerchantId, Topic};
use reqwest::Method as M;
use reqwest::StatusCode;
use runtime::supervisor::{self, StageList};
use serde_json::{Value, json};
use streams::serviceability::{Serviceability, ServiceabilityConfig};
use testkit::api::{Client, code};
use testkit::core::launch_core_promising;

async fn start_serviceability(
    bus: Arc<bus::Bus>,
    service: Arc<Serviceability>,
    dir: &std::path::Path,
) -> Result<supervisor::Running> {
    let config = ServiceabilityConfig {
        checkpoint_dir: Some(dir.to_owned()),
        ..ServiceabilityConfig::default()
    };
    let mut list = StageList::default();
    let metrics = list.metrics();
    list.add("serviceability", |token| async move {
        streams::serviceability::stage(config, service, bus, &metrics, token)
    })
    .await?;
    Ok(supervisor::spawn_local(list).await?)
}

/// A courier picking up in Bengaluru and delivering across it, as `shopstream import couriers`
/// publishes one.
async fn publish_courier(bus: &bus::Bus) -> Result<()> {
    let courier = CourierId::new("cr-blr");
    let coverage = "pincode,prepaid,cod,pickup,oda\n560001,y,y,y,n\n560034,y,y,y,n\n";
    let file = streams::serviceability::coverage::parse(&courier, coverage)?;
    let platform = MerchantId::new("platform");
    let registered = Event::CourierUpserted(model::payload::CourierUpserted {
        courier_id: courier,
        name: "Bengaluru Express".into(),
        speed: model::payload::CourierSpeed::Express,
        working_days: model::calendar::Weekday::ALL.to_vec(),
    });
    let events: Vec<Envelope> = std::iter::once(registered)
        .chain(file.districts.into_iter().map(Event::CoverageUpserted))
        .map(|event| {
            Envelope::new(
                uuid::Uuid::now_v7(),
                ingest::store::now_ms(),
                platform.clone(),
                event,
            )
        })
        .collect();
    testkit::produce_all(&bus.producer()?, &events).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_records_the_promise_serviceability_made_and_its_shipment_carries_it() -> Result<()>
{
    let bus = testkit::bus("promises-e2e")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let service = streams::serviceability::service(&ServiceabilityConfig::default());
    let dir = tempfile::tempdir()?;
    let serviceability =
        start_serviceability(Arc::clone(&bus), Arc::clone(&service), dir.path()).await?;
    let promises: Arc<dyn model::deliver::Deliverability> = service.clone();
    let core = launch_core_promising(
        Arc::clone(&bus),
        ingest::service::CoreConfig::default(),
        Some(promises),
    )
    .await?;
    let client = Client::new(&core);
    let admin = core.admin_key.clone();
    let merchant = testkit::api::merchant(&client, &admin, "m-1").await?;
    let other = testkit::api::merchant(&client, &admin, "m-2").await?;
    let storefront = testkit::api::storefront(&client, &admin).await?;

    // The merchant's warehouse, open every day until a minute before midnight.
    let warehouse = json!({
        "pincode": "560001", "cutoff": "23:59", "handling_days": 1,
        "working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "restock_lead_days": 5
    });
    let saved = client
        .ok(
            M::PUT,
            "/v1/warehouses/w-blr",
            &merchant,
            Some(warehouse.clone()),
            &[],
        )
        .await?;
    ensure!(
        saved["cutoff"] == "23:59" && saved["pincode"] == "560001",
        "{saved}"
    );
    let listed = client
        .ok(M::GET, "/v1/warehouses", &merchant, None, &[])
        .await?;
    ensure!(
        listed["warehouses"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    let none = client
        .ok(M::GET, "/v1/warehouses", &other, None, &[])
        .await?;
    ensure!(none["warehouses"] == json!([]), "{none}");

    // Refusals name the field; another shop's id is refused without naming its owner.
    let with = |field: &str, value: Value| {
        let mut body = warehouse.clone();
        body[field] = value;
        body
    };
    for (key, path, body, status, want, mention) in [
        (
            &other,
            "/v1/warehouses/w-blr",
            warehouse.clone(),
            StatusCode::CONFLICT,
            "warehouse_id_taken",
            "w-blr",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("cutoff", json!("25:00")),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "cutoff",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("pincode", json!("999999")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_pincode",
            "999999",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("working_days", json!([])),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "working_days",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("handling_days", json!(31)),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "handling_days",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("radius_km", json!(-1)),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "radius_km",
        ),
        (
            &merchant,
            "/v1/warehouses/w-2",
            with("holidays", json!(["2026-13-01"])),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "holidays",
        ),
        (
            &merchant,
            "/v1/warehouses/w%202",
            warehouse.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "warehouse_id",
        ),
        (
            &storefront,
            "/v1/warehouses/w-3",
            warehouse.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
            "",
        ),
    ] {
        let (got, answer, _) = client
            .call(M::PUT, path, Some(key), Some(body), &[])
            .await?;
        ensure!(
            got == status && code(&answer) == want,
            "{path}: {got} {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(mention),
            "{message} does not mention {mention}"
        );
        ensure!(!message.contains("m-1"), "{message} names the owner");
    }

    publish_courier(&bus).await?;
    testkit::api::listed(&client, &merchant, "p-1", Some("w-blr"), 10).await?;
    testkit::api::listed(&client, &merchant, "p-2", Some("w-unregistered"), 10).await?;

    // Serviceability has read the warehouse, the courier and the stock from the topics.
    let http = reqwest::Client::new();
    let answer_url = format!(
        "http://{}/v1/serviceability?pincode=560034&product_id=p-1&quantity=2",
        serviceability.addr
    );
    let shown = |http: reqwest::Client, url: String| async move {
        let answer: Value = http.get(&url).send().await?.json().await?;
        anyhow::Ok(
            (answer["deliverable"] == true)
                .then(|| answer["deliver_by"].as_str().map(str::to_owned))
                .flatten(),
        )
    };
    let before = testkit::wait_until(Duration::from_secs(60), "p-1 deliverable", || {
        shown(http.clone(), answer_url.clone())
    })
    .await?;

    let order = |product: &str| {
        json!({
            "merchant_id": "m-1", "customer_id": "c-7", "session_id": null,
            "delivery_pincode": "560034", "currency": "INR",
            "lines": [{"product_id": product, "quantity": 2}]
        })
    };
    let idempotency = [("Idempotency-Key", "promise-1")];
    let placed = client
        .ok(
            M::POST,
            "/v1/orders",
            &storefront,
            Some(order("p-1")),
            &idempotency,
        )
        .await?;
    let after = shown(http.clone(), answer_url.clone())
        .await?
        .context("p-1 no longer deliverable")?;
    let promised = placed["deliver_by"].as_str().context("no deliver_by")?;
    // The same model answered both: the day the storefront showed is the day recorded (the
    // two reads bracket the order, in case a cut-off passed between them).
    ensure!(
        promised == before || promised == after,
        "order promised {promised}; serviceability showed {before} / {after}"
    );
    let end_of_day = IstDate::parse(promised)
        .map_err(anyhow::Error::msg)?
        .plus_days(1)
        .start_utc_ms()
        - 1;
    let order_id = placed["order_id"].as_str().context("order_id")?.to_owned();
    let view = client
        .ok(
            M::GET,
            &format!("/v1/orders/{order_id}"),
            &storefront,
            None,
            &[],
        )
        .await?;
    ensure!(view["promised_at"] == end_of_day, "{view}");

    testkit::api::paid_and_packed(&client, &order_id, &storefront, &merchant).await?;
    let shipped = client
        .ok(
            M::POST,
            &format!("/v1/orders/{order_id}/ship"),
            &merchant,
            Some(json!({"courier_id": "cr-blr", "origin_pincode": "560001"})),
            &[],
        )
        .await?;
    let view = client
        .ok(
            M::GET,
            &format!("/v1/orders/{order_id}"),
            &storefront,
            None,
            &[],
        )
        .await?;
    ensure!(view["shipment"]["promised_at"] == end_of_day, "{view}");

    // And on the topic every consumer (the learner's accuracy, the lakehouse) reads.
    let shipment_id = shipped["shipment_id"].as_str().unwrap_or_default();
    let created = testkit::first_event(
        &bus,
        "promises-e2e-reader",
        &[Topic::Shipments],
        Duration::from_secs(30),
        "shipment.created on the shipments topic",
        |event| match event {
            Event::ShipmentCreated(created) if created.shipment_id.as_str() == shipment_id => {
                Some(created)
            }
            _ => None,
        },
    )
    .await?;
    ensure!(created.promised_at == end_of_day, "{created:?}");

    // A product serviceability cannot promise: no promise is recorded, and shipping it needs one.
    let unpromised = client
        .ok(
            M::POST,
            "/v1/orders",
            &storefront,
            Some(order("p-2")),
            &[("Idempotency-Key", "promise-2")],
        )
        .await?;
    ensure!(unpromised["deliver_by"].is_null(), "{unpromised}");
    let order_id = unpromised["order_id"]
        .as_str()
        .context("order_id")?
        .to_owned();
    testkit::api::paid_and_packed(&client, &order_id, &storefront, &merchant).await?;
    let (status, refused, _) = client
        .call(
            M::POST,
            &format!("/v1/orders/{order_id}/ship"),
            Some(&merchant),
            Some(json!({"courier_id": "cr-blr", "origin_pincode": "560001"})),
            &[],
        )
        .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST
            && refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("promised_at")),
        "{status} {refused}"
    );

    core.stop().await?;
    serviceability.stop().await?;
    Ok(())
}
