//! Identifiers. Each is its own type so an order id can never be passed where a product id is
//! expected; on the wire they are plain JSON strings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps `id`; ids are opaque, so any non-empty string is accepted.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let id = String::deserialize(deserializer)?;
                if id.trim().is_empty() {
                    return Err(serde::de::Error::custom(concat!(stringify!($name), " must not be empty")));
                }
                Ok(Self(id))
            }
        }
    )*};
}

string_id! {
    /// A shop selling on the platform; every event belongs to exactly one.
    MerchantId;
    /// A catalog item (a SKU) of one merchant.
    ProductId;
    /// A buyer.
    CustomerId;
    /// One visit of a buyer's browser or app; searches and clicks are keyed by it.
    SessionId;
    OrderId;
    PaymentId;
    RefundId;
    PayoutId;
    ShipmentId;
    WarehouseId;
    CourierId;
}

/// An India Post PIN code: six digits, the first 1-9. Sent as a string because that is how
/// every Indian address form and dataset writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pincode(u32);

impl Pincode {
    /// Accepts exactly six ASCII digits not starting with 0.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let well_formed =
            bytes.len() == 6 && bytes.iter().all(u8::is_ascii_digit) && bytes[0] != b'0';
        well_formed.then(|| Self(text.parse().unwrap_or_default()))
    }

    /// Accepts a number in 100000..=999999.
    pub fn from_number(number: u32) -> Option<Self> {
        (100_000..=999_999)
            .contains(&number)
            .then_some(Self(number))
    }

    pub fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Pincode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Pincode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pincode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pincode::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid pincode {text:?}: expected six digits not starting with 0"
            ))
        })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Pincode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[1-9][0-9]{5}$"))
            .description(Some(
                "An India Post PIN code: six digits, not starting with 0.",
            ))
            .examples(["560001"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Pincode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pincode_accepts_six_digits_only() {
        assert_eq!(Pincode::parse("110001").map(Pincode::number), Some(110_001));
        for bad in ["011000", "11000", "1100011", "11000a", "", "١١٠٠٠١"] {
            assert_eq!(Pincode::parse(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn empty_ids_are_refused() {
        assert!(serde_json::from_str::<OrderId>("\"  \"").is_err());
        assert_eq!(
            serde_json::from_str::<OrderId>("\"o1\"").unwrap().as_str(),
            "o1"
        );
    }
}
