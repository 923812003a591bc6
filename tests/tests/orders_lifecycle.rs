//! An order's life after it is placed, on both databases: payment, cancellation with the
//! refund policy, refunds bounded by captures, fulfilment with shipments, address changes and
//! the reservation sweeper.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed check here.

use std::sync::Arc;

use anyhow::{Result, ensure};
use ingest::domain::OrderStatus;
use ingest::lifecycle::{
    self, AddressRules, PaymentOutcome, Scope, ShipRequest, cancel, record_payment, refund,
};
use ingest::orders::place_order;
use ingest::payments::{self, Payments, RetryPolicy, SimulatedConfig, SimulatedProvider};
use ingest::store::Store;
use model::{CourierId, Money, OrderId, PaymentId, Pincode};
use testkit::core::{Db, NOW, count, order, rules, shop, stock_of};

const MINUTE: i64 = 60_000;

async fn placed(store: &Store, quantity: u32) -> Result<OrderId> {
    let request = order("c-1", &[("p-1", quantity)], "560001");
    Ok(place_order(store, &rules(), &request, None, NOW)
        .await?
        .order_id)
}

fn captured(total: Money) -> PaymentOutcome {
    PaymentOutcome::Captured {
        payment_id: PaymentId::new(format!("pay-{}", uuid::Uuid::now_v7())),
        provider: "test".into(),
        amount: total,
    }
}

async fn paid(store: &Store, quantity: u32) -> Result<(OrderId, Money)> {
    let order_id = placed(store, quantity).await?;
    let total = lifecycle::view_order(store, &order_id, &Scope::Any)
        .await?
        .total;
    record_payment(store, &order_id, &Scope::Any, &captured(total), NOW + 1).await?;
    Ok((order_id, total))
}

async fn events_of(store: &Store, order_id: &OrderId) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT payload FROM outbox WHERE payload LIKE $1 ORDER BY seq")
        .bind(format!("%{order_id}%"))
        .fetch_all(store.pool())
        .await?;
    rows.iter()
        .map(|row| {
            let payload: String = sqlx::Row::try_get(row, 0)?;
            let envelope = model::codec::decode(payload.as_bytes())?;
            Ok(envelope.event_type().as_str().to_owned())
        })
        .collect()
}

async fn payment_confirms_and_sells_the_reserved_units(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let (order_id, _) = paid(store, 2).await?;
    let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
    ensure!(view.status == OrderStatus::Confirmed, "{:?}", view.status);
    ensure!(view.captured == view.total);
    ensure!(
        stock_of(store, "p-1").await? == (3, 0),
        "sold units left stock"
    );
    let events = events_of(store, &order_id).await?;
    ensure!(
        events
            == [
                "order.placed",
                "inventory.stock_reserved",
                "payment.captured",
                "inventory.stock_adjusted",
                "order.confirmed"
            ],
        "{events:?}"
    );
    Ok(())
}

async fn a_declined_payment_fails_the_order_and_frees_its_stock(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let order_id = placed(store, 2).await?;
    let declined = PaymentOutcome::Failed {
        payment_id: PaymentId::new("pay-x"),
        provider: "test".into(),
        amount: Money::inr(84_000),
        reason: "declined_by_issuer".into(),
    };
    let recorded = record_payment(store, &order_id, &Scope::Any, &declined, NOW + 1).await?;
    ensure!(recorded.status == OrderStatus::Failed);
    ensure!(stock_of(store, "p-1").await? == (5, 0));
    Ok(())
}

async fn cancelling_refunds_by_the_policy_window(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 9).await?;
    for (elapsed, expected_percent) in [
        (9 * MINUTE + 59_000, Some(70)),
        (10 * MINUTE + 1_000, Some(40)),
        (30 * MINUTE + 1_000, None),
    ] {
        let (order_id, total) = paid(store, 1).await?;
        let result = cancel(store, &order_id, &Scope::Any, "changed mind", NOW + elapsed).await;
        match (expected_percent, result) {
            (Some(percent), Ok(cancelled)) => {
                ensure!(cancelled.status == OrderStatus::Cancelled);
                ensure!(
                    cancelled.refund.amount_minor == total.amount_minor * percent / 100,
                    "at {elapsed} ms: refund {:?} of {total:?}",
                    cancelled.refund
                );
            }
            (None, Err(error)) => {
                ensure!(
                    error.code().as_str() == "cancellation_window_closed",
                    "{error}"
                );
                let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
                ensure!(
                    view.status == OrderStatus::Confirmed,
                    "a refused cancel changed the order"
                );
            }
            (expected, other) => {
                anyhow::bail!("at {elapsed} ms expected {expected:?}, got {other:?}")
            }
        }
    }
    // Two cancelled orders gave their units back; the refused one kept its unit sold.
    ensure!(
        stock_of(store, "p-1").await? == (8, 0),
        "{:?}",
        stock_of(store, "p-1").await?
    );
    Ok(())
}

