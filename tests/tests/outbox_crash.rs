//! The transactional outbox survives SIGKILL, on SQLite and on PostgreSQL: a child process
//! (`src/bin/outbox_child.rs`) places orders and runs the relay against a shared broker and
//! store; the parent kills it at several moments (some land
//! between a commit and its publish, some between a publish and its `sent_at` stamp) and
//! restarts it. Afterwards every committed event is in Kafka, none is missing, and none is
//! there that was never committed; re-publishes carry the same `event_id`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ingest::catalog::{self, Merchant, Product};
use ingest::domain::CancellationPolicy;
use ingest::relay;
use ingest::store::{Store, StoreConfig};
use model::payload::ProductUpserted;
use model::{MerchantId, Money, ProductId, Topic, WarehouseId};
use sqlx::Row as _;

/// Milliseconds each child lives before SIGKILL: spread so kills land at varied points.
const LIFETIMES_MS: [u64; 8] = [700, 260, 910, 430, 1_150, 330, 620, 480];

fn merchant_id() -> MerchantId {
    MerchantId::new("m-1")
}

async fn set_up_shop(store: &Store) -> Result<()> {
    let merchant = Merchant {
        merchant_id: merchant_id(),
        name: "Crash Test Store".into(),
        hyperlocal: None,
        cancellation_policy: CancellationPolicy::default(),
    };
    catalog::upsert_merchant(store, &merchant, 0).await?;
    let product = Product {
        merchant_id: merchant_id(),
        listing: ProductUpserted {
            product_id: ProductId::new("p-1"),
            category: "books".into(),
            brand: "Penguin".into(),
            title: "A Suitable Boy".into(),
            description: "Paperback.".into(),
            attributes: BTreeMap::new(),
            price: Money::inr(59_900),
        },
    };
    catalog::upsert_product(store, &product, &WarehouseId::new("w-1"), 0).await?;
    catalog::adjust_stock(
        store,
        &merchant_id(),
        &product.listing.product_id,
        10_000_000,
        "receipt",
        0,
    )
    .await?;
    Ok(())
}

async fn unsent_and_committed(store: &Store) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT COUNT(*) - COUNT(sent_at), COUNT(*) FROM outbox")
        .fetch_one(store.pool())
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_sigkill() -> Result<()> {
    survives_sigkill("outbox-crash", StoreConfig::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_sigkill_on_postgres() -> Result<()> {
    let config = StoreConfig {
        url: Some(testkit::postgres::database("outbox-crash-pg").await?),
        ..StoreConfig::default()
    };
    survives_sigkill("outbox-crash-pg", config).await
}

async fn survives_sigkill(test: &str, config: StoreConfig) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bus = testkit::bus(test)?;
    bus.ensure_topics(&Topic::ALL).await?;
    let open = || Store::open(&config, dir.path());
    set_up_shop(&open().await?).await?;

    let mut unsent_at_kills = Vec::new();
    let mut committed_before = 0;
    for lifetime in LIFETIMES_MS {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbox_child"));
        command
            .arg(dir.path())
            .arg(bus.bootstrap_servers())
            .arg(&bus.config().topic_prefix);
        if let Some(url) = &config.url {
            command.arg(url);
        }
        let mut child = command
            .stdout(Stdio::null())
            .spawn()
            .context("starting the child")?;
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        if let Some(status) = child.try_wait()? {
            bail!("the child exited by itself ({status}) instead of being killed");
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        let store = open().await?;
        let (unsent, committed) = unsent_and_committed(&store).await?;
        ensure!(
            committed > committed_before,
            "a child committed nothing in {lifetime} ms"
        );
        committed_before = committed;
        unsent_at_kills.push(unsent);
    }
    ensure!(
        unsent_at_kills.iter().any(|&n| n > 0),
        "no kill landed between a commit and its publish: {unsent_at_kills:?}"
    );

    // Restart once more and let the relay drain what the last child left.
    let store = open().await?;
    let producer = bus.producer()?;
    while relay::publish_batch(&store, &producer, 500).await? > 0 {}
    ensure!(relay::unsent(&store).await? == 0);

    let committed: BTreeSet<String> = sqlx::query("SELECT event_id FROM outbox")
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let orders: i64 = sqlx::query("SELECT COUNT(*) FROM orders")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;

    let seen = testkit::event_ids_on(
        &bus,
        "outbox-check",
        &[Topic::Orders, Topic::Inventory, Topic::Catalog],
        &committed,
        Duration::from_secs(60),
    )
    .await?;
    let strangers: Vec<&String> = seen.keys().filter(|id| !committed.contains(*id)).collect();
    ensure!(
        strangers.is_empty(),
        "events in Kafka that were never committed: {strangers:?}"
    );
    let republished: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "{} kills, {orders} orders, {} events committed, all in Kafka; unsent at each kill {unsent_at_kills:?}; {republished} re-published with the same event_id",
        LIFETIMES_MS.len(),
        committed.len()
    );
    Ok(())
}
