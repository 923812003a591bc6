//! Merchants, products and stock as the orders core keeps them. Every change writes its
//! catalog or inventory event to the outbox in the same transaction.

use model::api::ErrorCode;
use model::payload::{ProductDeactivated, ProductUpserted, StockAdjusted};
use model::{Event, MerchantId, Pincode, ProductId, WarehouseId};
use sqlx::Row as _;

use crate::domain::{CancellationPolicy, StockError, StockLevel};
use crate::outbox;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct Merchant {
    pub merchant_id: MerchantId,
    pub name: String,
    /// Hyperlocal merchants deliver only within `radius_km` of this pincode.
    pub hyperlocal: Option<(Pincode, f64)>,
    pub cancellation_policy: CancellationPolicy,
}

/// A merchant's product; `listing` is exactly what `catalog.product_upserted` announces.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub merchant_id: MerchantId,
    pub listing: ProductUpserted,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("merchant {0} does not exist")]
    UnknownMerchant(MerchantId),
    /// Also what a merchant hears of another merchant's product: whether an id is someone
    /// else's is not its business.
    #[error("this shop has no product {0}")]
    UnknownProduct(ProductId),
    /// Product ids are one namespace across the platform; the owner is not named.
    #[error("product id {0} is already in use on the platform; choose another id")]
    IdTaken(ProductId),
    /// Warehouse ids too (the logistics topic is keyed by them); the owner is not named.
    #[error("warehouse id {0} is already in use on the platform; choose another id")]
    WarehouseIdTaken(WarehouseId),
    #[error("stock of {product_id}: {source}")]
    Stock {
        product_id: ProductId,
        source: StockError,
    },
}

impl From<sqlx::Error> for CatalogError {
    fn from(error: sqlx::Error) -> Self {
        CatalogError::Store(StoreError::Database(error))
    }
}

