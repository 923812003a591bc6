//! API keys in the orders core's database. A key is `sk_` plus 32 random bytes in hex; the
//! store keeps only its SHA-256, so a leaked database leaks no usable key. Each key has a role
//! and may be bound to one merchant:
//! - admin: creates merchants and keys, acts for any merchant; never bound;
//! - merchant: one merchant's catalog, stock, fulfilment and refunds; always bound;
//! - storefront: places and reads orders and posts events; bound to one merchant for a
//!   single shop's front (Dukaan-style), unbound for a marketplace front end;
//! - collector: a publishable key shipped inside a shop's app or page: posts click and search
//!   events for its own merchant and nothing else; always bound.
//!
//! Every change is also appended to the outbox as the key's [`KeyRecord`] on the `api-keys`
//! topic, in the same transaction, so stages in other processes accept exactly the keys this
//! database does (see [`runtime::keys`]). The caller extractor, roles and the per-key bucket
//! are the runtime's ([`runtime::http::auth`]).

use futures::FutureExt as _;
use futures::future::BoxFuture;
use model::keys::KeyRecord;
use model::{MerchantId, Topic};
pub use runtime::http::auth::{Caller, Limiter, RateLimit, Role, hash_key, key_id};
use runtime::http::auth::{Keys, KeysUnavailable};
use sqlx::{Any, Row as _, Transaction};

use crate::lifecycle::Scope;
use crate::store::{Store, StoreError};

/// Which orders a caller may see and change: a bound key only its merchant's.
pub trait CallerScope {
    fn scope(&self) -> Scope;
}

impl CallerScope for Caller {
    fn scope(&self) -> Scope {
        match self.bound_merchant() {
            Some(merchant_id) => Scope::Merchant(merchant_id.clone()),
            None => Scope::Any,
        }
    }
}

/// The core's keys: its database, which is always current.
#[derive(Debug, Clone)]
pub struct StoreKeys(pub Store);

impl Keys for StoreKeys {
    fn find<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Caller>, KeysUnavailable>> {
        async move {
            lookup_hash(&self.0, key_hash)
                .await
                .map_err(|error| KeysUnavailable(error.to_string()))
        }
        .boxed()
    }
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
    let key_hash = hash_key(&key);
    let mut tx = store.write().await?;
    sqlx::query(
        "INSERT INTO api_keys (key_hash, key_prefix, role, merchant_id, created_at, origin)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key_hash)
    .bind(&key[..11])
    .bind(role.as_str())
    .bind(merchant_id.map(MerchantId::as_str))
    .bind(now)
    .bind(origin.as_str())
    .execute(&mut *tx)
    .await?;
    publish(&mut tx, &[key_hash], now).await?;
    tx.commit().await?;
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
    let mut changed = hashes(
        &mut tx,
        "SELECT key_hash FROM api_keys
         WHERE role = 'admin' AND origin IN ('config', 'file')
           AND key_hash <> $1 AND revoked_at IS NULL",
        &[&key_hash],
    )
    .await?;
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
    changed.push(key_hash);
    publish(&mut tx, &changed, now).await?;
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
    let mut tx = store.write().await?;
    let revoked = match caller.bound_merchant() {
        None if caller.role == Role::Admin => {
            hashes(
                &mut tx,
                "SELECT key_hash FROM api_keys
                 WHERE substr(key_hash, 1, 16) = $1 AND revoked_at IS NULL",
                &[&key_id],
            )
            .await?
        }
        Some(merchant_id) => {
            hashes(
                &mut tx,
                "SELECT key_hash FROM api_keys
                 WHERE substr(key_hash, 1, 16) = $1 AND revoked_at IS NULL AND merchant_id = $2",
                &[&key_id, merchant_id.as_str()],
            )
            .await?
        }
        None => return Ok(false),
    };
    for key_hash in &revoked {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_hash = $2")
            .bind(now)
            .bind(key_hash)
            .execute(&mut *tx)
            .await?;
    }
    publish(&mut tx, &revoked, now).await?;
    tx.commit().await?;
    Ok(!revoked.is_empty())
}

/// Appends the record of every key not yet published (made before the `api-keys` topic
/// existed) to the outbox; the core runs this at start. Returns how many.
pub async fn publish_unpublished(store: &Store, now: i64) -> Result<usize, StoreError> {
    let mut tx = store.write().await?;
    let all = hashes(
        &mut tx,
        "SELECT key_hash FROM api_keys WHERE published = 0",
        &[],
    )
    .await?;
    publish(&mut tx, &all, now).await?;
    tx.commit().await?;
    Ok(all.len())
}

/// Appends the current state of each key in `key_hashes` to the outbox, inside `tx`.
async fn publish(
    tx: &mut Transaction<'static, Any>,
    key_hashes: &[String],
    now: i64,
) -> Result<(), StoreError> {
    for key_hash in key_hashes {
        let row =
            sqlx::query("SELECT role, merchant_id, revoked_at FROM api_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_one(&mut **tx)
                .await?;
        let role: String = row.try_get(0)?;
        let merchant_id: Option<String> = row.try_get(1)?;
        let revoked_at: Option<i64> = row.try_get(2)?;
        let record = KeyRecord {
            key_hash: key_hash.clone(),
            role: parse_role(&role)?,
            merchant_id: merchant_id.map(MerchantId::new),
            revoked: revoked_at.is_some(),
        };
        crate::outbox::append_record(tx, Topic::ApiKeys, key_hash, &record.encode(), now).await?;
        sqlx::query("UPDATE api_keys SET published = 1 WHERE key_hash = $1")
            .bind(key_hash)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The key hashes `sql` selects with `binds` for `$1`, `$2`, ... inside `tx`.
async fn hashes(
    tx: &mut Transaction<'static, Any>,
    sql: &str,
    binds: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

fn parse_role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("api key role {text:?}")))
}

/// The caller owning the key with `key_hash`, or None for an unknown or revoked key.
pub async fn lookup_hash(store: &Store, key_hash: &str) -> Result<Option<Caller>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT role, merchant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(store.pool())
    .await?
    else {
        return Ok(None);
    };
    let role: String = row.try_get(0)?;
    let merchant_id: Option<String> = row.try_get(1)?;
    Ok(Some(Caller {
        role: parse_role(&role)?,
        merchant_id: merchant_id.map(MerchantId::new),
        key_hash: key_hash.to_owned(),
    }))
}
