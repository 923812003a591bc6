//! The orders core's storage on both databases: SQLite (a file in a temp dir) and PostgreSQL
//! (from the harness). Every check runs on each.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use anyhow::{Result, ensure};
use ingest::orders::{Idempotency, OrderError, place_order};
use ingest::store::{Store, StoreConfig};
use model::Money;
use testkit::core::{Db, NOW, count, order, rules, shop, stock_of};

async fn last_ten_units_go_to_exactly_ten_of_64_buyers(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, false, 10).await?;
    let rules = Arc::new(rules());
    let buyers: Vec<_> = (0..64)
        .map(|i| {
            let (store, rules) = (store.clone(), Arc::clone(&rules));
            tokio::spawn(async move {
                let request = order(&format!("c-{i}"), &[("p-1", 1)], "560001");
                place_order(&store, &rules, &request, None, NOW).await
            })
        })
        .collect();
    let (mut placed, mut sold_out) = (0, 0);
    for buyer in buyers {
        match buyer.await? {
            Ok(_) => placed += 1,
            Err(OrderError::OutOfStock { .. }) => sold_out += 1,
            Err(other) => anyhow::bail!("unexpected error: {other}"),
        }
    }
    ensure!(
        (placed, sold_out) == (10, 54),
        "{placed} placed, {sold_out} sold out"
    );
    ensure!(stock_of(&store, "p-1").await? == (10, 10));
    let placed_events = count(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%\"order.placed\"%'",
    )
    .await?;
    ensure!(
        placed_events == 10,
        "{placed_events} order.placed events in the outbox"
    );
    Ok(())
}

async fn a_failed_line_reserves_nothing(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, false, 5).await?;
    let error = place_order(
        &store,
        &rules(),
        &order("c-1", &[("p-1", 2), ("p-2", 3)], "560001"),
        None,
        NOW,
    )
    .await
    .unwrap_err();
    ensure!(error.code().as_str() == "out_of_stock", "{error}");
    ensure!(
        stock_of(&store, "p-1").await? == (5, 0),
        "line 0's reservation survived"
    );
    ensure!(count(&store, "SELECT COUNT(*) FROM orders").await? == 0);
    ensure!(
        count(
            &store,
            "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%order.placed%'"
        )
        .await?
            == 0
    );
    Ok(())
}

async fn idempotency_key_replays_the_answer_and_refuses_another_body(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, false, 5).await?;
    let key = |hash: &str| Idempotency {
        scope: "api-key-1".into(),
        key: "k-1".into(),
        request_hash: hash.into(),
    };
    let request = order("c-1", &[("p-1", 1)], "560001");
    let first = place_order(&store, &rules(), &request, Some(&key("h-a")), NOW).await?;
    let again = place_order(&store, &rules(), &request, Some(&key("h-a")), NOW + 5).await?;
    ensure!(first == again, "a replay gave another answer");
    ensure!(count(&store, "SELECT COUNT(*) FROM orders").await? == 1);
    ensure!(stock_of(&store, "p-1").await? == (5, 1));
    let other = order("c-1", &[("p-1", 2)], "560001");
    let error = place_order(&store, &rules(), &other, Some(&key("h-b")), NOW)
        .await
        .unwrap_err();
    ensure!(error.code().as_str() == "idempotency_conflict", "{error}");
    Ok(())
}

/// Sixteen first uses of one key at once (a client retrying before its first try answered):
/// one order, and every caller gets its answer.
async fn racing_first_uses_of_one_key_place_one_order(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, false, 50).await?;
    let key = Idempotency {
        scope: "api-key-1".into(),
        key: "k-race".into(),
        request_hash: "h-a".into(),
    };
    let request = order("c-1", &[("p-1", 1)], "560001");
    // Open the connections first, so the racers start together instead of one by one as
    // connections come up.
    let warm = futures::future::try_join_all((0..16).map(|_| store.pool().acquire())).await?;
    drop(warm);
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let (store, key, request) = (store.clone(), key.clone(), request.clone());
            tokio::spawn(
                async move { place_order(&store, &rules(), &request, Some(&key), NOW).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await??);
    }
    ensure!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "racers got different answers: {answers:#?}"
    );
    ensure!(count(&store, "SELECT COUNT(*) FROM orders").await? == 1);
    ensure!(stock_of(&store, "p-1").await? == (50, 1));
    Ok(())
}

async fn hyperlocal_orders_outside_the_radius_are_refused(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, true, 5).await?;
    let near = place_order(
        &store,
        &rules(),
        &order("c-1", &[("p-1", 1)], "560042"),
        None,
        NOW,
    )
    .await?;
    ensure!(near.totals.total == Money::inr(42_000));
    ensure!(
        near.totals.gst == Money::inr(2_000),
        "5 % GST inside 420.00 is 20.00"
    );
    let far = place_order(
        &store,
        &rules(),
        &order("c-2", &[("p-1", 1)], "400001"),
        None,
        NOW,
    )
    .await
    .unwrap_err();
    ensure!(far.code().as_str() == "outside_delivery_radius", "{far}");
    Ok(())
}

async fn reopening_applies_no_migration_twice(db: Db) -> Result<()> {
    let migrations = count(&db.store, "SELECT COUNT(*) FROM schema_migrations").await?;
    let versions = count(
        &db.store,
        "SELECT COUNT(DISTINCT version) FROM schema_migrations",
    )
    .await?;
    ensure!(
        migrations == 4 && versions == 4,
        "{migrations} rows for {versions} versions"
    );
    Ok(())
}

testkit::on_both_databases!(
    last_ten_units_go_to_exactly_ten_of_64_buyers,
    a_failed_line_reserves_nothing,
    idempotency_key_replays_the_answer_and_refuses_another_body,
    racing_first_uses_of_one_key_place_one_order,
    hyperlocal_orders_outside_the_radius_are_refused,
);

#[tokio::test]
async fn sqlite_reopens_without_reapplying_migrations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    drop(Store::open(&StoreConfig::default(), dir.path()).await?);
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
    reopening_applies_no_migration_twice(Db { store, dir }).await
}

#[tokio::test]
async fn postgres_reopens_without_reapplying_migrations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        url: Some(testkit::postgres::database("reopen").await?),
        ..StoreConfig::default()
    };
    drop(Store::open(&config, dir.path()).await?);
    let store = Store::open(&config, dir.path()).await?;
    reopening_applies_no_migration_twice(Db { store, dir }).await
}

/// `PRAGMA synchronous` as a connection of `store` sees it (2 = FULL, 1 = NORMAL).
async fn synchronous_of(store: &Store) -> Result<i64> {
    Ok(sqlx::Row::try_get(
        &sqlx::query("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await?,
        0,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fsyncs_every_commit_unless_told_otherwise() -> Result<()> {
    // FULL by default: an order answered 201 is in the fsynced WAL, so a power cut keeps it.
    let db = testkit::core::sqlite().await?;
    ensure!(synchronous_of(&db.store).await? == 2, "not FULL by default");
    // NORMAL only when the operator says so.
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        sqlite_synchronous: ingest::store::Synchronous::Normal,
        ..Default::default()
    };
    let store = Store::open(&config, dir.path()).await?;
    ensure!(synchronous_of(&store).await? == 1);
    Ok(())
}