/// Creates or replaces a merchant's profile.
pub async fn upsert_merchant(
    store: &Store,
    merchant: &Merchant,
    now: i64,
) -> Result<(), CatalogError> {
    let policy = serde_json::to_string(&merchant.cancellation_policy)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (store_pincode, radius_km) = match merchant.hyperlocal {
        Some((pincode, km)) => (Some(i64::from(pincode.number())), Some(km)),
        None => (None, None),
    };
    let mut tx = store.write().await?;
    sqlx::query(
        "INSERT INTO merchants (merchant_id, name, store_pincode, radius_km, cancellation_policy, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (merchant_id) DO UPDATE SET name = excluded.name,
           store_pincode = excluded.store_pincode, radius_km = excluded.radius_km,
           cancellation_policy = excluded.cancellation_policy",
    )
    .bind(merchant.merchant_id.as_str())
    .bind(merchant.name.as_str())
    .bind(store_pincode)
    .bind(radius_km)
    .bind(policy)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates or updates a product (it becomes active) and emits `catalog.product_upserted`.
/// A new product starts with no stock at `warehouse_id`.
pub async fn upsert_product(
    store: &Store,
    product: &Product,
    warehouse_id: &WarehouseId,
    now: i64,
) -> Result<(), CatalogError> {
    let listing = &product.listing;
    let mut tx = store.write().await?;
    let owner: Option<String> =
        sqlx::query("SELECT merchant_id FROM products WHERE product_id = $1")
            .bind(listing.product_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    if owner.is_some_and(|o| o != product.merchant_id.as_str()) {
        return Err(CatalogError::IdTaken(listing.product_id.clone()));
    }
    let merchant_exists = sqlx::query("SELECT 1 FROM merchants WHERE merchant_id = $1")
        .bind(product.merchant_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !merchant_exists {
        return Err(CatalogError::UnknownMerchant(product.merchant_id.clone()));
    }
    let attributes = serde_json::to_string(&listing.attributes)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO products (product_id, merchant_id, category, brand, title, description,
           attributes, price_minor, currency, active, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)
         ON CONFLICT (product_id) DO UPDATE SET category = excluded.category,
           brand = excluded.brand, title = excluded.title, description = excluded.description,
           attributes = excluded.attributes, price_minor = excluded.price_minor,
           currency = excluded.currency, active = 1, updated_at = excluded.updated_at",
    )
    .bind(listing.product_id.as_str())
    .bind(product.merchant_id.as_str())
    .bind(listing.category.as_str())
    .bind(listing.brand.as_str())
    .bind(listing.title.as_str())
    .bind(listing.description.as_str())
    .bind(attributes)
    .bind(listing.price.amount_minor)
    .bind(listing.price.currency.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO stock (product_id, warehouse_id, on_hand, reserved) VALUES ($1, $2, 0, 0)
         ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(listing.product_id.as_str())
    .bind(warehouse_id.as_str())
    .execute(&mut *tx)
    .await?;
    let event = Event::ProductUpserted(listing.clone());
    outbox::append(&mut tx, &product.merchant_id, now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Receipts, counts and corrections: changes units on hand by `delta` and emits
/// `inventory.stock_adjusted`. Never drops below what is reserved for orders.
pub async fn adjust_stock(
    store: &Store,
    merchant_id: &MerchantId,
    product_id: &ProductId,
    delta: i64,
    reason: &str,
    now: i64,
) -> Result<StockLevel, CatalogError> {
    let mut tx = store.write().await?;
    let row = sqlx::query(
        "SELECT p.merchant_id, s.warehouse_id, s.on_hand, s.reserved
         FROM products p JOIN stock s ON s.product_id = p.product_id WHERE p.product_id = $1",
    )
    .bind(product_id.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| CatalogError::UnknownProduct(product_id.clone()))?;
    let owner: String = row.try_get(0)?;
    if owner != merchant_id.as_str() {
        return Err(CatalogError::UnknownProduct(product_id.clone()));
    }
    let warehouse_id: String = row.try_get(1)?;
    let stock_error = |source| CatalogError::Stock {
        product_id: product_id.clone(),
        source,
    };
    let level = StockLevel::from_parts(row.try_get(2)?, row.try_get(3)?)
        .map_err(stock_error)?
        .adjust(delta)
        .map_err(stock_error)?;
    sqlx::query("UPDATE stock SET on_hand = $1 WHERE product_id = $2")
        .bind(level.on_hand())
        .bind(product_id.as_str())
        .execute(&mut *tx)
        .await?;
    let event = Event::StockAdjusted(StockAdjusted {
        product_id: product_id.clone(),
        warehouse_id: WarehouseId::new(warehouse_id),
        delta,
        on_hand: level.on_hand(),
        reason: reason.to_owned(),
    });
    outbox::append(&mut tx, merchant_id, now, event).await?;
    tx.commit().await?;
    Ok(level)
}

/// Stops selling a product: it stays in the catalog for past orders, new orders refuse it,
/// and `catalog.product_deactivated` tells the search index and recommendations.
pub async fn deactivate_product(
    store: &Store,
    merchant_id: &MerchantId,
    product_id: &ProductId,
    reason: &str,
    now: i64,
) -> Result<(), CatalogError> {
    let mut tx = store.write().await?;
    let owner: String = sqlx::query("SELECT merchant_id FROM products WHERE product_id = $1")
        .bind(product_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| CatalogError::UnknownProduct(product_id.clone()))?
        .try_get(0)?;
    if owner != merchant_id.as_str() {
        return Err(CatalogError::UnknownProduct(product_id.clone()));
    }
    sqlx::query("UPDATE products SET active = 0, updated_at = $1 WHERE product_id = $2")
        .bind(now)
        .bind(product_id.as_str())
        .execute(&mut *tx)
        .await?;
    let event = Event::ProductDeactivated(ProductDeactivated {
        product_id: product_id.clone(),
        reason: reason.to_owned(),
    });
    outbox::append(&mut tx, merchant_id, now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Units of a product: on hand, reserved for placed orders, and available to sell.
pub async fn stock_level(
    store: &Store,
    product_id: &ProductId,
) -> Result<StockLevel, CatalogError> {
    let row = sqlx::query("SELECT on_hand, reserved FROM stock WHERE product_id = $1")
        .bind(product_id.as_str())
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| CatalogError::UnknownProduct(product_id.clone()))?;
    StockLevel::from_parts(row.try_get(0)?, row.try_get(1)?).map_err(|source| CatalogError::Stock {
        product_id: product_id.clone(),
        source,
    })
}

impl CatalogError {
    /// The stable machine code an HTTP shell answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CatalogError::Store(_) => ErrorCode::Internal,
            CatalogError::UnknownMerchant(_) => ErrorCode::UnknownMerchant,
            CatalogError::UnknownProduct(_) => ErrorCode::UnknownProduct,
            CatalogError::IdTaken(_) => ErrorCode::ProductIdTaken,
            CatalogError::WarehouseIdTaken(_) => ErrorCode::WarehouseIdTaken,
            CatalogError::Stock { .. } => ErrorCode::InvalidStockChange,
        }
    }
}
