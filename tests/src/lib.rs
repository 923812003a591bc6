//! The test harness (`testkit`): each test gets its own broker connection, its own uniquely
//! named topics, services started in-process on port 0, and waits on conditions with a
//! deadline instead of sleeping.
//!
//! Broker selection: the embedded broker by default; `SHOPSTREAM_TEST_BOOTSTRAP=host:port`
//! points every test at an external Kafka-API broker instead. `SHOPSTREAM_TEST_BROKER_LACKS`
//! lists capabilities that broker is known to lack (see [`Capability`]); checks of those still
//! run and report, but do not fail the suite. `SHOPSTREAM_TEST_CLIENT_PROPERTIES=k=v,k=v`
//! passes librdkafka properties to every client (SASL/TLS settings of a real cluster).
//! Consumer-group ids carry the topic prefix too, so tests sharing an external broker never
//! join each other's groups.

pub mod api;
pub mod child;
pub mod core;
pub mod demo;
pub mod lake;
pub mod postgres;
pub mod recommend;
pub mod tools;
pub mod trending;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bus::{Bus, BusConfig};

/// A broker feature some Kafka-API implementations lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// The high watermark is the last offset + 1.
    HighWatermark,
    /// ListOffsets by timestamp finds the first record at or after it.
    OffsetsForTimes,
    /// Transactions, with aborted records hidden from read_committed consumers.
    Transactions,
    /// A member joining and leaving under `cooperative-sticky` assignment loses no partition.
    CooperativeRebalance,
    /// CreatePartitions grows a topic and the new partition takes records.
    CreatePartitions,
    /// Records compressed with this codec (`none`, `gzip`, `snappy`, `lz4`, `zstd`) round-trip.
    Codec(&'static str),
}

/// Gaps of the embedded broker, seen on this machine. `cooperative_rebalance`: noida-db 0.2.3
/// parks each JoinGroup in a loop that polls the group every 20 ms and answers only while the
/// group is CompletingRebalance or Stable. Under `cooperative-sticky` the leader syncs, revokes
/// the partition it must give up and re-joins within one poll interval (librdkafka debug log:
/// SyncGroup, COOPASSIGN 1 revoked, REJOIN within ~2 ms), so the joining member never sees
/// those states; its JoinGroup stays parked in the next round until the 300 s rebalance
/// timeout, and the revoked partition has no owner meanwhile (100 of 300 records unread).
/// A raw rdkafka consumer with the default rebalance callback shows the same, so it is not our
/// bus. Eager assignment, the bus default, has no second re-join and loses nothing.
const EMBEDDED_KNOWN_GAPS: &[Capability] = &[Capability::CooperativeRebalance];

impl Capability {
    pub fn name(self) -> String {
        match self {
            Capability::HighWatermark => "high_watermark".into(),
            Capability::OffsetsForTimes => "offsets_for_times".into(),
            Capability::Transactions => "transactions".into(),
            Capability::CooperativeRebalance => "cooperative_rebalance".into(),
            Capability::CreatePartitions => "create_partitions".into(),
            Capability::Codec(codec) => format!("codec_{codec}"),
        }
    }
}

/// Whether the broker under test is declared to lack `capability`.
pub fn broker_lacks(capability: Capability) -> bool {
    match std::env::var("SHOPSTREAM_TEST_BROKER_LACKS") {
        Ok(list) => list.split(',').any(|c| c.trim() == capability.name()),
        Err(_) if external_broker().is_none() => EMBEDDED_KNOWN_GAPS.contains(&capability),
        Err(_) => false,
    }
}

fn external_broker() -> Option<String> {
    std::env::var("SHOPSTREAM_TEST_BOOTSTRAP")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Runs a conformance check. If the broker is declared to lack the capability, the outcome is
/// printed and the check does not fail the suite; otherwise its error fails the test.
pub async fn check_capability<F: Future<Output = Result<()>>>(
    capability: Capability,
    check: F,
) -> Result<()> {
    let outcome = check.await;
    if broker_lacks(capability) {
        match &outcome {
            Ok(()) => eprintln!(
                "capability {} declared missing but the check PASSED: drop it from SHOPSTREAM_TEST_BROKER_LACKS",
                capability.name()
            ),
            Err(error) => eprintln!(
                "capability {} declared missing; check failed as known: {error:#}",
                capability.name()
            ),
        }
        return Ok(());
    }
    outcome
}

/// A prefix no other test (or earlier run against the same external broker) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "t-{test}-{}-{}-{nanos}.",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// librdkafka properties for every client of the broker under test, from
/// `SHOPSTREAM_TEST_CLIENT_PROPERTIES` (`key=value` pairs separated by commas).
pub fn client_properties() -> Result<Vec<(String, String)>> {
    let Ok(list) = std::env::var("SHOPSTREAM_TEST_CLIENT_PROPERTIES") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok((key.trim().to_owned(), value.trim().to_owned())),
            None => bail!("SHOPSTREAM_TEST_CLIENT_PROPERTIES: `{pair}` is not key=value"),
        })
        .collect()
}

