//! The transactional outbox: events are rows written in the same transaction as the business
//! rows they describe, so an event exists exactly when its change committed. The relay (next
//! step) publishes them in `seq` order with the idempotent producer and stamps `sent_at`; a
//! re-publish after a crash carries the same `event_id`, so consumers drop it.

use model::{Envelope, Event, MerchantId};
use sqlx::{Any, Transaction};

use crate::store::StoreError;

/// Appends one event for `merchant_id` at `event_time` (UTC ms) inside `tx`.
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    merchant_id: &MerchantId,
    event_time: i64,
    event: Event,
) -> Result<Envelope, StoreError> {
    let envelope = Envelope::new(uuid::Uuid::now_v7(), event_time, merchant_id.clone(), event);
    let encoded = model::codec::encode(&envelope);
    // Checked here, inside the transaction: a row the relay could never publish would hold up
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
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, partition_key, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(envelope.event_id.to_string())
    .bind(envelope.topic().name())
    .bind(envelope.key().to_owned())
    .bind(payload)
    .bind(event_time)
    .execute(&mut **tx)
    .await?;
    Ok(envelope)
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
