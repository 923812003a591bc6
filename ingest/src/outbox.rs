//! The transactional outbox: events are rows written in the same transaction as the business
//! rows they describe, so an event exists exactly when its change committed. The relay (next
//! step) publishes them in `seq` order with the idempotent producer and stamps `sent_at`; a
//! re-publish after a crash carries the same `event_id`, so consumers drop it.

use model::{Envelope, Event, MerchantId};
use sqlx::{Any, Transaction};

use crate::store::{Insert, Statement, StoreError};

/// An outbox row, encoded and size-checked, not yet written.
#[derive(Debug, Clone)]
pub struct Row {
    pub envelope: Envelope,
    payload: String,
}

/// Encodes `event` for `merchant_id` at `event_time` (UTC ms) as an outbox row, refusing one
/// that would not fit a Kafka message.
pub fn encode(merchant_id: &MerchantId, event_time: i64, event: Event) -> Result<Row, StoreError> {
    let envelope = Envelope::new(uuid::Uuid::now_v7(), event_time, merchant_id.clone(), event);
    let encoded = model::codec::encode(&envelope);
    // Refused before anything is written: a row the relay could never publish would hold up
    // every event behind it.
    if encoded.len() > model::limits::MAX_EVENT_BYTES {
        return Err(StoreError::EventTooLarge {
            event: envelope.event_type().to_string(),
            bytes: encoded.len(),
            limit: model::limits::MAX_EVENT_BYTES,
        });
    }
    let payload = String::from_utf8(encoded)
        .map_err(|e| StoreError::Corrupt(format!("encoded event is not UTF-8: {e}")))?;
    Ok(Row { envelope, payload })
}

/// Writes `rows` inside `tx` in one statement, in their order (the relay publishes by `seq`).
pub async fn insert(tx: &mut Transaction<'static, Any>, rows: &[Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = insert_rows(1, rows.len()).sql();
    bind(sqlx::query(&sql), rows).execute(&mut **tx).await?;
    Ok(())
}

/// The INSERT of `rows` outbox rows with parameters numbered from `$first`; [`bind`] binds
/// them. For a statement that writes the outbox together with other tables.
pub fn insert_rows(first: usize, rows: usize) -> Insert {
    Insert::rows(
        "outbox (event_id, topic, partition_key, payload, created_at)",
        first,
        rows,
        5,
    )
}

/// Binds `rows` in the order [`insert_rows`] numbers them.
pub fn bind<'q>(mut statement: Statement<'q>, rows: &'q [Row]) -> Statement<'q> {
    for row in rows {
        statement = statement
            .bind(row.envelope.event_id.to_string())
            .bind(row.envelope.topic().name())
            .bind(row.envelope.key())
            .bind(row.payload.as_str())
            .bind(row.envelope.event_time);
    }
    statement
}

/// Appends one event for `merchant_id` at `event_time` (UTC ms) inside `tx`.
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    merchant_id: &MerchantId,
    event_time: i64,
    event: Event,
) -> Result<Envelope, StoreError> {
    let row = encode(merchant_id, event_time, event)?;
    insert(tx, std::slice::from_ref(&row)).await?;
    Ok(row.envelope)
}

/// Appends a record that is not an event (an API key's state on its reference topic) inside
/// `tx`: the relay publishes it like any other row, keyed by `key`.
pub async fn append_record(
    tx: &mut Transaction<'static, Any>,
    topic: model::Topic,
    key: &str,
    payload: &[u8],
    created_at: i64,
) -> Result<(), StoreError> {
    let payload = String::from_utf8(payload.to_vec())
        .map_err(|e| StoreError::Corrupt(format!("{topic} record is not UTF-8: {e}")))?;
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, partition_key, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(topic.name())
    .bind(key)
    .bind(payload)
    .bind(created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
