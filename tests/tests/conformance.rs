//! Kafka-protocol conformance checks of the broker under test (the embedded one unless
//! `SHOPSTREAM_TEST_BOOTSTRAP` names another), through librdkafka. These use rdkafka directly
//! on purpose: they test the broker, not our bus, and include features (transactions) our
//! design must not rely on. Rebalance checks go through `bus::Consumer` so they also prove our
//! commit-on-revoke path.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first surprise; that is the point.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::{Capability, check_capability};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Broker {
    bootstrap: String,
    prefix: String,
    /// Keeps the embedded broker alive for the test.
    _bus: Arc<bus::Bus>,
}

fn broker(test: &str) -> Result<Broker> {
    let bus = testkit::bus(test)?;
    Ok(Broker {
        bootstrap: bus.bootstrap_servers().to_owned(),
        prefix: bus.config().topic_prefix.clone(),
        _bus: bus,
    })
}

impl Broker {
    fn config(&self, pairs: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in testkit::client_properties().unwrap() {
            config.set(k, v);
        }
        for (k, v) in pairs {
            config.set(*k, *v);
        }
        config
    }

    async fn topic(&self, name: &str, partitions: i32) -> Result<String> {
        let name = format!("{}{name}", self.prefix);
        let admin: AdminClient<DefaultClientContext> = self.config(&[]).create()?;
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        for result in results {
            result.map_err(|(topic, code)| anyhow::anyhow!("create {topic}: {code}"))?;
        }
        Ok(name)
    }

    fn producer(&self, pairs: &[(&str, &str)]) -> Result<FutureProducer> {
        Ok(self
            .config(&[&[("linger.ms", "1")], pairs].concat())
            .create()?)
    }

    fn consumer(&self, group: &str, pairs: &[(&str, &str)]) -> Result<StreamConsumer> {
        let group = format!("{}{group}", self.prefix);
        let defaults = [
            ("group.id", group.as_str()),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ];
        Ok(self.config(&[&defaults[..], pairs].concat()).create()?)
    }
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: &str,
) -> Result<(i32, i64)> {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let delivery = producer.send(record, TIMEOUT).await.map_err(|(e, _)| e)?;
    Ok((delivery.partition, delivery.offset))
}

