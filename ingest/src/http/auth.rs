//! API keys and the per-key token bucket. A key is `sk_` plus 32 random bytes in hex; the
//! store keeps only its SHA-256, so a leaked database leaks no usable key. Each key has a role
//! and may be bound to one merchant:
//! - admin: creates merchants and keys, acts for any merchant; never bound;
//! - merchant: one merchant's catalog, stock, fulfilment and refunds; always bound;
//! - storefront: places and reads orders and posts events; bound to one merchant for a
//!   single shop's front (Dukaan-style), unbound for a marketplace front end;
//! - collector: a publishable key shipped inside a shop's app or page: posts click and search
//!   events for its own merchant and nothing else; always bound.
//!
//! A key's id is the first 16 hex digits of its hash: enough to name it for revocation,
//! useless for calling.

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
    /// The shop front: places, pays, cancels and reads orders for buyers, and posts events.
    Storefront,
    /// Publishable: posts click and search events for its own merchant only.
    Collector,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Merchant => "merchant",
            Role::Storefront => "storefront",
            Role::Collector => "collector",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [
            Role::Admin,
            Role::Merchant,
            Role::Storefront,
            Role::Collector,
        ]
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
    /// Which orders this caller may see and change: a bound key only its merchant's.
    pub fn scope(&self) -> Scope {
        match self.bound_merchant() {
            Some(merchant_id) => Scope::Merchant(merchant_id.clone()),
            None => Scope::Any,
        }
    }

    /// The one merchant this key acts for, if it is bound to one.
    pub fn bound_merchant(&self) -> Option<&MerchantId> {
        match self.role {
            Role::Admin => None,
            Role::Merchant | Role::Storefront | Role::Collector => self.merchant_id.as_ref(),
        }
    }

    /// The key's public id.
    pub fn key_id(&self) -> &str {
        key_id(&self.key_hash)
    }
}

/// The public id of the key with this hash.
pub fn key_id(key_hash: &str) -> &str {
    key_hash.get(..16).unwrap_or(key_hash)
}

/// Where a key came from; see the `origin` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    /// `core.admin_key`.
    Config,
    /// The admin key generated into `<data_dir>/admin.key`.
    File,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Config => "config",
            Origin::File => "file",
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
    origin: Origin,
    now: i64,
) -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| StoreError::Corrupt(format!("no randomness for an API key: {e}")))?;
    let key = format!("sk_{}", hex(&secret));
    sqlx::query(
        "INSERT INTO api_keys (key_hash, key_prefix, role, merchant_id, created_at, origin)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash_key(&key))
    .bind(&key[..11])
    .bind(role.as_str())
    .bind(merchant_id.map(MerchantId::as_str))
    .bind(now)
    .bind(origin.as_str())
    .execute(store.pool())
    .await?;
    Ok(key)
}

/// Makes `key` the operator's admin key (from `origin`): registered if new, working again if
/// it was revoked, and every other admin key the operator configured or had generated is
/// revoked, so a replaced `core.admin_key` stops working. Keys made through the API stay.
pub async fn install_admin_key(
    store: &Store,
    key: &str,
    origin: Origin,
    now: i64,
) -> Result<(), StoreError> {
    let key_hash = hash_key(key);
    let mut tx = store.write().await?;
    sqlx::query(
        "UPDATE api_keys SET revoked_at = $1
         WHERE role = 'admin' AND origin IN ('config', 'file')
           AND key_hash <> $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&key_hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO api_keys (key_hash, key_prefix, role, merchant_id, created_at, origin)
         VALUES ($1, $2, 'admin', NULL, $3, $4)
         ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, origin = $4",
    )
    .bind(&key_hash)
    .bind(key.chars().take(11).collect::<String>())
    .bind(now)
    .bind(origin.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes the key `key_id` (admin: any key; otherwise only keys bound to the caller's own
/// merchant). False when there is no such key the caller may revoke.
pub async fn revoke(
    store: &Store,
    key_id: &str,
    caller: &Caller,
    now: i64,
) -> Result<bool, StoreError> {
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let key_id = key_id.to_ascii_lowercase();
    let revoked = match caller.bound_merchant() {
        None if caller.role == Role::Admin => {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $1
                 WHERE substr(key_hash, 1, 16) = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&key_id)
            .execute(store.pool())
            .await?
        }
        Some(merchant_id) => {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $1
                 WHERE substr(key_hash, 1, 16) = $2 AND revoked_at IS NULL AND merchant_id = $3",
            )
            .bind(now)
            .bind(&key_id)
            .bind(merchant_id.as_str())
            .execute(store.pool())
            .await?
        }
        None => return Ok(false),
    };
    Ok(revoked.rows_affected() > 0)
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
        self.take_n(key_hash, 1, now)
    }

    /// Takes `n` tokens at once (a collector batch counts its lines); none are taken when
    /// fewer are left. A batch larger than the burst is let through from a full bucket and
    /// leaves it in debt, so the key then waits as long as the batch's size asks.
    pub fn take_n(&self, key_hash: &str, n: usize, now: Instant) -> Result<(), u64> {
        let n = n as f64;
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
        if bucket.tokens >= n.min(burst) {
            bucket.tokens -= n;
            return Ok(());
        }
        let wait = if per_second > 0.0 {
            (n.min(burst) - bucket.tokens) / per_second
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
    fn a_batch_over_the_burst_goes_through_once_and_leaves_the_key_in_debt() {
        let limiter = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 5.0,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.take_n("k", 25, t0), Ok(()));
        // 20 tokens in debt: two seconds before one is back, and another batch waits.
        assert_eq!(limiter.take_n("k", 1, t0), Err(3));
        assert_eq!(
            limiter.take_n("k", 1, t0 + Duration::from_millis(2_100)),
            Ok(())
        );
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
