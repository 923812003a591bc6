//! Deliverability as other stages ask for it: "can this product reach this pincode, and by
//! when?". Search and recommendations filter by it in-process through this trait, which the
//! binary injects; they never see how the serviceability stage answers.

use serde::Serialize;

use crate::calendar::IstDate;
use crate::{Pincode, ProductId};

/// Why an item cannot be delivered; on the wire as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Undeliverable {
    /// No warehouse holds enough free units.
    NoStock,
    /// No courier picks up where the stock is and delivers to the pincode.
    NotServiceable,
    /// Only hyperlocal stores hold it, and the pincode is beyond their radius.
    OutsideRadius,
    /// The pincode is not in India Post's directory.
    UnknownPincode,
}

impl Undeliverable {
    pub fn code(self) -> &'static str {
        match self {
            Undeliverable::NoStock => "no_stock",
            Undeliverable::NotServiceable => "not_serviceable",
            Undeliverable::OutsideRadius => "outside_radius",
            Undeliverable::UnknownPincode => "unknown_pincode",
        }
    }
}

pub trait Deliverability: Send + Sync + std::fmt::Debug {
    /// The earliest day (IST) `quantity` units of `product` can be delivered to `pincode` for
    /// an order placed at `order_time` (UTC milliseconds), or why they cannot.
    fn deliver_by(
        &self,
        product: &ProductId,
        quantity: u32,
        pincode: Pincode,
        order_time: i64,
    ) -> Result<IstDate, Undeliverable>;
}
