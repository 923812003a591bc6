//! The lakehouse end to end: generated traffic through the broker into the sink, then SQL over
//! the committed tables. Counts per table and day, the analyst views and the merchant scope are
//! checked against figures computed straight from the events.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakehouse::LakeConfig;
use lakehouse::query::{Scope, session};
use model::{Envelope, Event, Topic};
use testkit::lake::{
    day_of, events, expected_rows, int, sink_config, start_sink, text, wait_committed,
};

async fn query(context: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(context.sql(sql).await?.collect().await?)
}

/// Order ids, units, GMV and refunds of one merchant and day.
type DaySales = (BTreeSet<String>, i64, i64, i64);

/// Per merchant and day: orders, units, GMV and refunds, straight from the events.
fn daily_sales(events: &[Envelope]) -> BTreeMap<(String, String), (i64, i64, i64, i64)> {
    let mut sales: BTreeMap<(String, String), DaySales> = BTreeMap::new();
    for event in events {
        let key = (
            event.merchant_id.as_str().to_owned(),
            day_of(event.event_time),
        );
        match &event.event {
            Event::OrderPlaced(order) => {
                let entry = sales.entry(key).or_default();
                entry.0.insert(order.order_id.as_str().to_owned());
                for line in &order.lines {
                    entry.1 += i64::from(line.quantity);
                    entry.2 += line.unit_price.amount_minor * i64::from(line.quantity);
                }
            }
            Event::RefundIssued(refund) => {
                sales.entry(key).or_default().3 += refund.amount.amount_minor;
            }
            _ => {}
        }
    }
    sales
        .into_iter()
        .map(|(key, (orders, units, gmv, refunds))| {
            (key, (orders.len() as i64, units, gmv, refunds))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_commits_every_record_once_and_sql_reads_what_was_committed() -> Result<()> {
    let bus = testkit::bus("lake-sink")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let dir = tempfile::tempdir()?;
    let config = sink_config(dir.path());
    let events = events(5, 30_000)?;
    let want = expected_rows(&events);
    assert!(
        want.keys()
            .map(|(_, day)| day)
            .collect::<BTreeSet<_>>()
            .len()
            == 2,
        "the traffic should cross midnight"
    );
    let producer = bus.producer()?;
    let (first, second) = events.split_at(events.len() / 2);
    testkit::produce_all(&producer, first).await?;

    let config = LakeConfig {
        ready_max_lag: 100,
        ..config
    };
    let sink = start_sink(&config, &bus);
    // Not ready until it has read its partitions to within 100 records of their ends: the
    // first half was on the topics before it started.
    ensure!(
        sink.readiness.get().is_err(),
        "ready before reading anything"
    );
    let records_when_ready = {
        let (readiness, stats) = (sink.readiness.clone(), Arc::clone(&sink.stats));
        testkit::wait_until(Duration::from_secs(60), "the sink to be ready", move || {
            let (readiness, stats) = (readiness.clone(), Arc::clone(&stats));
            async move { Ok(readiness.get().is_ok().then(|| stats.records.get())) }
        })
        .await?
    };
    // Every source partition at most 100 records behind.
    let partitions = lakehouse::sink::source_topics().len() * bus.config().partitions as usize;
    ensure!(
        records_when_ready as usize + partitions * 100 >= first.len(),
        "ready after reading {records_when_ready} of {} records",
        first.len()
    );
    testkit::produce_all(&producer, second).await?;
    // A record that is not an event goes to the DLQ and holds nothing up.
    producer
        .send(bus::OutRecord {
            topic: Topic::Orders,
            key: b"o-broken",
            payload: b"{not json",
            headers: &[],
        })
        .await?;

    wait_committed(&config, &want, Duration::from_secs(90)).await?;

    let storage = config.storage()?;
    let context = session(&storage, SessionConfig::new(), &Scope::All).await?;

    // daily_sales equals the figures counted from the events.
    let batches = query(
        &context,
        "SELECT merchant_id, day, orders, units, gmv_minor, refunds_minor, net_minor FROM daily_sales",
    )
    .await?;
    let mut got = BTreeMap::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let text = |c: usize| text(batch.column(c), row);
            let int = |c: usize| int(batch.column(c), row);
            assert_eq!(int(6), int(4) - int(5), "net is GMV minus refunds");
            got.insert((text(0), text(1)), (int(2), int(3), int(4), int(5)));
        }
    }
    let want_sales = daily_sales(&events);
    assert!(
        want_sales.values().any(|sales| sales.3 > 0),
        "no refunds in the traffic"
    );
    assert_eq!(got, want_sales);

    // order_facts: one row per order line, with the order's state beside it.
    let facts = query(
        &context,
        "SELECT count(*) AS line_count, count(DISTINCT order_id) AS order_count, \
         sum(CASE WHEN order_status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled_lines, \
         sum(CASE WHEN payment_status = 'captured' THEN 1 ELSE 0 END) AS paid_lines \
         FROM order_facts",
    )
    .await?;
    let fact = |c: usize| int(facts[0].column(c), 0);
    let lines: u64 = want
        .iter()
        .filter(|((table, _), _)| *table == model::Table::OrderLines)
        .map(|(_, rows)| rows)
        .sum();
    assert_eq!(fact(0) as u64, lines);
    assert!(fact(2) > 0, "some lines should belong to cancelled orders");
    assert!(fact(3) > 0, "some lines should be paid");

    // Partition pruning: a filter on event_date plans a scan of that day's files only.
    let day = want.keys().map(|(_, day)| day.clone()).max().unwrap();
    let plan = query(
        &context,
        &format!("EXPLAIN SELECT count(*) FROM orders WHERE event_date = DATE '{day}'"),
    )
    .await?;
    let plan_text: String = plan
        .iter()
        .flat_map(|batch| (0..batch.num_rows()).map(move |row| text(batch.column(1), row)))
        .collect();
    assert!(
        plan_text.contains(&format!("event_date={day}")),
        "{plan_text}"
    );
    let other = want.keys().map(|(_, day)| day.clone()).min().unwrap();
    assert!(
        !plan_text.contains(&format!("event_date={other}")),
        "{plan_text}"
    );

    // A merchant-scoped session sees that merchant's rows and nobody else's.
    let merchant = events[events.len() / 2].merchant_id.as_str().to_owned();
    let scoped = session(
        &storage,
        SessionConfig::new(),
        &Scope::Merchant(merchant.clone()),
    )
    .await?;
    let counts = query(
        &scoped,
        "SELECT count(*), count(DISTINCT merchant_id), min(merchant_id) FROM orders",
    )
    .await?;
    let orders_of_merchant = events
        .iter()
        .filter(|e| e.topic() == Topic::Orders && e.merchant_id.as_str() == merchant)
        .count();
    assert_eq!(int(counts[0].column(0), 0) as usize, orders_of_merchant);
    assert_eq!(int(counts[0].column(1), 0), 1);
    assert_eq!(text(counts[0].column(2), 0), merchant);
    let sales = query(&scoped, "SELECT DISTINCT merchant_id FROM daily_sales").await?;
    assert_eq!(sales.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // The broken record went to the DLQ with the sink named as the stage.
    let dlq = bus.consumer("dlq-reader", &[Topic::Dlq], Arc::new(bus::NoHook), &[])?;
    let dead = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await??;
    assert_eq!(dead.payload.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(dead.header("stage"), Some(&b"lake-test"[..]));
    assert_eq!(sink.stats.dead_letters.get(), 1);

    sink.stop().await?;
    Ok(())
}
