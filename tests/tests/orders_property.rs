//! Property: random interleavings of place / pay / decline / cancel / expire / refund never
//! oversell, never refund more than was captured, and always leave
//! `on hand = initial - confirmed + released after sale` and `reserved = units of placed
//! orders`. Each case is a seeded sequence; a failure names the seed and the steps so far, and
//! `SHOPSTREAM_PROPERTY_SEED=<seed>` replays just that case.

use anyhow::{Context as _, Result, ensure};
use ingest::domain::OrderStatus;
use ingest::lifecycle::{self, PaymentOutcome, Scope, cancel, record_payment, refund};
use ingest::orders::place_order;
use ingest::store::Store;
use model::{Money, OrderId, PaymentId};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use sqlx::Row as _;
use testkit::core::{NOW, order, rules, shop, stock_of};

const INITIAL: i64 = 12;
const STEPS: usize = 60;

#[derive(Debug)]
struct Tracked {
    order_id: OrderId,
    quantity: i64,
}

/// What the operations reported, summed independently of the database.
#[derive(Debug, Default)]
struct Ledger {
    confirmed_units: i64,
    released_after_sale: i64,
}

async fn run_case(store: &Store, seed: u64) -> Result<()> {
    shop(store, false, INITIAL).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut orders: Vec<Tracked> = Vec::new();
    let mut ledger = Ledger::default();
    let mut now = NOW;
    let mut steps = Vec::new();
    for _ in 0..STEPS {
        now += rng.random_range(0..4 * 60_000);
        let pick = (!orders.is_empty()).then(|| rng.random_range(0..orders.len()));
        let step = match (rng.random_range(0..6), pick) {
            (0, _) | (_, None) => {
                let quantity = rng.random_range(1..=3u32);
                let request = order("c-1", &[("p-1", quantity)], "560001");
                match place_order(store, &rules(), &request, None, now).await {
                    Ok(placed) => {
                        orders.push(Tracked {
                            order_id: placed.order_id,
                            quantity: i64::from(quantity),
                        });
                        format!("place {quantity}: ok")
                    }
                    Err(error) => format!("place {quantity}: {}", error.code()),
                }
            }
            (1 | 2, Some(i)) => {
                let tracked = &orders[i];
                let view = lifecycle::view_order(store, &tracked.order_id, &Scope::Any).await?;
                let payment_id = PaymentId::new(format!("pay-{seed}-{}", steps.len()));
                let outcome = if rng.random_bool(0.8) {
                    PaymentOutcome::Captured {
                        payment_id,
                        provider: "sim".into(),
                        amount: view.total,
                    }
                } else {
                    PaymentOutcome::Failed {
                        payment_id,
                        provider: "sim".into(),
                        amount: view.total,
                        reason: "declined".into(),
                    }
                };
                let recorded =
                    record_payment(store, &tracked.order_id, &Scope::Any, &outcome, now).await?;
                if view.status == OrderStatus::Placed && recorded.status == OrderStatus::Confirmed {
                    ledger.confirmed_units += tracked.quantity;
                }
                format!("pay #{i} ({}): {:?}", view.status, recorded.status)
            }
            (3, Some(i)) => {
                let tracked = &orders[i];
                let before = lifecycle::view_order(store, &tracked.order_id, &Scope::Any)
                    .await?
                    .status;
                match cancel(store, &tracked.order_id, &Scope::Any, "prop", now).await {
                    Ok(_) => {
                        if matches!(before, OrderStatus::Confirmed | OrderStatus::Packed) {
                            ledger.released_after_sale += tracked.quantity;
                        }
                        format!("cancel #{i} ({before}): ok")
                    }
                    Err(error) => format!("cancel #{i} ({before}): {}", error.code()),
                }
            }
            (4, Some(_)) => {
                let expired = lifecycle::expire_reservations(store, now, 1_000).await?;
                format!("expire: {}", expired.len())
            }
            (_, Some(i)) => {
                let tracked = &orders[i];
                let view = lifecycle::view_order(store, &tracked.order_id, &Scope::Any).await?;
                let amount = rng.random_range(1..=view.total.amount_minor * 6 / 5);
                let result = refund(
                    store,
                    &tracked.order_id,
                    &Scope::Any,
                    Money::new(amount, view.total.currency),
                    "prop",
                    now,
                )
                .await;
                match result {
                    Ok(_) => format!("refund #{i} {amount}: ok"),
                    Err(error) => format!("refund #{i} {amount}: {}", error.code()),
                }
            }
        };
        steps.push(step);
        check(store, &orders, &ledger)
            .await
            .with_context(|| format!("seed {seed}, after steps:\n{}", steps.join("\n")))?;
    }
    Ok(())
}

async fn check(store: &Store, orders: &[Tracked], ledger: &Ledger) -> Result<()> {
    let (on_hand, reserved) = stock_of(store, "p-1").await?;
    ensure!(
        on_hand >= reserved && reserved >= 0,
        "oversold: on hand {on_hand}, reserved {reserved}"
    );
    ensure!(
        on_hand == INITIAL - ledger.confirmed_units + ledger.released_after_sale,
        "on hand {on_hand} != {INITIAL} - {} confirmed + {} released",
        ledger.confirmed_units,
        ledger.released_after_sale
    );
    let mut placed_units = 0;
    for tracked in orders {
        let view = lifecycle::view_order(store, &tracked.order_id, &Scope::Any).await?;
        ensure!(
            view.refunded.amount_minor <= view.captured.amount_minor,
            "{} refunded {:?} of {:?} captured",
            tracked.order_id,
            view.refunded,
            view.captured
        );
        if view.status == OrderStatus::Placed {
            placed_units += tracked.quantity;
        }
    }
    ensure!(
        reserved == placed_units,
        "reserved {reserved}, placed orders hold {placed_units}"
    );
    let negative: i64 = sqlx::query("SELECT COUNT(*) FROM stock WHERE on_hand < 0 OR reserved < 0")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    ensure!(negative == 0);
    Ok(())
}

fn seeds(cases: u64) -> Vec<u64> {
    match std::env::var("SHOPSTREAM_PROPERTY_SEED") {
        Ok(seed) => vec![seed.parse().expect("SHOPSTREAM_PROPERTY_SEED is a number")],
        Err(_) => (0..cases).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_on_sqlite() -> Result<()> {
    for seed in seeds(24) {
        let db = testkit::core::sqlite().await?;
        run_case(&db.store, seed).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_on_postgres() -> Result<()> {
    for seed in seeds(8) {
        let db = testkit::core::postgres(&format!("prop_{seed}")).await?;
        run_case(&db.store, seed).await?;
    }
    Ok(())
}
