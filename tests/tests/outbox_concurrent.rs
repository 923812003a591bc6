//! The relay under concurrent writers on PostgreSQL. There an outbox row's `seq` is taken at
//! insert, not at commit: a transaction holding seq 100 can commit while the relay publishes
//! 99 and 101. Every committed event must still reach its topic exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use ingest::relay::{self, RelayConfig};
use ingest::store::Store;
use model::payload::ProductViewed;
use model::{Event, MerchantId, ProductId, SessionId, Topic};
use sqlx::Row as _;
use testkit::core::NOW;

const WRITERS: usize = 64;
const EVENTS_EACH: usize = 20;

/// Every event id in the outbox is on the clicks topic exactly once.
async fn each_committed_event_once(store: &Store, bus: &bus::Bus, group: &str) -> Result<()> {
    let committed = committed_event_ids(store).await?;
    let seen = testkit::event_ids_on(
        bus,
        group,
        &[Topic::Clicks],
        &committed,
        Duration::from_secs(30),
    )
    .await?;
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "published more than once: {twice:?}");
    Ok(())
}

async fn committed_event_ids(store: &Store) -> Result<BTreeSet<String>> {
    Ok(sqlx::query("SELECT event_id FROM outbox")
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_committed_by_64_writers_on_postgres_is_published_once() -> Result<()> {
    let db = testkit::core::postgres("outbox-concurrent").await?;
    let store = db.store.clone();
    let bus = testkit::bus("outbox-concurrent")?;
    bus.ensure_topics(&Topic::ALL).await?;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn({
        let (store, bus, shutdown) = (store.clone(), Arc::clone(&bus), shutdown.clone());
        let config = RelayConfig {
            batch: 16,
            idle_poll_ms: 1,
            ..RelayConfig::default()
        };
        async move {
            relay::run(
                config,
                store,
                &bus,
                relay::RelayMetrics::new(&runtime::metrics::Registry::default()),
                shutdown,
            )
            .await
        }
    });
    // Each writer numbers its outbox row, then takes a while to commit (as a transaction
    // waiting on a lock or a slow client does), so rows commit out of `seq` order.
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            for n in 0..EVENTS_EACH {
                let mut tx = store.write().await?;
                let event = Event::ProductViewed(ProductViewed {
                    session_id: SessionId::new(format!("s-{writer}-{n}")),
                    customer_id: None,
                    product_id: ProductId::new(format!("p-{writer}")),
                });
                ingest::outbox::append(&mut tx, &MerchantId::new("m-1"), NOW, event).await?;
                tokio::time::sleep(Duration::from_millis(((writer * 7 + n * 13) % 20) as u64))
                    .await;
                tx.commit().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    testkit::wait_until(Duration::from_secs(60), "the relay to drain", || {
        let store = &store;
        async move { Ok((relay::unsent(store).await? == 0).then_some(())) }
    })
    .await?;
    shutdown.cancel();
    relay.await??;

    each_committed_event_once(&store, &bus, "outbox-concurrent-check").await?;
    let committed = committed_event_ids(&store).await?;
    ensure!(
        committed.len() == WRITERS * EVENTS_EACH,
        "{} events committed",
        committed.len()
    );
    Ok(())
}

async fn append_view(tx: &mut sqlx::Transaction<'static, sqlx::Any>, n: usize) -> Result<()> {
    let event = Event::ProductViewed(ProductViewed {
        session_id: SessionId::new(format!("s-{n}")),
        customer_id: None,
        product_id: ProductId::new("p-1"),
    });
    ingest::outbox::append(tx, &MerchantId::new("m-1"), NOW, event).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_while_its_neighbours_are_published_is_not_stamped_unsent() -> Result<()> {
    let db = testkit::core::postgres("outbox-gap").await?;
    let store = db.store.clone();
    let bus = testkit::bus("outbox-gap")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    let mut published = 0;
    let mut stamped_unpublished = Vec::new();
    let mut n = 0;
    // Each round: a committed row, then a transaction that holds the next number, then a
    // committed row after it; a relay round starts, and the middle transaction commits a
    // moment later, sometimes between the relay's read and its stamp.
    for round in 0..300u64 {
        for _ in 0..2 {
            let mut before = store.write().await?;
            append_view(&mut before, n).await?;
            before.commit().await?;
            n += 1;
        }
        let mut middle = store.write().await?;
        append_view(&mut middle, n).await?;
        n += 1;
        let mut after = store.write().await?;
        append_view(&mut after, n).await?;
        after.commit().await?;
        n += 1;
        let relay_round = tokio::spawn({
            let (store, producer) = (store.clone(), producer.clone());
            async move { relay::publish_batch(&store, &producer, 16).await }
        });
        tokio::time::sleep(Duration::from_micros(100 * (round % 40))).await;
        middle.commit().await?;
        let this_round = relay_round.await??;
        published += this_round;
        let stamped: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
            .fetch_one(store.pool())
            .await?
            .try_get(0)?;
        if stamped as usize != published {
            stamped_unpublished.push((round, stamped as usize - published));
            published = stamped as usize;
        }
    }
    while relay::publish_batch(&store, &producer, 16).await? > 0 {}
    ensure!(
        stamped_unpublished.is_empty(),
        "{} of 300 rounds stamped rows sent that the relay never published, e.g. (round, rows) {:?}",
        stamped_unpublished.len(),
        &stamped_unpublished[..stamped_unpublished.len().min(5)]
    );
    each_committed_event_once(&store, &bus, "outbox-gap-check").await
}
