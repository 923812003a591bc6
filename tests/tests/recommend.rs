//! Recommendations through the broker and the front door: planted neighbours learnt from
//! the clicks topic, new pairs visible within seconds, the cold start saying so, bad
//! parameters named in a 400, and a learner SIGKILLed at random moments ending in the same
//! state as a straight fold of the same events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use model::Topic;
use recommend::learn::{LearnConfig, Learner};
use runtime::supervisor::{self, StageList};
use serde_json::Value;
use testkit::recommend::{T0, catalog, config, planted_sessions, view};

async fn start(bus: Arc<bus::Bus>, dir: &std::path::Path) -> Result<supervisor::Running> {
    let mut list = StageList::default();
    let config = config(dir.to_owned());
    let metrics = list.metrics();
    list.add("recommend", |token| async move {
        recommend::stage(config, None, bus, &metrics, token)
    })
    .await?;
    Ok(supervisor::spawn_local(list).await?)
}

async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, Value)> {
    let response = http.get(url).send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

fn ids(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["product_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn until(
    http: &reqwest::Client,
    url: String,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    testkit::wait_until(Duration::from_secs(60), what, || {
        let (http, url) = (http.clone(), url.clone());
        let done = &done;
        async move {
            let (status, body) = get(&http, &url).await?;
            Ok((status == 200 && done(&body)).then_some(body))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_neighbours_are_learnt_from_the_broker_and_new_pairs_show_up() -> Result<()> {
    let bus = testkit::bus("recommend-e2e")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    let mut events = catalog(40);
    events.extend(planted_sessions(40, 400, 1));
    testkit::produce_all(&producer, &events).await?;
    // One record no stage can read: it must reach the DLQ with its bytes and a reason.
    let garbage = b"{\"event_type\": \"click.product_viewed\", oops";
    producer
        .send(bus::OutRecord {
            topic: Topic::Clicks,
            key: b"s-garbage",
            payload: garbage,
            headers: &[],
        })
        .await?;
    let dir = tempfile::tempdir()?;
    let running = start(Arc::clone(&bus), dir.path()).await?;
    let base = format!("http://{}/v1/recommendations", running.addr);
    let http = reqwest::Client::new();

    let answer = until(
        &http,
        format!("{base}/similar?product_id=p-10&limit=5"),
        "the planted pairs learnt",
        |a| ids(a).first().map(String::as_str) == Some("p-11"),
    )
    .await?;
    ensure!(answer["known"] == true, "{answer}");
    ensure!(answer["items"][0]["source"] == "co_visitation", "{answer}");
    // Within one shop: p-11 belongs to m-2.
    let (_, shop) = get(
        &http,
        &format!("{base}/similar?product_id=p-10&merchant_id=m-1"),
    )
    .await?;
    ensure!(
        !ids(&shop).is_empty()
            && ids(&shop)
                .iter()
                .all(|id| id[2..].parse::<usize>().is_ok_and(|n| n % 2 == 0)),
        "{shop}"
    );
    // The session endpoint, posted.
    let posted: Value = http
        .post(format!("{base}/session"))
        .json(&serde_json::json!({"items": ["p-0", "p-20"], "limit": 3}))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        ids(&posted).first().map(String::as_str) == Some("p-21"),
        "{posted}"
    );

    // Cold start says so.
    let (_, cold) = get(&http, &format!("{base}/for-you?customer_id=nobody&limit=3")).await?;
    ensure!(cold["known"] == false && ids(&cold).len() == 3, "{cold}");
    ensure!(cold["items"][0]["source"] == "trending_global", "{cold}");

    // Bad input is named.
    for (url, names) in [
        (format!("{base}/similar?product_id=p-1&limit=101"), "limit"),
        (
            format!("{base}/similar?product_id=p-1&colour=red"),
            "colour",
        ),
        (format!("{base}/similar?limit=3"), "product_id"),
        (
            format!("{base}/similar?product_id=p-1&pincode=12345"),
            "pincode",
        ),
        (format!("{base}/for-you?customer_id=a%20b"), "customer_id"),
    ] {
        let (status, body) = get(&http, &url).await?;
        ensure!(status == 400, "{url}: {status} {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        ensure!(message.contains(names), "{url}: {body}");
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("p-{i}")).collect();
    let response = http
        .post(format!("{base}/session"))
        .json(&serde_json::json!({ "items": too_many }))
        .send()
        .await?;
    ensure!(
        response.status().as_u16() == 400,
        "101 session items accepted"
    );

    // A new pair through the broker shows up in `similar`.
    let fresh: Vec<_> = (0..3)
        .flat_map(|s| {
            let session = format!("fresh-{s}");
            let at = T0 + 10_000 * 3_600_000 + s * 60_000;
            [
                view(&session, "p-38", at),
                view(&session, "p-36", at + 1_000),
            ]
        })
        .collect();
    testkit::produce_all(&producer, &fresh).await?;
    until(
        &http,
        format!("{base}/similar?product_id=p-38&limit=3"),
        "the new pair",
        |a| ids(a).iter().any(|id| id == "p-36"),
    )
    .await?;
    running.stop().await?;

    let dlq = bus.consumer("dlq-reader", &[Topic::Dlq], Arc::new(bus::NoHook), &[])?;
    let dead = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await??;
    ensure!(dead.payload.as_deref() == Some(&garbage[..]));
    ensure!(dead.header("reason") == Some(&b"malformed_json"[..]));
    ensure!(dead.header("stage") == Some(&b"recommend"[..]));
    Ok(())
}

fn neighbours_by_name(learner: &Learner) -> BTreeMap<(String, String), f32> {
    let decay = LearnConfig::default().decay();
    let mut out = BTreeMap::new();
    for n in 0..learner.ids.len() as u32 {
        let Some(from) = learner.ids.name(n) else {
            continue;
        };
        for (to, weight) in learner.viewed.neighbours(n, learner.now, decay) {
            if let Some(to) = learner.ids.name(to) {
                out.insert((from.as_str().to_owned(), to.as_str().to_owned()), weight);
            }
        }
    }
    out
}

fn checkpointed(dir: &std::path::Path) -> Result<Option<Learner>> {
    let path = dir.join("recommend-state.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let saved: Value = serde_json::from_slice(&bytes).context("reading the checkpoint")?;
    let mut learner: Learner = serde_json::from_value(saved["learner"].clone())?;
    learner.ids.reindex();
    Ok(Some(learner))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_at_random_moments_resumes_to_the_same_state() -> Result<()> {
    let bus = testkit::bus("recommend-crash")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let mut events = catalog(40);
    events.extend(planted_sessions(40, 1_200, 2));
    let expected = {
        let mut learner = Learner::default();
        for e in &events {
            learner.apply(e, &LearnConfig::default());
        }
        learner
    };
    let load = testkit::produce_steadily(Arc::clone(&bus), events, 1_000);
    let dir = tempfile::tempdir()?;
    let spawn =
        || testkit::child::command(env!("CARGO_BIN_EXE_recommend_child"), &bus, dir.path()).spawn();
    testkit::kill_at_random(5, 13, "learner", spawn).await?;
    load.await??;
    // The last run is left to finish; its checkpoint is the state it resumed to.
    let mut last = spawn()?;
    let total = expected.interactions;
    let waited = testkit::wait_until(Duration::from_secs(90), "every view learnt", || {
        let seen = checkpointed(dir.path())
            .ok()
            .flatten()
            .map(|l| l.interactions);
        async move { Ok((seen == Some(total)).then_some(())) }
    })
    .await;
    last.kill()?;
    last.wait()?;
    if waited.is_err() {
        let seen = checkpointed(dir.path())?.map(|l| (l.interactions, l.positions));
        anyhow::bail!("learnt {seen:?} of {total} views: {waited:?}");
    }
    let resumed = checkpointed(dir.path())?.context("no checkpoint")?;
    ensure!(resumed.interactions == expected.interactions);
    let (got, want) = (neighbours_by_name(&resumed), neighbours_by_name(&expected));
    ensure!(
        got.len() == want.len(),
        "{} pairs against {}",
        got.len(),
        want.len()
    );
    for (pair, weight) in &want {
        let other = got.get(pair).copied().unwrap_or_default();
        ensure!(
            (other - weight).abs() <= 1e-3 * weight.max(1.0),
            "{pair:?}: {other} against {weight}"
        );
    }
    Ok(())
}