async fn refunds_never_exceed_the_capture(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let (order_id, total) = paid(store, 1).await?;
    let sixty = Money::inr(total.amount_minor * 6 / 10);
    refund(store, &order_id, &Scope::Any, sixty, "damaged box", NOW + 2).await?;
    let error = refund(store, &order_id, &Scope::Any, sixty, "again", NOW + 3)
        .await
        .unwrap_err();
    ensure!(
        error.code().as_str() == "refund_exceeds_captured",
        "{error}"
    );
    let rest = Money::inr(total.amount_minor - sixty.amount_minor);
    refund(store, &order_id, &Scope::Any, rest, "rest", NOW + 4).await?;
    let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
    ensure!(view.refunded == view.captured, "{view:?}");
    let unpaid = placed(store, 1).await?;
    let error = refund(store, &unpaid, &Scope::Any, Money::inr(1), "x", NOW + 5)
        .await
        .unwrap_err();
    ensure!(error.code().as_str() == "nothing_captured", "{error}");
    Ok(())
}

async fn fulfilment_runs_pack_ship_deliver_with_a_shipment(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, true, 5).await?;
    let (order_id, total) = paid(store, 1).await?;
    let early = lifecycle::deliver(store, &order_id, &Scope::Any, NOW + 2)
        .await
        .unwrap_err();
    ensure!(early.code().as_str() == "illegal_transition", "{early}");
    lifecycle::pack(store, &order_id, &Scope::Any, NOW + 2).await?;
    let ship = ShipRequest {
        courier_id: CourierId::new("cr-1"),
        origin_pincode: None,
        promised_at: Some(NOW + 60 * MINUTE),
    };
    let shipment_id = lifecycle::ship(store, &order_id, &Scope::Any, &ship, NOW + 3).await?;
    let late_cancel = cancel(store, &order_id, &Scope::Any, "too slow", NOW + 4)
        .await
        .unwrap_err();
    ensure!(
        late_cancel.code().as_str() == "illegal_transition",
        "{late_cancel}"
    );
    lifecycle::deliver(store, &order_id, &Scope::Any, NOW + 30 * MINUTE).await?;
    let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
    let shipment = view.shipment.clone().unwrap();
    ensure!(shipment.shipment_id == shipment_id.as_str());
    ensure!(shipment.delivered_at == Some(NOW + 30 * MINUTE));
    refund(
        store,
        &order_id,
        &Scope::Any,
        total,
        "returned",
        NOW + 40 * MINUTE,
    )
    .await?;
    let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
    ensure!(view.status == OrderStatus::Refunded, "{:?}", view.status);
    let events = events_of(store, &order_id).await?;
    for expected in [
        "order.packed",
        "shipment.created",
        "order.shipped",
        "shipment.delivered",
        "order.delivered",
        "payment.refund_issued",
    ] {
        ensure!(
            events.iter().any(|e| e == expected),
            "{expected} missing from {events:?}"
        );
    }
    Ok(())
}

async fn another_merchants_key_sees_no_such_order(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let order_id = placed(store, 1).await?;
    let stranger = Scope::Merchant(model::MerchantId::new("m-2"));
    let error = lifecycle::pack(store, &order_id, &stranger, NOW + 1)
        .await
        .unwrap_err();
    ensure!(error.code().as_str() == "unknown_order", "{error}");
    let error = lifecycle::view_order(store, &order_id, &stranger)
        .await
        .unwrap_err();
    ensure!(error.code().as_str() == "unknown_order", "{error}");
    let customer = model::CustomerId::new("c-1");
    let theirs = lifecycle::customer_orders(store, &customer, &stranger, 10).await?;
    ensure!(theirs.is_empty(), "{theirs:?}");
    let own = Scope::Merchant(model::MerchantId::new("m-1"));
    let ours = lifecycle::customer_orders(store, &customer, &own, 10).await?;
    ensure!(ours.len() == 1 && ours[0].order_id == order_id, "{ours:?}");
    Ok(())
}

