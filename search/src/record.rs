//! A product as search holds it, and how catalog and inventory events change it: the pure
//! fold the index job applies before writing documents.

use std::collections::BTreeMap;

use model::{Envelope, Event, MerchantId, Money, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};

/// Everything search knows of one product; stored whole in its document so a stock change
/// can rewrite the document without the catalog event that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub product_id: ProductId,
    pub merchant_id: MerchantId,
    pub title: String,
    pub brand: String,
    pub category: String,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
    pub price: Money,
    /// Event time of the first upsert seen: what `sort=newest` orders by.
    pub created_ms: i64,
    /// Units on hand per warehouse, from the last stock adjustment of each.
    pub on_hand: BTreeMap<WarehouseId, i64>,
}

impl ProductRecord {
    /// In stock when some warehouse has a unit on hand. A reservation does not take a product
    /// out of search: it is released as often as it turns into a sale, and the sale itself
    /// arrives as a stock adjustment.
    pub fn in_stock(&self) -> bool {
        self.on_hand.values().any(|units| *units > 0)
    }
}

/// What one event does to the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write this document (replacing the product's previous one).
    Put(ProductRecord),
    /// Remove the product from search.
    Delete(ProductId),
    /// Stock for a product search has not seen yet: kept until its upsert arrives.
    Orphan {
        product_id: ProductId,
        warehouse_id: WarehouseId,
        on_hand: i64,
    },
    /// Nothing search shows changed.
    None,
}

/// Why an event cannot be indexed: the DLQ reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// What `envelope` does to the product it names, given the product's current record (if
/// search holds it) and stock that arrived before the product did.
pub fn fold(
    current: Option<&ProductRecord>,
    orphan_stock: Option<&BTreeMap<WarehouseId, i64>>,
    envelope: &Envelope,
) -> Result<Change, Invalid> {
    match &envelope.event {
        Event::ProductUpserted(p) => {
            if p.title.trim().is_empty() {
                return Err(Invalid(format!(
                    "product {} has an empty title",
                    p.product_id
                )));
            }
            if p.price.amount_minor < 0 {
                return Err(Invalid(format!(
                    "product {} has a negative price",
                    p.product_id
                )));
            }
            if let Some(current) = current
                && current.merchant_id != envelope.merchant_id
            {
                return Err(Invalid(format!(
                    "product {} belongs to {}, not {}",
                    p.product_id, current.merchant_id, envelope.merchant_id
                )));
            }
            let on_hand = current
                .map(|c| c.on_hand.clone())
                .or_else(|| orphan_stock.cloned())
                .unwrap_or_default();
            Ok(Change::Put(ProductRecord {
                product_id: p.product_id.clone(),
                merchant_id: envelope.merchant_id.clone(),
                title: p.title.clone(),
                brand: p.brand.clone(),
                category: p.category.clone(),
                description: p.description.clone(),
                attributes: p.attributes.clone(),
                price: p.price,
                created_ms: current.map_or(envelope.event_time, |c| c.created_ms),
                on_hand,
            }))
        }
        Event::ProductDeactivated(p) => Ok(match current {
            Some(_) => Change::Delete(p.product_id.clone()),
            None => Change::None,
        }),
        Event::StockAdjusted(s) => Ok(match current {
            Some(current) if current.on_hand.get(&s.warehouse_id) == Some(&s.on_hand) => {
                Change::None
            }
            Some(current) => {
                let mut next = current.clone();
                next.on_hand.insert(s.warehouse_id.clone(), s.on_hand);
                Change::Put(next)
            }
            None => Change::Orphan {
                product_id: s.product_id.clone(),
                warehouse_id: s.warehouse_id.clone(),
                on_hand: s.on_hand,
            },
        }),
        _ => Ok(Change::None),
    }
}
