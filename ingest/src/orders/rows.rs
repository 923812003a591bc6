//! The rows an order writes besides its stock: its remembered answer, the order, its lines.
//! Each as an [`Insert`] numbered from any `$n` plus the binding of its parameters in that
//! order, so that one write can run them as statements of their own (SQLite) or as parts of
//! one statement (PostgreSQL, see `write` in the parent module).

use crate::store::{Insert, Statement, StoreError};

use super::{Idempotency, OrderError, OrderStatus, PlaceOrder, PlacedOrder, end_of_day};

/// The answer remembered under an idempotency key.
pub(super) fn remembered_answer(first: usize) -> Insert {
    Insert::rows(
        "idempotency_keys (scope, idempotency_key, request_hash, response, created_at)",
        first,
        1,
        5,
    )
}

pub(super) fn bind_remembered_answer<'q>(
    statement: Statement<'q>,
    idem: &'q Idempotency,
    response: &'q str,
    now: i64,
) -> Statement<'q> {
    statement
        .bind(idem.scope.as_str())
        .bind(idem.key.as_str())
        .bind(idem.request_hash.as_str())
        .bind(response)
        .bind(now)
}

/// What [`remembered_answer`] stores: the answer as JSON.
pub(super) fn response(answer: &PlacedOrder) -> Result<String, OrderError> {
    serde_json::to_string(answer).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

/// The order row.
pub(super) fn order(first: usize) -> Insert {
    let n: Vec<String> = (first..first + 13).map(|n| format!("${n}")).collect();
    // `updated_at` is `placed_at` when placed: the 11th parameter twice.
    let values = format!(
        "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], n[11], n[10], n[12]
    );
    Insert::values(
        "orders (order_id, merchant_id, customer_id, status, delivery_pincode, currency,
           taxable_minor, gst_minor, total_minor, fx, placed_at, reservation_expires_at,
           updated_at, promised_at)",
        values,
        13,
    )
}

pub(super) fn bind_order<'q>(
    statement: Statement<'q>,
    request: &'q PlaceOrder,
    answer: &'q PlacedOrder,
    now: i64,
) -> Result<Statement<'q>, OrderError> {
    let totals = &answer.totals;
    let fx = totals
        .fx
        .map(|rate| serde_json::to_string(&rate))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(statement
        .bind(answer.order_id.as_str())
        .bind(request.merchant_id.as_str())
        .bind(request.customer_id.as_str())
        .bind(OrderStatus::Placed.as_str())
        .bind(i64::from(request.delivery_pincode.number()))
        .bind(request.currency.as_str())
        .bind(totals.taxable.amount_minor)
        .bind(totals.gst.amount_minor)
        .bind(totals.total.amount_minor)
        .bind(fx)
        .bind(now)
        .bind(answer.reservation_expires_at)
        .bind(answer.deliver_by.map(end_of_day)))
}

/// All the order's lines, one statement whatever their number.
pub(super) fn lines(first: usize, lines: usize) -> Insert {
    Insert::rows(
        "order_lines (order_id, line_no, product_id, quantity, unit_price_minor, gross_minor,
           taxable_minor, gst_minor, gst_bps)",
        first,
        lines,
        9,
    )
}

pub(super) fn bind_lines<'q>(
    mut statement: Statement<'q>,
    request: &'q PlaceOrder,
    answer: &'q PlacedOrder,
) -> Statement<'q> {
    for (line_no, (priced, requested)) in answer.totals.lines.iter().zip(&request.lines).enumerate()
    {
        statement = statement
            .bind(answer.order_id.as_str())
            .bind(i64::try_from(line_no).unwrap_or(i64::MAX))
            .bind(requested.product_id.as_str())
            .bind(i64::from(priced.quantity))
            .bind(priced.unit_price.amount_minor)
            .bind(priced.gross.amount_minor)
            .bind(priced.taxable.amount_minor)
            .bind(priced.gst.amount_minor)
            .bind(i64::from(priced.gst_bps));
    }
    statement
}