/// Bus settings for one test: the external broker if one is given, else a fresh embedded
/// broker on a free port; topics carry a unique prefix either way.
pub fn bus_config(test: &str) -> Result<BusConfig> {
    Ok(BusConfig {
        bootstrap_servers: external_broker(),
        embedded_listen: "127.0.0.1:0".into(),
        topic_prefix: unique_prefix(test),
        properties: client_properties()?.into_iter().collect(),
        ..BusConfig::default()
    })
}

/// A connected bus for one test.
pub fn bus(test: &str) -> Result<Arc<Bus>> {
    Ok(Arc::new(Bus::connect(bus_config(test)?)?))
}

/// Produces `events` with many in flight at once and waits for every acknowledgement.
pub async fn produce_all(producer: &bus::Producer, events: &[model::Envelope]) -> Result<()> {
    use futures::StreamExt;
    let mut pending = futures::stream::FuturesUnordered::new();
    let encoded: Vec<Vec<u8>> = events.iter().map(model::codec::encode).collect();
    for (envelope, payload) in events.iter().zip(&encoded) {
        let record = bus::OutRecord {
            topic: envelope.topic(),
            key: envelope.key().as_bytes(),
            payload,
            headers: &[],
        };
        pending.push(producer.enqueue(record)?);
    }
    while let Some(delivered) = pending.next().await {
        delivered?;
    }
    Ok(())
}

/// Produces `events` in order at about `per_second`, acknowledged one slice at a time, on a
/// task of its own: steady load for the crash tests.
pub fn produce_steadily(
    bus: Arc<Bus>,
    events: Vec<model::Envelope>,
    per_second: usize,
) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let producer = bus.producer()?;
        let slice = (per_second / 20).max(1);
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for chunk in events.chunks(slice) {
            pace.tick().await;
            produce_all(&producer, chunk).await?;
        }
        Ok(())
    })
}

/// Starts a child process with `spawn` `kills` times and SIGKILLs each at a random moment
/// 0.3-1.5 s later (seeded); fails if one exits by itself. `what` names it in that error.
pub async fn kill_at_random(
    kills: usize,
    seed: u64,
    what: &str,
    mut spawn: impl FnMut() -> std::io::Result<std::process::Child>,
) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..kills {
        let mut child = spawn()?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        if let Some(status) = child.try_wait()? {
            bail!("the {what} exited by itself ({status}) instead of being killed");
        }
        child.kill()?; // SIGKILL
        child.wait()?;
    }
    Ok(())
}

/// Polls `probe` until it returns `Some`, failing after `deadline` with the last value seen
/// described by `describe`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if start.elapsed() > deadline {
            match last_error {
                Some(error) => {
                    bail!("timed out after {deadline:?} waiting for {what}; last error: {error:#}")
                }
                None => bail!("timed out after {deadline:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The UCI Online Retail week: the shared data set when this checkout sits beside it, else the
/// copy shipped in `ingest/data/` (the two hold the same rows).
pub fn online_retail_csv() -> std::path::PathBuf {
    const FILE: &str = "online_retail/online_retail_2010-12-01_to_2010-12-07.csv";
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = workspace.join("../shared/data").join(FILE);
    if shared.is_file() {
        shared
    } else {
        workspace.join("ingest/data").join(FILE)
    }
}

/// The first event on `topics` (read from the beginning as `group`, strictly decoded, as every
/// consumer decodes) that `pick` keeps; an error naming `what` when none does within `within`.
pub async fn first_event<T>(
    bus: &Bus,
    group: &str,
    topics: &[model::Topic],
    within: Duration,
    what: &str,
    pick: impl Fn(model::Event) -> Option<T>,
) -> Result<T> {
    let consumer = bus.consumer(group, topics, Arc::new(bus::NoHook), &[])?;
    let found = tokio::time::timeout(within, async {
        loop {
            let record = consumer.recv().await?;
            let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
            if let Some(found) = pick(envelope.event) {
                return anyhow::Ok(found);
            }
        }
    })
    .await;
    match found {
        Ok(found) => found,
        Err(_) => bail!("{what} did not arrive within {within:?}"),
    }
}

/// How often each event id arrived on `topics` (read from the beginning as `group`), read until
/// every id in `wanted` has arrived. An error says how many never did within `deadline`.
pub async fn event_ids_on(
    bus: &Bus,
    group: &str,
    topics: &[model::Topic],
    wanted: &std::collections::BTreeSet<String>,
    deadline: Duration,
) -> Result<std::collections::BTreeMap<String, usize>> {
    let consumer = bus.consumer(group, topics, Arc::new(bus::NoHook), &[])?;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let reading = async {
        while !wanted.iter().all(|id| seen.contains_key(id)) {
            let record = consumer.recv().await?;
            let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
            *seen.entry(envelope.event_id.to_string()).or_default() += 1;
        }
        anyhow::Ok(())
    };
    if tokio::time::timeout(deadline, reading).await.is_err() {
        let missing: Vec<&String> = wanted.iter().filter(|id| !seen.contains_key(*id)).collect();
        bail!(
            "{} of {} committed events never reached Kafka, e.g. {:?}",
            missing.len(),
            wanted.len(),
            &missing[..missing.len().min(3)]
        );
    }
    Ok(seen)
}
