//! Warehouses as merchants register them. The core keeps each in its store and publishes the
//! same change, in the same transaction, to the compacted logistics topic, where the
//! serviceability stage (and any restart of it) reads the delivery network from.

use model::payload::WarehouseUpserted;
use model::{Event, MerchantId};
use sqlx::Row as _;

use crate::catalog::CatalogError;
use crate::outbox;
use crate::store::{Store, StoreError};

/// Registers or changes one of `merchant_id`'s warehouses and emits
/// `logistics.warehouse_upserted`. Warehouse ids are one namespace on the platform (the
/// topic is keyed by them), so another merchant's id is refused without naming its owner.
pub async fn upsert_warehouse(
    store: &Store,
    merchant_id: &MerchantId,
    warehouse: &WarehouseUpserted,
    now: i64,
) -> Result<(), CatalogError> {
    let body = serde_json::to_string(warehouse).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut tx = store.write().await?;
    let owner: Option<String> =
        sqlx::query("SELECT merchant_id FROM warehouses WHERE warehouse_id = $1")
            .bind(warehouse.warehouse_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    if owner.is_some_and(|owner| owner != merchant_id.as_str()) {
        return Err(CatalogError::WarehouseIdTaken(
            warehouse.warehouse_id.clone(),
        ));
    }
    let merchant_exists = sqlx::query("SELECT 1 FROM merchants WHERE merchant_id = $1")
        .bind(merchant_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !merchant_exists {
        return Err(CatalogError::UnknownMerchant(merchant_id.clone()));
    }
    sqlx::query(
        "INSERT INTO warehouses (warehouse_id, merchant_id, body, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (warehouse_id) DO UPDATE SET body = excluded.body,
           updated_at = excluded.updated_at",
    )
    .bind(warehouse.warehouse_id.as_str())
    .bind(merchant_id.as_str())
    .bind(body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let event = Event::WarehouseUpserted(warehouse.clone());
    outbox::append(&mut tx, merchant_id, now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// `merchant_id`'s warehouses, by id.
pub async fn warehouses(
    store: &Store,
    merchant_id: &MerchantId,
) -> Result<Vec<WarehouseUpserted>, CatalogError> {
    let rows =
        sqlx::query("SELECT body FROM warehouses WHERE merchant_id = $1 ORDER BY warehouse_id")
            .bind(merchant_id.as_str())
            .fetch_all(store.pool())
            .await?;
    rows.iter()
        .map(|row| {
            let body: String = row.try_get(0)?;
            serde_json::from_str(&body)
                .map_err(|e| CatalogError::Store(StoreError::Corrupt(format!("warehouse: {e}"))))
        })
        .collect()
}
