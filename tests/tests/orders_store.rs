//! The orders core's storage on both databases: SQLite (a file in a temp dir) and PostgreSQL
//! (from the harness). Every check runs on each.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, ensure};
use ingest::catalog::{self, Merchant, Product};
use ingest::domain::{CancellationPolicy, GstRates};
use ingest::orders::{Idempotency, OrderError, OrderRules, PlaceOrder, RequestedLine, place_order};
use ingest::store::{Store, StoreConfig};
use model::payload::ProductUpserted;
use model::{Currency, CustomerId, MerchantId, Money, Pincode, ProductId, WarehouseId};
use sqlx::Row as _;

const NOW: i64 = 1_764_547_200_000;

struct Db {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Result<Db> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
    Ok(Db { store, _dir: dir })
}

async fn postgres(test: &str) -> Result<Db> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        url: Some(testkit::postgres::database(test).await?),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, dir.path()).await?;
    Ok(Db { store, _dir: dir })
}

fn rules() -> OrderRules {
    OrderRules {
        reservation_hold_ms: 15 * 60_000,
        gst: GstRates::default(),
        fx_rates: Vec::new(),
        pincodes: Arc::new(model::geo::Directory::load()),
    }
}

fn pin(code: &str) -> Pincode {
    Pincode::parse(code).unwrap()
}

/// A merchant (hyperlocal at Bengaluru GPO when asked) with product `p-1` and `units` in stock.
async fn shop(store: &Store, hyperlocal: bool, units: i64) -> Result<()> {
    let merchant = Merchant {
        merchant_id: MerchantId::new("m-1"),
        name: "Corner Store".into(),
        hyperlocal: hyperlocal.then(|| (pin("560001"), 5.0)),
        cancellation_policy: CancellationPolicy::default(),
    };
    catalog::upsert_merchant(store, &merchant, NOW).await?;
    for id in ["p-1", "p-2"] {
        let product = Product {
            merchant_id: MerchantId::new("m-1"),
            listing: ProductUpserted {
                product_id: ProductId::new(id),
                category: "grocery".into(),
                brand: "Annapurna".into(),
                title: "Organic Honey 500 g".into(),
                description: "Raw forest honey.".into(),
                attributes: BTreeMap::from([("weight".into(), "500 g".into())]),
                price: Money::inr(42_000),
            },
        };
        catalog::upsert_product(store, &product, &WarehouseId::new("w-1"), NOW).await?;
    }
    catalog::adjust_stock(
        store,
        &MerchantId::new("m-1"),
        &ProductId::new("p-1"),
        units,
        "receipt",
        NOW,
    )
    .await?;
    catalog::adjust_stock(
        store,
        &MerchantId::new("m-1"),
        &ProductId::new("p-2"),
        1,
        "receipt",
        NOW,
    )
    .await?;
    Ok(())
}

fn order(customer: &str, lines: &[(&str, u32)], delivery: &str) -> PlaceOrder {
    PlaceOrder {
        merchant_id: MerchantId::new("m-1"),
        customer_id: CustomerId::new(customer),
        session_id: None,
        delivery_pincode: pin(delivery),
        currency: Currency::INR,
        lines: lines
            .iter()
            .map(|(product, quantity)| RequestedLine {
                product_id: ProductId::new(*product),
                quantity: *quantity,
            })
            .collect(),
    }
}

async fn count(store: &Store, sql: &str) -> Result<i64> {
    Ok(sqlx::query(sql).fetch_one(store.pool()).await?.try_get(0)?)
}

async fn stock_of(store: &Store, product: &str) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT on_hand, reserved FROM stock WHERE product_id = $1")
        .bind(product)
        .fetch_one(store.pool())
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

async fn last_ten_units_go_to_exactly_ten_of_64_buyers(store: Store) -> Result<()> {
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

async fn a_failed_line_reserves_nothing(store: Store) -> Result<()> {
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
    ensure!(error.code() == "out_of_stock", "{error}");
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

async fn idempotency_key_replays_the_answer_and_refuses_another_body(store: Store) -> Result<()> {
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
    ensure!(error.code() == "idempotency_conflict", "{error}");
    Ok(())
}

async fn hyperlocal_orders_outside_the_radius_are_refused(store: Store) -> Result<()> {
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
    ensure!(far.code() == "outside_delivery_radius", "{far}");
    Ok(())
}

async fn reopening_applies_no_migration_twice(db: Db) -> Result<()> {
    let migrations = count(&db.store, "SELECT COUNT(*) FROM schema_migrations").await?;
    ensure!(migrations == 1);
    Ok(())
}

macro_rules! on_both_databases {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() -> Result<()> {
                    super::$check(sqlite().await?.store).await
                }
            )*
        }
        mod on_postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() -> Result<()> {
                    super::$check(postgres(stringify!($check)).await?.store).await
                }
            )*
        }
    };
}

on_both_databases!(
    last_ten_units_go_to_exactly_ten_of_64_buyers,
    a_failed_line_reserves_nothing,
    idempotency_key_replays_the_answer_and_refuses_another_body,
    hyperlocal_orders_outside_the_radius_are_refused,
);

#[tokio::test]
async fn sqlite_reopens_without_reapplying_migrations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    drop(Store::open(&StoreConfig::default(), dir.path()).await?);
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
    reopening_applies_no_migration_twice(Db { store, _dir: dir }).await
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
    reopening_applies_no_migration_twice(Db { store, _dir: dir }).await
}
