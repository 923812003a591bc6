//! The one auth layer: `Authorization: Bearer <key>` becomes a [`Caller`] (role, bound
//! merchant, key hash) on any stage's route. Where keys are looked up is injected
//! ([`Keys`]): the orders core asks its database; a stage in a process of its own follows the
//! `api-keys` topic ([`crate::keys::KeyTable`]). Every call takes a token from its key's
//! bucket, and an address that keeps sending unknown keys is refused before any lookup (the
//! front door's per-address bucket, charged per failed check).
//!
//! A key's id is the first 16 hex digits of its SHA-256: enough to name it for revocation,
//! useless for calling.
//!
//! A browser signed in to the dashboards carries no key: the front door resolves its session
//! cookie through [`BrowserSessions`] and the extractor accepts that caller for reads (GET and
//! HEAD) only. A cookie rides along on any cross-site form; a key never does, so every write
//! still needs one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use futures::future::BoxFuture;
use model::MerchantId;
use model::api::ErrorCode;
pub use model::keys::Role;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::ApiError;
use super::front::{AddressLimiter, ClientAddress};

/// Who is calling, from their API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub merchant_id: Option<MerchantId>,
    /// The SHA-256 of the key: names the caller for rate limits and idempotency keys.
    pub key_hash: String,
}

impl Caller {
    /// The one merchant this key acts for, if it is bound to one.
    pub fn bound_merchant(&self) -> Option<&MerchantId> {
        match self.role {
            Role::Admin => None,
            Role::Merchant | Role::Storefront | Role::Collector => self.merchant_id.as_ref(),
        }
    }

    /// Whether this caller may read `merchant_id`'s shop data: that shop's merchant key, or
    /// an admin key. `what` names the data in the refusal (`analytics`, `exports`).
    pub fn may_read_shop(&self, merchant_id: &str, what: &str) -> Result<(), ApiError> {
        match (self.role, self.merchant_id.as_ref()) {
            (Role::Admin, _) => Ok(()),
            (Role::Merchant, Some(own)) if own.as_str() == merchant_id => Ok(()),
            (Role::Merchant, _) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a merchant key sees only its own shop's {what}"),
            )),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{what} need a merchant or admin key"),
            )),
        }
    }

    /// The key's public id.
    pub fn key_id(&self) -> &str {
        key_id(&self.key_hash)
    }

    /// Refuses this caller unless its role is among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this call needs a {} key", allowed.join(" or ")),
        ))
    }
}

/// The public id of the key with this hash.
pub fn key_id(key_hash: &str) -> &str {
    key_hash.get(..16).unwrap_or(key_hash)
}

/// Lower-case hex SHA-256 of `key`: all that is stored or published of a key.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a key could not be looked up (not: why it was refused).
#[derive(Debug, thiserror::Error)]
#[error("API keys cannot be looked up: {0}")]
pub struct KeysUnavailable(pub String);

/// Where a stage finds the caller owning a key hash; `None` for an unknown or revoked key.
pub trait Keys: Send + Sync + 'static {
    fn find<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Caller>, KeysUnavailable>>;
}

/// A signed-in browser's caller, put into a request's extensions by the front door when the
/// request is a read without a key and its cookie names a live session.
#[derive(Debug, Clone)]
pub struct SessionCaller(pub Caller);

/// Where the front door finds who a browser's cookies sign in as (the dashboards' sessions,
/// injected by the binary).
pub trait BrowserSessions: Send + Sync + std::fmt::Debug + 'static {
    /// The caller a `Cookie` header signs in as, if it carries a live session.
    fn caller<'a>(&'a self, cookie_header: &'a str) -> BoxFuture<'a, Option<Caller>>;
}

/// Whether a request may be answered on a browser session instead of a key.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// What the [`Caller`] extractor needs from a stage's state.
#[derive(Clone)]
pub struct Authenticator {
    pub keys: Arc<dyn Keys>,
    pub limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Authenticator::from_ref(state);
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(key) = key else {
            let signed_in = parts
                .extensions
                .get::<SessionCaller>()
                .filter(|_| is_read(&parts.method));
            return match signed_in {
                Some(SessionCaller(caller)) => {
                    take_token(&auth.limiter, &caller.key_hash)?;
                    Ok(caller.clone())
                }
                None => Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "send your API key as `Authorization: Bearer sk_...`",
                )),
            };
        };
        let guard = match (
            parts.extensions.get::<AddressLimiter>(),
            parts.extensions.get::<ClientAddress>(),
        ) {
            (Some(limiter), Some(address)) => Some((limiter.clone(), address.0.ip())),
            _ => None,
        };
        if let Some((limiter, address)) = &guard {
            limiter.refuse_if_blocked(*address)?;
        }
        let found = auth.keys.find(&hash_key(key)).await.map_err(|error| {
            ApiError::new(ErrorCode::Unavailable, error.to_string()).retry_after(1)
        })?;
        let Some(caller) = found else {
            if let Some((limiter, address)) = &guard {
                limiter.charge_failure(*address)?;
            }
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "unknown or revoked API key",
            ));
        };
        take_token(&auth.limiter, &caller.key_hash)?;
        Ok(caller)
    }
}

fn take_token(limiter: &Limiter, key_hash: &str) -> Result<(), ApiError> {
    limiter.take(key_hash, Instant::now()).map_err(|wait| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests; retry in {wait} s"),
        )
        .retry_after(wait)
    })
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

/// Buckets held before the full (idle) ones are dropped.
const BUCKETS_BEFORE_PRUNING: usize = 10_000;

/// One token bucket per key hash. Hand-kept rather than governor's: a collector batch takes
/// one token per line and may leave its key in debt, which governor's buckets cannot express.
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
        // Memory follows the callers that are active: past the bound, buckets that have
        // refilled (their callers idle) are dropped, as a fresh bucket is full anyway.
        if buckets.len() >= BUCKETS_BEFORE_PRUNING && !buckets.contains_key(key_hash) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * per_second
                    < burst
            });
        }
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
    fn idle_buckets_are_dropped_once_there_are_many() {
        let limiter = Limiter::new(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.take("busy", t0), Ok(()));
        assert_eq!(limiter.take("busy", t0), Ok(()));
        for i in 0..BUCKETS_BEFORE_PRUNING {
            assert_eq!(limiter.take(&format!("k{i}"), t0), Ok(()));
        }
        // 1.5 s on, every bucket but the emptied one has refilled: all go but it.
        let later = t0 + Duration::from_millis(1_500);
        assert_eq!(limiter.take("new", later), Ok(()));
        let held = limiter.buckets.lock().expect("lock").len();
        assert!(held < 10, "{held} buckets held");
        assert_eq!(limiter.take("busy", later), Ok(()));
        assert_eq!(
            limiter.take("busy", later),
            Err(1),
            "the busy bucket was kept"
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
        assert_eq!(key_id(&hash), &hash[..16]);
    }
}
