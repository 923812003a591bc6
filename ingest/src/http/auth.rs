//! API keys and the per-key token bucket. A key is `sk_` plus 32 random bytes in hex; the
//! store keeps only its SHA-256, so a leaked database leaks no usable key. Each key has a role
//! (admin, merchant, storefront) and a merchant key is bound to one merchant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use model::MerchantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::lifecycle::Scope;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum Role {
    /// Creates merchants and keys; may act for any merchant.
    Admin,
    /// Manages one merchant's catalog, stock and fulfilment.
    Merchant,
    /// The shop front: places, pays, cancels and reads orders for buyers.
    Storefront,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Merchant => "merchant",
            Role::Storefront => "storefront",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::Merchant, Role::Storefront]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// Who is calling, from their API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub merchant_id: Option<MerchantId>,
    /// The SHA-256 of the key: names the caller for rate limits and idempotency keys.
    pub key_hash: String,
}

impl Caller {
    /// Which orders this caller may see and change.
    pub fn scope(&self) -> Scope {
        match (&self.role, &self.merchant_id) {
            (Role::Merchant, Some(merchant_id)) => Scope::Merchant(merchant_id.clone()),
            _ => Scope::Any,
        }
    }
}

pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a key with `role` (bound to `merchant_id` for merchant keys) and returns it; this
/// is the only time the key itself exists outside the caller.
pub async fn create_key(
    store: &Store,
    role: Role,
    merchant_id: Option<&MerchantId>,
    now: i64,
) -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| StoreError::Corrupt(format!("no randomness for an API key: {e}")))?;
    let key = format!("sk_{}", hex(&secret));
    sqlx::query(
        "INSERT INTO api_keys (key_hash, key_prefix, role, merchant_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_key(&key))
    .bind(&key[..11])
    .bind(role.as_str())
    .bind(merchant_id.map(MerchantId::as_str))
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(key)
}

/// Registers a key the operator chose (the configured admin key) if it is not known yet.
pub async fn ensure_key(store: &Store, key: &str, role: Role, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (key_hash, key_prefix, role, merchant_id, created_at)
         VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (key_hash) DO NOTHING",
    )
    .bind(hash_key(key))
    .bind(key.chars().take(11).collect::<String>())
    .bind(role.as_str())
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The caller owning `key`, or None for an unknown or revoked key.
pub async fn lookup(store: &Store, key: &str) -> Result<Option<Caller>, StoreError> {
    let key_hash = hash_key(key);
    let Some(row) = sqlx::query(
        "SELECT role, merchant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&key_hash)
    .fetch_optional(store.pool())
    .await?
    else {
        return Ok(None);
    };
    let role: String = row.try_get(0)?;
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("api key role {role:?}")))?;
    let merchant_id: Option<String> = row.try_get(1)?;
    Ok(Some(Caller {
        role,
        merchant_id: merchant_id.map(MerchantId::new),
        key_hash,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Requests per second each key may make on average.
    pub per_second: f64,
    /// How many requests a key may make at once after being idle.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 200.0,
            burst: 400.0,
        }
    }
}

/// One token bucket per key hash.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key_hash` at `now`; when none is left, how many seconds until one is.
    pub fn take(&self, key_hash: &str, now: Instant) -> Result<(), u64> {
        let RateLimit { per_second, burst } = self.limit;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let bucket = buckets.entry(key_hash.to_owned()).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if per_second > 0.0 {
            (1.0 - bucket.tokens) / per_second
        } else {
            f64::from(u32::MAX)
        };
        // Retry-After is whole seconds; rounding up never invites an early retry.
        Err(wait.ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = Limiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("k", t0), Ok(()));
        }
        assert_eq!(limiter.take("k", t0), Err(1));
        assert_eq!(
            limiter.take("other", t0),
            Ok(()),
            "keys have their own buckets"
        );
        assert_eq!(limiter.take("k", t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(limiter.take("k", t0 + Duration::from_millis(500)), Err(1));
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait() {
        let limiter = Limiter::new(RateLimit {
            per_second: 0.1,
            burst: 1.0,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.take("k", t0), Ok(()));
        assert_eq!(limiter.take("k", t0), Err(10));
    }

    #[test]
    fn keys_are_stored_as_hashes() {
        let hash = hash_key("sk_abc");
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, "sk_abc");
        assert_eq!(hash, hash_key("sk_abc"));
    }
}
