//! Serviceability: what the stage learns from generated deliveries against the generator's
//! truth, the stage through the broker and the front door (answers, refusals, dead letters),
//! and a learner SIGKILLed again and again resuming with exactly the state of one that never
//! stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use model::calendar::IstDate;
use model::payload::WarehouseUpserted;
use model::{Envelope, Event, MerchantId};
use rand::SeedableRng;
use runtime::supervisor::{self, StageList};
use serde_json::{Value, json};
use streams::serviceability::learn::{LearnConfig, Level};
use streams::serviceability::promise::{Inputs, PromiseConfig};
use streams::serviceability::{Serviceability, ServiceabilityConfig, State};
use traffic::delivery;
use traffic::lanes::{self, CUTOFF_MINUTE, Lanes};

const DAY: i64 = 24 * 3_600_000;

/// 2 warehouses x 2 couriers x 3 destinations: twelve lanes of about 3,000 deliveries each.
fn small_world() -> Lanes {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    lanes::draw(&mut rng, 36_000, 2, 2, 3)
}

fn learnt(world: &Lanes, service: &Serviceability, until: i64) -> Result<State> {
    let mut state = State::default();
    for envelope in lanes::network(world)
        .iter()
        .chain(&lanes::events_before(world, until))
    {
        state
            .apply(envelope, service.regions(), &service.learn)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(state)
}

#[test]
fn learnt_quantiles_match_the_generators_truth_and_promises_keep_nine_in_ten() -> Result<()> {
    let world = small_world();
    let service = Serviceability::new(LearnConfig::default(), PromiseConfig::default());
    let split = world.start + 150 * DAY;
    let state = learnt(&world, &service, split)?;
    let learn = LearnConfig::default();
    for (w, (warehouse_id, origin, declared)) in world.warehouses.iter().enumerate() {
        let handling = state
            .learnt
            .handling(warehouse_id, &learn)
            .context("handling learnt")?;
        for q in [0.5, 0.9] {
            ensure!(
                handling.quantile(q) == delivery::handling_quantile(*declared, q),
                "warehouse {w} handling at {q}: learnt {} against the truth's {}",
                handling.quantile(q),
                delivery::handling_quantile(*declared, q)
            );
        }
        for (c, courier) in world.couriers.iter().enumerate() {
            for destination in &world.places[..3] {
                let estimate = state
                    .learnt
                    .transit(
                        origin.pincode,
                        destination.pincode,
                        courier,
                        service.regions(),
                        &learn,
                    )
                    .context("a known lane")?;
                ensure!(estimate.level == Level::Pincode, "{:?}", estimate.level);
                let base =
                    delivery::base_transit_days(origin, destination, delivery::courier_speed(c));
                // Quantiles away from the truth's steps (60 %, 82 %, 91 %), so sampling
                // noise cannot move the answer.
                for q in [0.5, 0.75, 0.87] {
                    ensure!(
                        estimate.days.quantile(q) == delivery::transit_quantile(base, q),
                        "{} -> {} by {courier} at {q}: learnt {} days, truth {}",
                        origin.pincode,
                        destination.pincode,
                        estimate.days.quantile(q),
                        delivery::transit_quantile(base, q)
                    );
                }
            }
        }
    }

    // Promise every later order at the default quantile and score it against the truth.
    let promise = PromiseConfig::default();
    let inputs = Inputs {
        network: &state.network,
        learnt: &state.learnt,
        regions: service.regions(),
        learn: &learn,
        promise: &promise,
    };
    let (mut promised, mut on_time, mut distinct) = (0, 0, std::collections::BTreeSet::new());
    for truth in world.truths.iter().filter(|t| t.placed_at >= split) {
        let warehouse = state
            .network
            .warehouse(&world.warehouses[truth.warehouse].0)
            .context("registered")?;
        let lane = inputs
            .lane(
                truth.placed_at,
                warehouse,
                &world.couriers[truth.courier],
                truth.destination.pincode,
            )
            .context("a promise")?;
        promised += 1;
        on_time += u32::from(IstDate::of_instant(truth.delivered_at) <= lane.deliver_by);
        distinct.insert(lane.p90_days);
    }
    let rate = f64::from(on_time) / f64::from(promised);
    ensure!(rate >= 0.9, "on time {rate:.3} of {promised}");
    ensure!(distinct.len() > 2, "promises differ by lane: {distinct:?}");
    let _ = CUTOFF_MINUTE;
    Ok(())
}

async fn start(
    bus: Arc<bus::Bus>,
    service: Arc<Serviceability>,
    dir: &std::path::Path,
) -> Result<supervisor::Running> {
    let config = ServiceabilityConfig {
        checkpoint_dir: Some(dir.to_owned()),
        checkpoint_interval_ms: 200,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_learns_through_the_broker_and_answers_at_the_front_door() -> Result<()> {
    let bus = testkit::bus("serviceability-e2e")?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let world = small_world();
    let producer = bus.producer()?;
    let mut events = lanes::network(&world);
    events.extend(lanes::stock(&world));
    events.extend(lanes::events_before(&world, world.start + 150 * DAY));
    // A warehouse whose cut-off is past midnight goes to the DLQ with its reason.
    events.push(Envelope::new(
        uuid::Uuid::now_v7(),
        world.start,
        MerchantId::new("m-1"),
        Event::WarehouseUpserted(WarehouseUpserted {
            warehouse_id: "w-bad".into(),
            pincode: world.places[0].pincode,
            cutoff_minute: 25 * 60,
            handling_days: 1,
            working_days: model::calendar::Weekday::ALL.to_vec(),
            holidays: vec![],
            radius_km: None,
            restock_lead_days: 3,
        }),
    ));
    testkit::produce_all(&producer, &events).await?;
    let dir = tempfile::tempdir()?;
    let service = streams::serviceability::service(&ServiceabilityConfig::default());
    let running = start(Arc::clone(&bus), Arc::clone(&service), dir.path()).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let (origin, destination) = (world.warehouses[0].1.pincode, world.places[0].pincode);
    let promise_url = format!(
        "{base}/v1/promise?origin_pincode={origin}&destination_pincode={destination}&warehouse_id={}&order_time={}",
        world.warehouses[0].0,
        world.start + 160 * DAY
    );
    // The lanes answer at pincode level after their first few deliveries, while the rest of
    // the 150 days are still being read: wait for the busiest lane to have most of them.
    testkit::wait_until(
        Duration::from_secs(60),
        "the lanes learnt from over 100 deliveries",
        || {
            let (http, url) = (http.clone(), promise_url.clone());
            async move {
                let answer: Value = http.get(&url).send().await?.json().await?;
                let learnt = answer["lanes"].as_array().is_some_and(|lanes| {
                    lanes.len() == 2 && lanes.iter().all(|l| l["level"] == "pincode")
                });
                let busiest = answer["lanes"][0]["deliveries"].as_u64();
                Ok((learnt && busiest > Some(100)).then_some(()))
            }
        },
    )
    .await?;

    // One item, and a cart with a product nobody stocks. Stock travels on its own topic, so
    // it may be read after the lanes.
    let one: Value = testkit::wait_until(Duration::from_secs(30), "the stock read", || {
        let http = http.clone();
        let (p0, p1) = (
            format!("{base}/v1/serviceability?pincode={destination}&product_id=p-0"),
            format!("{base}/v1/serviceability?pincode={destination}&product_id=p-1"),
        );
        async move {
            let one: Value = http.get(&p0).send().await?.json().await?;
            let other: Value = http.get(&p1).send().await?.json().await?;
            Ok((one["deliverable"] == true && other["deliverable"] == true).then_some(one))
        }
    })
    .await?;
    ensure!(one["deliverable"] == true, "{one}");
    ensure!(
        one["warehouse_id"] == world.warehouses[0].0.as_str(),
        "{one}"
    );
    ensure!(
        one["deliver_by"].as_str().is_some_and(|d| d.len() == 10),
        "{one}"
    );
    let cart: Value = http
        .post(format!("{base}/v1/serviceability"))
        .json(&json!({"pincode": destination.to_string(), "items": [
            {"product_id": "p-0", "quantity": 2},
            {"product_id": "p-nobody", "quantity": 1},
            {"product_id": "p-1", "quantity": 11},
        ]}))
        .send()
        .await?
        .json()
        .await?;
    let reasons: Vec<&Value> = cart["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|item| &item["reason"])
        .collect();
    ensure!(
        reasons == [&Value::Null, &json!("no_stock"), &json!("no_stock")],
        "{cart}"
    );

    // Bad input: 4xx naming the field, never a 5xx.
    let items: Vec<Value> = (0..101)
        .map(|_| json!({"product_id": "p-0", "quantity": 1}))
        .collect();
    for (request, status, code, mention) in [
        (http.get(format!("{base}/v1/serviceability?pincode=0560034&product_id=p-0")), 400, "invalid_parameter", "pincode"),
        (http.get(format!("{base}/v1/serviceability?pincode=999999&product_id=p-0")), 422, "unknown_pincode", "999999"),
        (http.get(format!("{base}/v1/serviceability?pincode={destination}&product_id=p-0&quantity=0")), 400, "invalid_parameter", "quantity"),
        (http.post(format!("{base}/v1/serviceability")).json(&json!({"pincode": destination.to_string(), "items": items})), 400, "invalid_parameter", "items"),
        (http.post(format!("{base}/v1/serviceability")).json(&json!({"pincode": destination.to_string(), "order_time": 0, "items": [{"product_id": "p-0", "quantity": 1}]})), 400, "invalid_parameter", "order_time"),
        (http.post(format!("{base}/v1/serviceability")).json(&json!({"pincode": destination.to_string(), "items": [{"product_id": "p-0", "quantity": -1}]})), 400, "invalid_parameter", "items[0].quantity"),
        (http.post(format!("{base}/v1/serviceability")).json(&json!({"pincode": destination.to_string(), "items": [{"product": "p-0"}]})), 400, "invalid_json", "items[0]"),
        (http.get(format!("{base}/v1/promise?origin_pincode={origin}")), 400, "invalid_parameter", "destination_pincode"),
        (http.get(format!("{base}/v1/promise?origin_pincode={origin}&destination_pincode={destination}&courier_id=cr-nobody")), 404, "not_found", "cr-nobody"),
    ] {
        let response = request.send().await?;
        let got = response.status().as_u16();
        let body: Value = response.json().await?;
        ensure!(got == status && body["error"]["code"] == code, "{got} {body}");
        ensure!(
            body["error"]["message"].as_str().is_some_and(|m| m.contains(mention)),
            "{body} does not mention {mention}"
        );
    }
    // The past is fine for /v1/promise (backtests).
    let past = http
        .get(format!("{base}/v1/promise?origin_pincode={origin}&destination_pincode={destination}&order_time=0"))
        .send()
        .await?;
    ensure!(past.status() == 200, "{}", past.status());

    let dead = testkit::wait_until(
        Duration::from_secs(30),
        "the bad warehouse dead-lettered",
        || {
            let http = http.clone();
            let url = format!("{base}/metrics");
            async move {
                let text = http.get(&url).send().await?.text().await?;
                Ok(text
                    .lines()
                    .any(|line| {
                        line.starts_with("shopstream_dead_letters_total{job=\"serviceability\"} 1")
                    })
                    .then_some(()))
            }
        },
    )
    .await;
    running.stop().await?;
    dead?;
    Ok(())
}

/// The learner's checkpoint in `dir`, if it has written one.
fn checkpointed(dir: &std::path::Path) -> Result<Option<State>> {
    Ok(runtime::checkpoint::Checkpoints::open(dir)?.load::<State>("serviceability")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_at_random_moments_resumes_with_the_same_state() -> Result<()> {
    let bus = testkit::bus("serviceability-crash")?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let world = small_world();
    let mut events = lanes::network(&world);
    events.extend(lanes::events_before(&world, i64::MAX));
    let service = Serviceability::new(LearnConfig::default(), PromiseConfig::default());
    let expected = learnt(&world, &service, i64::MAX)?;
    let producing = testkit::produce_steadily(Arc::clone(&bus), events, 40_000);
    let dir = tempfile::tempdir()?;
    // SIGKILL the learner's process at random moments while the events arrive (no flush, no
    // checkpoint, no commit), and start it again from what it left on disk.
    let spawn = || {
        testkit::child::command(env!("CARGO_BIN_EXE_serviceability_child"), &bus, dir.path())
            .spawn()
    };
    testkit::kill_at_random(5, 3, "learner", spawn).await?;
    producing.await??;
    // The last run is left to learn everything; its checkpoint is the state it resumed to.
    let mut last = spawn()?;
    let total = expected.learnt.counts;
    let waited = testkit::wait_until(
        Duration::from_secs(120),
        "every delivery learnt and checkpointed",
        || {
            let state = checkpointed(dir.path());
            async move {
                Ok(state?.filter(|state| {
                    let counts = state.learnt.counts;
                    counts.deliveries >= total.deliveries && counts.handlings >= total.handlings
                }))
            }
        },
    )
    .await;
    last.kill()?;
    last.wait()?;
    let resumed = match waited {
        Ok(resumed) => resumed,
        Err(error) => {
            let state = checkpointed(dir.path())?;
            let counts = state.as_ref().map(|state| state.learnt.counts);
            let positions = state.map(|state| state.positions);
            anyhow::bail!(
                "{error}: resumed to {counts:?} at {positions:?}, a straight fold gives {total:?}"
            );
        }
    };
    ensure!(resumed.network == expected.network, "the network differs");
    ensure!(
        resumed.learnt.counts == expected.learnt.counts,
        "{:?} against {:?}",
        resumed.learnt.counts,
        expected.learnt.counts
    );
    // The same lanes with the same quantiles (the order records of different topics arrive
    // in may differ from the straight fold; each lane's own records do not).
    let learn = LearnConfig::default();
    for (_, origin, _) in &world.warehouses {
        for courier in &world.couriers {
            for destination in &world.places[..3] {
                let lane = |state: &State| {
                    state
                        .learnt
                        .transit(
                            origin.pincode,
                            destination.pincode,
                            courier,
                            service.regions(),
                            &learn,
                        )
                        .map(|e| (e.deliveries, e.days.quantile(0.5), e.days.quantile(0.9)))
                };
                ensure!(lane(&resumed) == lane(&expected), "{courier} lane differs");
            }
        }
    }
    Ok(())
}