async fn the_address_changes_only_inside_window_and_radius(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, true, 5).await?;
    let pincodes = rules().pincodes;
    let order_id = placed(store, 1).await?;
    let change = |pincode: &str, at: i64| {
        let order_id = order_id.clone();
        let pincodes = Arc::clone(&pincodes);
        let pincode = Pincode::parse(pincode).unwrap();
        async move {
            lifecycle::change_address(
                store,
                &pincodes,
                AddressRules::default(),
                &order_id,
                &Scope::Any,
                pincode,
                at,
            )
            .await
        }
    };
    change("560042", NOW + MINUTE).await?;
    let far = change("400001", NOW + 2 * MINUTE).await.unwrap_err();
    ensure!(far.code().as_str() == "outside_delivery_radius", "{far}");
    let late = change("560001", NOW + 31 * MINUTE).await.unwrap_err();
    ensure!(late.code().as_str() == "address_change_closed", "{late}");
    let view = lifecycle::view_order(store, &order_id, &Scope::Any).await?;
    ensure!(view.delivery_pincode.to_string() == "560042");
    ensure!(
        events_of(store, &order_id)
            .await?
            .contains(&"order.address_changed".to_owned())
    );
    Ok(())
}

async fn the_sweeper_fails_expired_orders_and_frees_their_stock(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let unpaid = placed(store, 2).await?;
    let (paid_order, _) = paid(store, 1).await?;
    let hold = rules().reservation_hold_ms;
    ensure!(
        lifecycle::expire_reservations(store, NOW + hold - 1, 100)
            .await?
            .is_empty()
    );
    let expired = lifecycle::expire_reservations(store, NOW + hold, 100).await?;
    ensure!(expired == [unpaid.clone()], "{expired:?}");
    ensure!(stock_of(store, "p-1").await? == (4, 0));
    let view = lifecycle::view_order(store, &paid_order, &Scope::Any).await?;
    ensure!(view.status == OrderStatus::Confirmed);
    // The payment arrives after all: it is refunded in full, the order stays failed.
    let total = lifecycle::view_order(store, &unpaid, &Scope::Any)
        .await?
        .total;
    let late = record_payment(
        store,
        &unpaid,
        &Scope::Any,
        &captured(total),
        NOW + hold + 5,
    )
    .await?;
    ensure!(
        late.status == OrderStatus::Failed && late.refunded == Some(total),
        "{late:?}"
    );
    ensure!(
        stock_of(store, "p-1").await? == (4, 0),
        "a late capture took stock"
    );
    Ok(())
}

async fn paying_goes_through_the_gateway_with_fallback(db: Db) -> Result<()> {
    let store = &db.store;
    shop(store, false, 5).await?;
    let order_id = placed(store, 1).await?;
    let down = Arc::new(SimulatedProvider::new(SimulatedConfig {
        name: "down".into(),
        unavailable_rate: 1.0,
        ..SimulatedConfig::default()
    }));
    let backup = Arc::new(SimulatedProvider::new(SimulatedConfig {
        name: "backup".into(),
        ..SimulatedConfig::default()
    }));
    let retry = RetryPolicy {
        attempts: 2,
        initial_backoff_ms: 1,
        max_backoff_ms: 2,
        timeout_ms: 500,
    };
    let gateway = Payments::new(vec![down, backup], retry);
    let recorded = payments::pay(store, &gateway, &order_id, &Scope::Any, || NOW + 1).await?;
    ensure!(recorded.status == OrderStatus::Confirmed);
    let again = payments::pay(store, &gateway, &order_id, &Scope::Any, || NOW + 2)
        .await
        .unwrap_err();
    ensure!(again.code().as_str() == "already_paid", "{again}");
    let provider: String = sqlx::Row::try_get(
        &sqlx::query("SELECT provider FROM payments")
            .fetch_one(store.pool())
            .await?,
        0,
    )?;
    ensure!(provider == "backup");
    ensure!(count(store, "SELECT COUNT(*) FROM payments").await? == 1);
    Ok(())
}

testkit::on_both_databases!(
    payment_confirms_and_sells_the_reserved_units,
    a_declined_payment_fails_the_order_and_frees_its_stock,
    cancelling_refunds_by_the_policy_window,
    refunds_never_exceed_the_capture,
    fulfilment_runs_pack_ship_deliver_with_a_shipment,
    another_merchants_key_sees_no_such_order,
    the_address_changes_only_inside_window_and_radius,
    the_sweeper_fails_expired_orders_and_frees_their_stock,
    paying_goes_through_the_gateway_with_fallback,
);
