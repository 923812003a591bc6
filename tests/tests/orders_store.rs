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

/// Orders are worked out on a read connection before the write lock: one must still commit
/// against the catalog as it stands when it commits. 200 orders race 20 reprices and then a
/// deactivation; in the outbox's order every `order.placed` carries the price of the last
/// `catalog.product_upserted` before it, and none follows the deactivation.
async fn orders_commit_against_the_catalog_as_it_stands(db: Db) -> Result<()> {
    use futures::StreamExt as _;
    let store = db.store.clone();
    shop(&store, false, 10_000).await?;
    let rules = Arc::new(rules());
    let buyers = {
        let (store, rules) = (store.clone(), Arc::clone(&rules));
        tokio::spawn(async move {
            futures::stream::iter(0..200)
                .map(|i| {
                    let (store, rules) = (store.clone(), Arc::clone(&rules));
                    async move {
                        let request = order(&format!("c-{i}"), &[("p-1", 1)], "560001");
                        place_order(&store, &rules, &request, None, NOW).await
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    for step in 1..=20 {
        tokio::task::yield_now().await;
        reprice(&store, 42_000 + step).await?;
    }
    ingest::catalog::deactivate_product(
        &store,
        &model::MerchantId::new("m-1"),
        &model::ProductId::new("p-1"),
        "discontinued",
        NOW,
    )
    .await?;
    for outcome in buyers.await? {
        match outcome {
            Ok(_) | Err(OrderError::ProductInactive { .. }) => {}
            Err(other) => anyhow::bail!("unexpected error: {other}"),
        }
    }

    let rows = sqlx::query("SELECT payload FROM outbox ORDER BY seq")
        .fetch_all(store.pool())
        .await?;
    let (mut price, mut active, mut placed) = (None, true, 0);
    for row in rows {
        let payload: String = sqlx::Row::try_get(&row, 0)?;
        match model::codec::decode(payload.as_bytes())?.event {
            model::Event::ProductUpserted(listing) if listing.product_id.as_str() == "p-1" => {
                price = Some(listing.price);
            }
            model::Event::ProductDeactivated(_) => active = false,
            model::Event::OrderPlaced(order) => {
                ensure!(
                    active,
                    "order {} committed after the deactivation",
                    order.order_id
                );
                ensure!(
                    Some(order.lines[0].unit_price) == price,
                    "order {} at {:?}, the catalog said {price:?}",
                    order.order_id,
                    order.lines[0].unit_price
                );
                placed += 1;
            }
            _ => {}
        }
    }
    ensure!(placed > 0, "no order was placed");
    Ok(())
}

/// The largest order allowed is written whole (one multi-row insert binds every line), and
/// one line more is refused before anything is written.
async fn an_order_of_the_most_lines_is_placed_and_one_more_refused(db: Db) -> Result<()> {
    let store = db.store.clone();
    shop(&store, false, 1).await?;
    let most = model::limits::ORDER_LINES;
    let ids: Vec<String> = (0..=most).map(|i| format!("bulk-{i:04}")).collect();
    for id in &ids {
        let product = ingest::catalog::Product {
            merchant_id: model::MerchantId::new("m-1"),
            listing: model::payload::ProductUpserted {
                product_id: model::ProductId::new(id.as_str()),
                category: "grocery".into(),
                brand: "Bulk".into(),
                title: format!("Sack {id}"),
                description: String::new(),
                attributes: Default::default(),
                price: Money::inr(1_000),
            },
        };
        ingest::catalog::upsert_product(&store, &product, &model::WarehouseId::new("w-1"), NOW)
            .await?;
        ingest::catalog::adjust_stock(
            &store,
            &product.merchant_id,
            &product.listing.product_id,
            5,
            "receipt",
            NOW,
        )
        .await?;
    }
    let lines: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
    let too_many = place_order(&store, &rules(), &order("c-1", &lines, "560001"), None, NOW)
        .await
        .unwrap_err();
    ensure!(too_many.code().as_str() == "invalid_order", "{too_many}");
    ensure!(count(&store, "SELECT COUNT(*) FROM orders").await? == 0);

    let placed = place_order(
        &store,
        &rules(),
        &order("c-1", &lines[..most], "560001"),
        None,
        NOW,
    )
    .await?;
    let stored = count(&store, "SELECT COUNT(*) FROM order_lines").await?;
    ensure!(stored == most as i64, "{stored} lines stored of {most}");
    ensure!(placed.totals.lines.len() == most);
    let reserved = count(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%\"inventory.stock_reserved\"%'",
    )
    .await?;
    ensure!(reserved == most as i64, "{reserved} stock_reserved events");
    Ok(())
}

/// 64 write sections at once, every other one failing after it wrote: the failures are undone
/// and answered with their own error, the rest are all there. On SQLite they share group
/// commits (fewer groups than sections), each failure rolled back to its savepoint only.
async fn write_sections_commit_or_vanish_alone(db: Db) -> Result<()> {
    #[derive(Debug)]
    enum Refused {
        Odd(usize),
        Store(ingest::store::StoreError),
    }
    impl From<ingest::store::StoreError> for Refused {
        fn from(error: ingest::store::StoreError) -> Self {
            Refused::Store(error)
        }
    }
    let store = db.store.clone();
    let sections: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write_grouped(move |tx| {
                        Box::pin(async move {
                            sqlx::query(
                                "INSERT INTO notifications_sent (source_event_id, channel, sent_at)
                                 VALUES ($1, 'test', 0)",
                            )
                            .bind(format!("e-{i}"))
                            .execute(&mut **tx)
                            .await
                            .map_err(ingest::store::StoreError::from)?;
                            if i % 2 == 1 {
                                return Err(Refused::Odd(i));
                            }
                            Ok(i)
                        })
                    })
                    .await
            })
        })
        .collect();
    for (i, section) in sections.into_iter().enumerate() {
        match section.await? {
            Ok(written) => ensure!(i % 2 == 0 && written == i, "section {i} answered {written}"),
            Err(Refused::Odd(refused)) => ensure!(refused == i && i % 2 == 1, "section {i}"),
            Err(Refused::Store(error)) => anyhow::bail!("section {i}: {error}"),
        }
    }
    let kept =
        sqlx::query("SELECT source_event_id FROM notifications_sent ORDER BY source_event_id")
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|row| sqlx::Row::try_get::<String, _>(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
    let mut expected: Vec<String> = (0..64).step_by(2).map(|i| format!("e-{i}")).collect();
    expected.sort();
    ensure!(kept == expected, "kept {kept:?}");
    if store.backend() == ingest::store::Backend::Sqlite {
        use std::sync::atomic::Ordering::Relaxed;
        let counts = store.group_counts();
        let (groups, sections) = (counts.groups.load(Relaxed), counts.sections.load(Relaxed));
        ensure!(
            sections >= 64 && groups < sections,
            "{sections} sections in {groups} groups: nothing was grouped"
        );
    }
    Ok(())
}

async fn reprice(store: &Store, amount_minor: i64) -> Result<()> {
    let product = ingest::catalog::Product {
        merchant_id: model::MerchantId::new("m-1"),
        listing: model::payload::ProductUpserted {
            product_id: model::ProductId::new("p-1"),
            category: "grocery".into(),
            brand: "Annapurna".into(),
            title: "Organic Honey 500 g".into(),
            description: "Raw forest honey.".into(),
            attributes: Default::default(),
            price: Money::inr(amount_minor),
        },
    };
    ingest::catalog::upsert_product(store, &product, &model::WarehouseId::new("w-1"), NOW).await?;
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
        migrations == 5 && versions == 5,
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
    orders_commit_against_the_catalog_as_it_stands,
    an_order_of_the_most_lines_is_placed_and_one_more_refused,
    write_sections_commit_or_vanish_alone,
);

/// Commits never checkpoint the WAL themselves (that stalled the writer); the store's
/// checkpointer must keep it from growing. 4 rounds of 100 commits of 20 KB rows (about 6 MB
/// of WAL a round: the text is in the row and in its key's index), a pause after each: the
/// WAL stays near one round's size. Without the checkpointer it reached 23.8 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_small_without_checkpoints_at_commit() -> Result<()> {
    let db = testkit::core::sqlite().await?;
    let filler = "x".repeat(20_000);
    for round in 0..4 {
        for row in 0..100 {
            let mut tx = db.store.write().await?;
            sqlx::query(
                "INSERT INTO notifications_sent (source_event_id, channel, sent_at) VALUES ($1, $2, 0)",
            )
            .bind(format!("{round}-{row}-{filler}"))
            .bind("test")
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    }
    let wal = std::fs::metadata(db.dir.path().join("orders.sqlite3-wal"))?.len();
    ensure!(wal < 12_000_000, "the WAL grew to {wal} bytes");
    Ok(())
}

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
