//! Payloads of what buyers do in a session: searches and clicks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CustomerId, Pincode, ProductId, SessionId};

/// A search and exactly what it showed, in order, so click-through can be measured by
/// position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPerformed {
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub query: String,
    pub filters: BTreeMap<String, String>,
    pub pincode: Option<Pincode>,
    pub results: Vec<ProductId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductViewed {
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub product_id: ProductId,
}

/// A click on a result list; `position` is 0-based in the list the `query` showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductClicked {
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub product_id: ProductId,
    pub position: u32,
    pub query: String,
}

/// Added to or removed from the cart (the event type says which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartChanged {
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub product_id: ProductId,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wishlisted {
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub product_id: ProductId,
}
