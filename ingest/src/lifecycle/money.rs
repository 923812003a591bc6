//! Money moving on an order: the outcome of a payment attempt, cancellation with the
//! merchant's refund policy, and refunds, which never exceed what was captured.

use model::payload::{
    OrderCancelled, OrderConfirmed, OrderFailed, PaymentCaptured, PaymentFailed, RefundIssued,
    ReleaseReason, SOLD_REASON, StockAdjusted,
};
use model::{Event, Money, OrderId, PaymentId, RefundId};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::{LifecycleError, LockedOrder, Scope, Tx, lock_order, return_stock, transition};
use crate::domain::{CancellationPolicy, OrderAction, OrderStatus, RefundLedger};
use crate::outbox;
use crate::store::{Store, StoreError};

/// What a payment provider answered, as the core records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PaymentOutcome {
    Captured {
        payment_id: PaymentId,
        provider: String,
        amount: Money,
    },
    Failed {
        payment_id: PaymentId,
        provider: String,
        amount: Money,
        reason: String,
    },
}

/// What recording a payment did to the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentRecorded {
    pub order_id: OrderId,
    pub status: OrderStatus,
    /// A capture that arrived after the order stopped waiting for it (expired, cancelled, or
    /// already paid) is refunded in full at once; this is that refund.
    pub refunded: Option<Money>,
}

/// Records a provider's answer: a capture confirms a placed order and turns its reservation
/// into a sale; a failure fails the order and releases its stock.
pub async fn record_payment(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    outcome: &PaymentOutcome,
    now: i64,
) -> Result<PaymentRecorded, LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    let mut refunded = None;
    let status = match outcome {
        PaymentOutcome::Captured {
            payment_id,
            provider,
            amount,
        } => {
            insert_payment(
                &mut tx, &order, payment_id, provider, "captured", *amount, None, now,
            )
            .await?;
            let captured = Event::PaymentCaptured(PaymentCaptured {
                payment_id: payment_id.clone(),
                order_id: order_id.clone(),
                amount: *amount,
                provider: provider.clone(),
            });
            outbox::append(&mut tx, &order.merchant_id, now, captured).await?;
            if order.status == OrderStatus::Placed && *amount == order.total {
                let status = transition(&mut tx, &order, OrderAction::Confirm).await?;
                sell_reserved(&mut tx, &order, now).await?;
                let confirmed = Event::OrderConfirmed(OrderConfirmed {
                    order_id: order_id.clone(),
                    payment_id: payment_id.clone(),
                });
                outbox::append(&mut tx, &order.merchant_id, now, confirmed).await?;
                status
            } else {
                let reason = if *amount == order.total {
                    format!("captured while the order was {}", order.status)
                } else {
                    format!(
                        "captured {} {} against an order total of {} {}",
                        amount.amount_minor,
                        amount.currency,
                        order.total.amount_minor,
                        order.total.currency
                    )
                };
                insert_refund(&mut tx, &order, payment_id, *amount, &reason, now).await?;
                refunded = Some(*amount);
                order.status
            }
        }
        PaymentOutcome::Failed {
            payment_id,
            provider,
            amount,
            reason,
        } => {
            insert_payment(
                &mut tx,
                &order,
                payment_id,
                provider,
                "failed",
                *amount,
                Some(reason),
                now,
            )
            .await?;
            let failed = Event::PaymentFailed(PaymentFailed {
                payment_id: payment_id.clone(),
                order_id: order_id.clone(),
                amount: *amount,
                provider: provider.clone(),
                reason: reason.clone(),
            });
            outbox::append(&mut tx, &order.merchant_id, now, failed).await?;
            if order.status == OrderStatus::Placed {
                let status = transition(&mut tx, &order, OrderAction::Fail).await?;
                return_stock(&mut tx, &order, false, ReleaseReason::PaymentFailed, now).await?;
                let failed = Event::OrderFailed(OrderFailed {
                    order_id: order_id.clone(),
                    reason: format!("payment_failed: {reason}"),
                });
                outbox::append(&mut tx, &order.merchant_id, now, failed).await?;
                status
            } else {
                order.status
            }
        }
    };
    tx.commit().await?;
    Ok(PaymentRecorded {
        order_id: order_id.clone(),
        status,
        refunded,
    })
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cancelled {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub refund: Money,
}

/// Cancels the order at `now` under its merchant's policy: refused once the window closed,
/// otherwise the policy's share of what was captured goes back and the units return to stock.
pub async fn cancel(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    reason: &str,
    now: i64,
) -> Result<Cancelled, LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    order.status.apply(OrderAction::Cancel)?;
    let policy = merchant_policy(&mut tx, &order).await?;
    let ledger = ledger(&mut tx, &order).await?;
    let share = policy.refund(order.placed_at, now, ledger.captured)?;
    let refund = Money::new(share.amount_minor.min(ledger.refundable()), share.currency);
    let status = transition(&mut tx, &order, OrderAction::Cancel).await?;
    if refund.amount_minor > 0 {
        let payment_id = captured_payment(&mut tx, &order).await?;
        let why = format!("cancelled: {reason}");
        insert_refund(&mut tx, &order, &payment_id, refund, &why, now).await?;
    }
    let sold = order.status != OrderStatus::Placed;
    return_stock(&mut tx, &order, sold, ReleaseReason::Cancelled, now).await?;
    let cancelled = Event::OrderCancelled(OrderCancelled {
        order_id: order_id.clone(),
        reason: reason.to_owned(),
        refund,
    });
    outbox::append(&mut tx, &order.merchant_id, now, cancelled).await?;
    tx.commit().await?;
    Ok(Cancelled {
        order_id: order_id.clone(),
        status,
        refund,
    })
}

