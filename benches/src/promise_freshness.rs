//! `shopstream-bench promise --freshness`: a delivery produced to the broker until
//! `/v1/promise` counts it, one at a time, through the serviceability stage on the front door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use model::payload::{ShipmentCreated, ShipmentDelivered};
use model::{Envelope, Event, MerchantId, OrderId, ShipmentId, Topic};
use rand::SeedableRng;
use runtime::supervisor::StageList;
use shopstream::config::Config;
use streams::serviceability::ServiceabilityConfig;
use traffic::lanes;

const DAY: i64 = 86_400_000;

pub async fn run(config: &Config, samples: usize) -> Result<()> {
    let bus = shopstream::app::connect(config).await?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    // The lanes' network and 150 days of their deliveries, so every level has learnt.
    let world = lanes::draw(
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(5),
        20_000,
        2,
        2,
        3,
    );
    let mut history = lanes::network(&world);
    history.extend(lanes::events_before(&world, world.start + 150 * DAY));
    crate::load::produce(&producer, &history).await?;

    let dir = tempfile::tempdir()?;
    let serviceability = ServiceabilityConfig {
        checkpoint_dir: Some(dir.path().to_owned()),
        ..config.serviceability.clone()
    };
    let service = streams::serviceability::service(&serviceability);
    let mut list = StageList::default();
    let (metrics, stage_bus) = (list.metrics(), Arc::clone(&bus));
    list.add("serviceability", |token| async move {
        streams::serviceability::stage(serviceability, service, stage_bus, &metrics, token)
    })
    .await?;
    let running = crate::load::serve(config, list).await?;
    let (warehouse, origin, _) = &world.warehouses[0];
    let (courier, destination) = (&world.couriers[0], world.places[0].pincode);
    let url = format!(
        "http://{}/v1/promise?origin_pincode={}&destination_pincode={destination}&courier_id={courier}&order_time={}",
        running.addr,
        origin.pincode,
        world.start + 160 * DAY
    );
    let http = reqwest::Client::new();
    let deliveries = || async {
        let answer: serde_json::Value = http.get(&url).send().await?.json().await?;
        anyhow::Ok(answer["lanes"][0]["deliveries"].as_u64())
    };
    // Learnt once the count stops moving.
    let started = Instant::now();
    let mut learnt = None;
    loop {
        let now = deliveries().await?;
        if now.is_some() && now == learnt {
            break;
        }
        learnt = now;
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the history was not learnt within 5 minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let base = learnt.context("no lane answered")?;
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        let shipped_at = world.start + 150 * DAY + i as i64 * 60_000;
        let (order_id, shipment_id) = (
            OrderId::new(format!("o-probe-{i}")),
            ShipmentId::new(format!("sh-probe-{i}")),
        );
        let envelope = |at: i64, event: Event| {
            Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new("m-probe"), event)
        };
        let created = envelope(
            shipped_at,
            Event::ShipmentCreated(ShipmentCreated {
                shipment_id: shipment_id.clone(),
                order_id: order_id.clone(),
                warehouse_id: warehouse.clone(),
                courier_id: courier.clone(),
                origin_pincode: origin.pincode,
                destination_pincode: destination,
                promised_at: shipped_at + 4 * DAY,
            }),
        );
        producer.send_event(&created).await?;
        let delivered = envelope(
            shipped_at + 2 * DAY,
            Event::ShipmentDelivered(ShipmentDelivered {
                shipment_id,
                order_id,
            }),
        );
        let sent = Instant::now();
        producer.send_event(&delivered).await?;
        let want = base + i as u64 + 1;
        while deliveries().await? != Some(want) {
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("delivery {i} not counted in /v1/promise after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "freshness, shipment.delivered produced -> counted in /v1/promise, {samples} deliveries on a lane of {base}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    running.stop().await?;
    Ok(())
}
