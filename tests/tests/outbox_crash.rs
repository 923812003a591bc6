//! The transactional outbox survives SIGKILL: a child process places orders and runs the relay
//! against a shared broker and SQLite file; the parent kills it at several moments (some land
//! between a commit and its publish, some between a publish and its `sent_at` stamp) and
//! restarts it. Afterwards every committed event is in Kafka, none is missing, and none is
//! there that was never committed; re-publishes carry the same `event_id`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ingest::catalog::{self, Merchant, Product};
use ingest::domain::{CancellationPolicy, GstRates};
use ingest::orders::{OrderRules, PlaceOrder, RequestedLine, place_order};
use ingest::relay::{self, RelayConfig};
use ingest::store::{Store, StoreConfig};
use model::{Currency, CustomerId, MerchantId, Money, Pincode, ProductId, Topic, WarehouseId};
use sqlx::Row as _;

const CHILD_DIR: &str = "SHOPSTREAM_OUTBOX_CHILD_DIR";
const CHILD_BOOTSTRAP: &str = "SHOPSTREAM_OUTBOX_CHILD_BOOTSTRAP";
const CHILD_PREFIX: &str = "SHOPSTREAM_OUTBOX_CHILD_PREFIX";
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
        product_id: ProductId::new("p-1"),
        merchant_id: merchant_id(),
        category: "books".into(),
        brand: "Penguin".into(),
        title: "A Suitable Boy".into(),
        description: "Paperback.".into(),
        attributes: BTreeMap::new(),
        price: Money::inr(59_900),
    };
    catalog::upsert_product(store, &product, &WarehouseId::new("w-1"), 0).await?;
    catalog::adjust_stock(
        store,
        &merchant_id(),
        &product.product_id,
        10_000_000,
        "receipt",
        0,
    )
    .await?;
    Ok(())
}

/// The child: relay in the background, orders as fast as they commit, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by outbox_survives_sigkill as a child process"]
async fn outbox_child() -> Result<()> {
    let (Ok(dir), Ok(bootstrap), Ok(prefix)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_BOOTSTRAP),
        std::env::var(CHILD_PREFIX),
    ) else {
        bail!("outbox_child is started by outbox_survives_sigkill, which sets {CHILD_DIR}");
    };
    let store = Store::open(&StoreConfig::default(), Path::new(&dir)).await?;
    let bus = bus::Bus::connect(bus::BusConfig {
        bootstrap_servers: Some(bootstrap),
        topic_prefix: prefix,
        ..bus::BusConfig::default()
    })?;
    let relay_store = store.clone();
    let small_batches = RelayConfig {
        batch: 16,
        ..RelayConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay =
        tokio::spawn(async move { relay::run(small_batches, relay_store, &bus, shutdown).await });
    let rules = OrderRules {
        reservation_hold_ms: 60_000,
        gst: GstRates::default(),
        fx_rates: Vec::new(),
        pincodes: Arc::new(model::geo::Directory::load()),
    };
    for i in 0.. {
        if relay.is_finished() {
            bail!("relay stopped: {:?}", relay.await);
        }
        let request = PlaceOrder {
            merchant_id: merchant_id(),
            customer_id: CustomerId::new(format!("c-{i}")),
            session_id: None,
            delivery_pincode: Pincode::parse("110001").unwrap(),
            currency: Currency::INR,
            lines: vec![RequestedLine {
                product_id: ProductId::new("p-1"),
                quantity: 1,
            }],
        };
        place_order(&store, &rules, &request, None, 1_764_547_200_000 + i).await?;
    }
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
    let dir = tempfile::tempdir()?;
    let bus = testkit::bus("outbox-crash")?;
    bus.ensure_topics(&Topic::ALL).await?;
    set_up_shop(&Store::open(&StoreConfig::default(), dir.path()).await?).await?;

    let mut unsent_at_kills = Vec::new();
    let mut committed_before = 0;
    for lifetime in LIFETIMES_MS {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["outbox_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_BOOTSTRAP, bus.bootstrap_servers())
            .env(CHILD_PREFIX, &bus.config().topic_prefix)
            .stdout(Stdio::null())
            .spawn()
            .context("starting the child")?;
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        if let Some(status) = child.try_wait()? {
            bail!("the child exited by itself ({status}) instead of being killed");
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        let store = Store::open(&StoreConfig::default(), dir.path()).await?;
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
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
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

    let consumer = bus.consumer(
        "outbox-check",
        &[Topic::Orders, Topic::Inventory, Topic::Catalog],
        Arc::new(bus::NoHook),
        &[],
    )?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let reading = async {
        while !committed.iter().all(|id| seen.contains_key(id)) {
            let record = consumer.recv().await?;
            let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
            *seen.entry(envelope.event_id.to_string()).or_default() += 1;
        }
        anyhow::Ok(())
    };
    let missing = |seen: &BTreeMap<String, usize>| {
        committed
            .iter()
            .filter(|id| !seen.contains_key(*id))
            .count()
    };
    if tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .is_err()
    {
        bail!(
            "{} of {} committed events never reached Kafka",
            missing(&seen),
            committed.len()
        );
    }
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
