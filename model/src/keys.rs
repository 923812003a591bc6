//! API keys as every stage sees them. The orders core owns keys (it creates, binds and revokes
//! them in its database) and publishes each change as a [`KeyRecord`] on the compacted
//! `api-keys` topic, keyed by the key's SHA-256, in the same transaction as the change (through
//! its outbox). A stage in a process of its own follows the topic, so it accepts the same keys
//! without a database connection; only hashes travel, never a usable key.

use serde::{Deserialize, Serialize};

use crate::MerchantId;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Creates merchants and keys; may act for any merchant.
    Admin,
    /// Manages one merchant's catalog, stock and fulfilment.
    Merchant,
    /// The shop front: places, pays, cancels and reads orders for buyers, and posts events.
    Storefront,
    /// Publishable: posts click and search events for its own merchant only.
    Collector,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Merchant,
        Role::Storefront,
        Role::Collector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Merchant => "merchant",
            Role::Storefront => "storefront",
            Role::Collector => "collector",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// One key's current state, the value of its record on the `api-keys` topic (the record key is
/// `key_hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Lower-case hex SHA-256 of the key.
    pub key_hash: String,
    pub role: Role,
    /// The merchant the key acts for; none for admin and marketplace storefront keys.
    pub merchant_id: Option<MerchantId>,
    /// A revoked key authenticates nobody; the record stays so every follower learns it.
    pub revoked: bool,
}

impl KeyRecord {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and a bool always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<KeyRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_unknown_fields_are_refused() {
        let record = KeyRecord {
            key_hash: "ab".repeat(32),
            role: Role::Storefront,
            merchant_id: Some(MerchantId::new("m-1")),
            revoked: false,
        };
        assert_eq!(KeyRecord::decode(&record.encode()).ok(), Some(record));
        assert!(
            KeyRecord::decode(br#"{"key_hash":"x","role":"admin","merchant_id":null,"revoked":false,"key":"sk_"}"#)
                .is_err()
        );
        assert!(
            KeyRecord::decode(
                br#"{"key_hash":"x","role":"root","merchant_id":null,"revoked":false}"#
            )
            .is_err()
        );
    }
}