/// A refund the merchant grants (a return, a goodwill credit). The sum of refunds never
/// exceeds what was captured; refunding a delivered order marks it refunded (returned).
pub async fn refund(
    store: &Store,
    order_id: &OrderId,
    scope: &Scope,
    amount: Money,
    reason: &str,
    now: i64,
) -> Result<RefundIssued, LifecycleError> {
    let mut tx = store.write().await?;
    let order = lock_order(&mut tx, order_id, scope, now).await?;
    let ledger = ledger(&mut tx, &order).await?;
    if ledger.captured.amount_minor == 0 {
        return Err(LifecycleError::NothingCaptured(order_id.clone()));
    }
    ledger.refund(amount)?;
    let payment_id = captured_payment(&mut tx, &order).await?;
    let issued = insert_refund(&mut tx, &order, &payment_id, amount, reason, now).await?;
    if order.status == OrderStatus::Delivered {
        transition(&mut tx, &order, OrderAction::Refund).await?;
    }
    tx.commit().await?;
    Ok(issued)
}

async fn merchant_policy(
    tx: &mut Tx,
    order: &LockedOrder,
) -> Result<CancellationPolicy, LifecycleError> {
    let text: String =
        sqlx::query("SELECT cancellation_policy FROM merchants WHERE merchant_id = $1")
            .bind(order.merchant_id.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    serde_json::from_str(&text).map_err(|e| {
        LifecycleError::Store(StoreError::Corrupt(format!(
            "cancellation policy of {}: {e}",
            order.merchant_id
        )))
    })
}

/// Captured and refunded so far on the order, in its currency.
async fn ledger(tx: &mut Tx, order: &LockedOrder) -> Result<RefundLedger, LifecycleError> {
    let row = sqlx::query(
        "SELECT
           (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payments
              WHERE order_id = $1 AND status = 'captured'),
           (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE order_id = $1)",
    )
    .bind(order.order_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let currency = order.total.currency;
    Ok(RefundLedger {
        captured: Money::new(row.try_get(0)?, currency),
        refunded: Money::new(row.try_get(1)?, currency),
    })
}

async fn captured_payment(tx: &mut Tx, order: &LockedOrder) -> Result<PaymentId, LifecycleError> {
    let id: String = sqlx::query(
        "SELECT payment_id FROM payments WHERE order_id = $1 AND status = 'captured'
         ORDER BY created_at DESC, payment_id DESC LIMIT 1",
    )
    .bind(order.order_id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| LifecycleError::NothingCaptured(order.order_id.clone()))?
    .try_get(0)?;
    Ok(PaymentId::new(id))
}

#[allow(clippy::too_many_arguments)] // One row's columns; a struct would only rename them.
async fn insert_payment(
    tx: &mut Tx,
    order: &LockedOrder,
    payment_id: &PaymentId,
    provider: &str,
    status: &str,
    amount: Money,
    reason: Option<&str>,
    now: i64,
) -> Result<(), LifecycleError> {
    if amount.currency != order.total.currency {
        return Err(LifecycleError::Invalid(format!(
            "payment in {} for an order in {}",
            amount.currency, order.total.currency
        )));
    }
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, provider, status, amount_minor, currency,
           reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(payment_id.as_str())
    .bind(order.order_id.as_str())
    .bind(provider)
    .bind(status)
    .bind(amount.amount_minor)
    .bind(amount.currency.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_refund(
    tx: &mut Tx,
    order: &LockedOrder,
    payment_id: &PaymentId,
    amount: Money,
    reason: &str,
    now: i64,
) -> Result<RefundIssued, LifecycleError> {
    let refund_id = RefundId::new(format!("rf-{}", uuid::Uuid::now_v7().simple()));
    sqlx::query(
        "INSERT INTO refunds (refund_id, order_id, payment_id, amount_minor, currency, reason,
           created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(refund_id.as_str())
    .bind(order.order_id.as_str())
    .bind(payment_id.as_str())
    .bind(amount.amount_minor)
    .bind(amount.currency.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let issued = RefundIssued {
        refund_id,
        payment_id: payment_id.clone(),
        order_id: order.order_id.clone(),
        amount,
    };
    let event = Event::RefundIssued(issued.clone());
    outbox::append(tx, &order.merchant_id, now, event).await?;
    Ok(issued)
}

/// Paid: the reserved units leave stock for good.
async fn sell_reserved(tx: &mut Tx, order: &LockedOrder, now: i64) -> Result<(), LifecycleError> {
    for line in &order.lines {
        let on_hand: i64 = sqlx::query(
            "UPDATE stock SET on_hand = on_hand - $1, reserved = reserved - $1
             WHERE product_id = $2 RETURNING on_hand",
        )
        .bind(line.quantity)
        .bind(line.product_id.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let sold = Event::StockAdjusted(StockAdjusted {
            product_id: line.product_id.clone(),
            warehouse_id: line.warehouse_id.clone(),
            delta: -line.quantity,
            on_hand,
            reason: format!("{SOLD_REASON}{}", order.order_id),
        });
        outbox::append(tx, &order.merchant_id, now, sold).await?;
    }
    Ok(())
}