/// Reads `count` records as (partition, offset, key, payload).
async fn read(consumer: &StreamConsumer, count: usize) -> Result<Vec<(i32, i64, String, String)>> {
    let mut out = Vec::new();
    while out.len() < count {
        let m = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .context("no record within 30 s")??;
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.push((m.partition(), m.offset(), text(m.key()), text(m.payload())));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_order_is_kept() -> Result<()> {
    let b = broker("order")?;
    let topic = b.topic("order", 3).await?;
    let producer = b.producer(&[("enable.idempotence", "true")])?;
    for i in 0..300 {
        produce(
            &producer,
            &topic,
            None,
            &format!("k{}", i % 7),
            &i.to_string(),
        )
        .await?;
    }
    let consumer = b.consumer("order", &[])?;
    consumer.subscribe(&[&topic])?;
    let records = read(&consumer, 300).await?;
    for key in 0..7 {
        let seen: Vec<i64> = records
            .iter()
            .filter(|r| r.2 == format!("k{key}"))
            .map(|r| r.3.parse().unwrap())
            .collect();
        ensure!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "key k{key} out of order: {seen:?}"
        );
    }
    Ok(())
}

async fn codec_round_trip(codec: &'static str) -> Result<()> {
    check_capability(Capability::Codec(codec), codec_check(codec)).await
}

async fn codec_check(codec: &str) -> Result<()> {
    let b = broker(codec)?;
    let topic = b.topic("codec", 1).await?;
    let producer = b.producer(&[("compression.type", codec), ("linger.ms", "20")])?;
    let payload = "shopstream ".repeat(50);
    let bodies: Vec<String> = (0..200).map(|i| format!("{i}:{payload}")).collect();
    let sends: Vec<_> = bodies
        .iter()
        .map(|body| producer.send(FutureRecord::to(&topic).key("k").payload(body), TIMEOUT))
        .collect();
    for send in sends {
        send.await.map_err(|(e, _)| e)?;
    }
    let consumer = b.consumer("codec", &[])?;
    consumer.subscribe(&[&topic])?;
    let records = read(&consumer, 200).await?;
    for (i, record) in records.iter().enumerate() {
        ensure!(
            record.3 == format!("{i}:{payload}"),
            "{codec}: record {i} differs"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_none() -> Result<()> {
    codec_round_trip("none").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_gzip() -> Result<()> {
    codec_round_trip("gzip").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_snappy() -> Result<()> {
    codec_round_trip("snappy").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_lz4() -> Result<()> {
    codec_round_trip("lz4").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_zstd() -> Result<()> {
    codec_round_trip("zstd").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once() -> Result<()> {
    let b = broker("idempotent")?;
    let topic = b.topic("idem", 1).await?;
    let producer = b.producer(&[("enable.idempotence", "true"), ("acks", "all")])?;
    let bodies: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let sends: Vec<_> = bodies
        .iter()
        .map(|body| producer.send(FutureRecord::to(&topic).key("k").payload(body), TIMEOUT))
        .collect();
    let mut offsets = Vec::new();
    for send in sends {
        offsets.push(send.await.map_err(|(e, _)| e)?.offset);
    }
    ensure!(
        offsets == (0..1000).collect::<Vec<i64>>(),
        "offsets are not 0..1000 in send order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_resume_the_group() -> Result<()> {
    let b = broker("resume")?;
    let topic = b.topic("resume", 1).await?;
    let producer = b.producer(&[])?;
    for i in 0..100 {
        produce(&producer, &topic, Some(0), "k", &i.to_string()).await?;
    }
    {
        let consumer = b.consumer("resume", &[])?;
        consumer.subscribe(&[&topic])?;
        let first = read(&consumer, 50).await?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Offset(first[49].1 + 1))?;
        consumer.commit(&list, CommitMode::Sync)?;
        consumer.unsubscribe();
    }
    let consumer = b.consumer("resume", &[])?;
    consumer.subscribe(&[&topic])?;
    let next = read(&consumer, 1).await?;
    ensure!(
        next[0].3 == "50",
        "resumed at {:?}, expected record 50",
        next[0]
    );
    Ok(())
}

/// A second member joins mid-stream and later leaves; with offsets stored as records are
/// applied and committed on revocation, every record is seen at least once.
async fn rebalance_without_loss(strategy: &str) -> Result<()> {
    let bus = testkit::bus(&format!("rebalance-{strategy}"))?;
    bus.ensure_topics(&[model::Topic::Clicks]).await?;
    let producer = bus.producer()?;
    let send_batch = |from: usize, to: usize| {
        let producer = producer.clone();
        async move {
            for i in from..to {
                let key = format!("s-{}", i % 13);
                let payload = i.to_string();
                producer
                    .send(bus::OutRecord {
                        topic: model::Topic::Clicks,
                        key: key.as_bytes(),
                        payload: payload.as_bytes(),
                        headers: &[],
                    })
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    let props = [("partition.assignment.strategy", strategy)];
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let member = || -> Result<(tokio::task::JoinHandle<Result<()>>, tokio_util::sync::CancellationToken)> {
        let consumer = bus.consumer("rebalance", &[model::Topic::Clicks], Arc::new(bus::NoHook), &props)?;
        let stop = tokio_util::sync::CancellationToken::new();
        let (seen, stop2) = (Arc::clone(&seen), stop.clone());
        let handle = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop2.cancelled() => break,
                    record = consumer.recv() => {
                        let record = record?;
                        let value: usize = String::from_utf8_lossy(record.payload.as_deref().unwrap_or_default()).parse()?;
                        seen.lock().unwrap().insert(value);
                        let _ = consumer.store(&record);
                    }
                }
            }
            consumer.close().await?;
            Ok(())
        });
        Ok((handle, stop))
    };
    let (a, stop_a) = member()?;
    send_batch(0, 300).await?;
    let (b, stop_b) = member()?;
    send_batch(300, 600).await?;
    wait_for(&seen, 600).await?;
    stop_b.cancel();
    b.await??;
    send_batch(600, 900).await?;
    wait_for(&seen, 900).await?;
    stop_a.cancel();
    a.await??;
    Ok(())
}

async fn wait_for(seen: &std::sync::Mutex<BTreeSet<usize>>, count: usize) -> Result<()> {
    testkit::wait_until(
        // Generous: some brokers (tansu) take ~25 s for a group's first join.
        Duration::from_secs(60),
        &format!("all {count} records consumed"),
        || async {
            let seen = seen.lock().unwrap();
            let missing: Vec<usize> = (0..count).filter(|i| !seen.contains(i)).collect();
            ensure!(
                missing.is_empty(),
                "{} missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            Ok(Some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_rebalance_loses_nothing() -> Result<()> {
    rebalance_without_loss("range").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalance_loses_nothing() -> Result<()> {
    check_capability(
        Capability::CooperativeRebalance,
        rebalance_without_loss("cooperative-sticky"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_watermark_is_last_offset_plus_one() -> Result<()> {
    check_capability(Capability::HighWatermark, async {
        let b = broker("watermark")?;
        let topic = b.topic("hw", 1).await?;
        let producer = b.producer(&[])?;
        let mut last = -1;
        for i in 0..10 {
            last = produce(&producer, &topic, Some(0), "k", &i.to_string())
                .await?
                .1;
        }
        let consumer: BaseConsumer = b
            .config(&[("group.id", &format!("{}hw", b.prefix))])
            .create()?;
        let (low, high) = consumer.fetch_watermarks(&topic, 0, TIMEOUT)?;
        ensure!(
            (low, high) == (0, last + 1),
            "watermarks ({low}, {high}), last offset {last}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_record_at_or_after() -> Result<()> {
    check_capability(Capability::OffsetsForTimes, async {
        let b = broker("times")?;
        let topic = b.topic("times", 1).await?;
        let producer = b.producer(&[])?;
        let t0 = 1_764_547_200_000i64;
        for i in 0..5 {
            let record = FutureRecord::to(&topic)
                .key("k")
                .payload("x")
                .partition(0)
                .timestamp(t0 + i * 1000);
            producer.send(record, TIMEOUT).await.map_err(|(e, _)| e)?;
        }
        let consumer: BaseConsumer = b
            .config(&[("group.id", &format!("{}times", b.prefix))])
            .create()?;
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(&topic, 0, Offset::Offset(t0 + 2500))?;
        let found = consumer.offsets_for_times(query, TIMEOUT)?;
        let offset = found.find_partition(&topic, 0).map(|e| e.offset());
        ensure!(
            offset == Some(Offset::Offset(3)),
            "offset for t0+2.5 s was {offset:?}, expected 3"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_latest_skips_what_came_before() -> Result<()> {
    let b = broker("latest")?;
    let topic = b.topic("latest", 1).await?;
    let producer = b.producer(&[])?;
    for i in 0..5 {
        produce(&producer, &topic, Some(0), "k", &format!("old{i}")).await?;
    }
    let consumer = b.consumer("latest", &[("auto.offset.reset", "latest")])?;
    consumer.subscribe(&[&topic])?;
    // The consumer's start position is fixed when it joins, which we cannot observe directly;
    // so keep producing numbered records until it reads one. It must never see an old record,
    // and from the first new one on it must see every later one in order.
    let mut sent = 0;
    let first = loop {
        produce(&producer, &topic, Some(0), "k", &format!("new{sent}")).await?;
        sent += 1;
        ensure!(sent < 300, "the consumer read nothing in 300 attempts");
        if let Ok(record) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
        {
            let record = record?;
            break String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        }
    };
    ensure!(
        first.starts_with("new"),
        "reset=latest read an old record: {first}"
    );
    let first_index: usize = first["new".len()..].parse()?;
    let rest = read(&consumer, sent - first_index - 1).await?;
    let expected: Vec<String> = (first_index + 1..sent).map(|i| format!("new{i}")).collect();
    let got: Vec<String> = rest.into_iter().map(|r| r.3).collect();
    ensure!(got == expected, "after {first}: read {got:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hide_aborted_records() -> Result<()> {
    check_capability(Capability::Transactions, async {
        let b = broker("txn")?;
        let topic = b.topic("txn", 1).await?;
        let producer: FutureProducer = b
            .config(&[("transactional.id", &format!("{}txn", b.prefix))])
            .create()?;
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
        for i in 0..5 {
            produce(&producer, &topic, Some(0), "k", &format!("kept{i}")).await?;
        }
        producer.commit_transaction(TIMEOUT)?;
        producer.begin_transaction()?;
        for i in 0..5 {
            produce(&producer, &topic, Some(0), "k", &format!("aborted{i}")).await?;
        }
        producer.abort_transaction(TIMEOUT)?;
        producer.begin_transaction()?;
        produce(&producer, &topic, Some(0), "k", "last").await?;
        producer.commit_transaction(TIMEOUT)?;
        let consumer = b.consumer("txn", &[("isolation.level", "read_committed")])?;
        consumer.subscribe(&[&topic])?;
        let records = read(&consumer, 6).await?;
        let payloads: Vec<&str> = records.iter().map(|r| r.3.as_str()).collect();
        ensure!(
            payloads == ["kept0", "kept1", "kept2", "kept3", "kept4", "last"],
            "read {payloads:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_a_topic() -> Result<()> {
    check_capability(Capability::CreatePartitions, async {
        let b = broker("partitions")?;
        let topic = b.topic("grow", 1).await?;
        let admin: AdminClient<DefaultClientContext> = b.config(&[]).create()?;
        for result in admin
            .create_partitions(&[NewPartitions::new(&topic, 3)], &AdminOptions::new())
            .await?
        {
            result.map_err(|(t, code)| anyhow::anyhow!("{t}: {code}"))?;
        }
        let producer = b.producer(&[])?;
        let metadata = testkit::wait_until(TIMEOUT, "3 partitions in metadata", || async {
            let metadata = producer.client().fetch_metadata(Some(&topic), TIMEOUT)?;
            let count = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            Ok((count == 3).then_some(count))
        })
        .await?;
        ensure!(metadata == 3);
        let (partition, offset) =
            produce(&producer, &topic, Some(2), "k", "on the new partition").await?;
        ensure!(
            (partition, offset) == (2, 0),
            "landed at {partition}:{offset}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_survive_the_round_trip() -> Result<()> {
    let b = broker("headers")?;
    let topic = b.topic("headers", 1).await?;
    let producer = b.producer(&[])?;
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "reason",
            value: Some("late"),
        })
        .insert(Header {
            key: "source.offset",
            value: Some("42"),
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload("p")
                .headers(headers),
            TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e)?;
    let consumer = b.consumer("headers", &[])?;
    consumer.subscribe(&[&topic])?;
    let message = tokio::time::timeout(TIMEOUT, consumer.recv()).await??;
    let got: Vec<(String, Vec<u8>)> = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        got == vec![
            ("reason".into(), b"late".to_vec()),
            ("source.offset".into(), b"42".to_vec())
        ],
        "{got:?}"
    );
    Ok(())
}
