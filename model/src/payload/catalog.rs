use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Money, ProductId};

/// A product was created or changed; the latest upsert per product is its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpserted {
    pub product_id: ProductId,
    pub category: String,
    pub brand: String,
    pub title: String,
    pub description: String,
    /// Category-specific attributes (size, colour, RAM, fabric...), as the category's
    /// attribute schema names them.
    pub attributes: BTreeMap<String, String>,
    pub price: Money,
}

/// A product stopped being sellable; it stays in history but leaves search and trending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductDeactivated {
    pub product_id: ProductId,
    pub reason: String,
}
