//! The Postgres wire endpoint: psql, psycopg, DBeaver and BI tools query the lakehouse as if it
//! were a read-only PostgreSQL database.
//!
//! - Users log in with a password over SCRAM-SHA-256 (the password never crosses the wire).
//! - Each connection gets its own DataFusion session, built on its first query for the user
//!   it logged in as: every table (or, for a merchant-scoped user, only that merchant's rows),
//!   the views, `pg_catalog` and `information_schema` for `\d` and tools' metadata queries.
//! - Each connection has its own memory pool of `memory_limit_mb`; a PostgreSQL connection runs
//!   one statement at a time, so that is a per-query limit. A statement that needs more fails
//!   with SQLSTATE 53200 naming the limit (nothing spills to disk).
//! - Every statement (rows included) must finish within `query_timeout_ms` or it is cancelled
//!   with SQLSTATE 57014; a client's own `SET statement_timeout` can only make that shorter.
//! - Statements are checked before planning ([`guard`]): queries and session chatter run;
//!   writes, DDL, COPY, external tables and file-reading functions are refused with 25006 or
//!   42501 and a message.

pub mod guard;
mod handlers;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::query::Scope;
use crate::{LakeError, Storage};

/// One login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlUser {
    pub name: String,
    pub password: String,
    /// When set, the user sees only this merchant's rows, in every table and view.
    #[serde(default)]
    pub merchant_id: Option<String>,
}

/// SQL endpoint settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Where the Postgres wire endpoint listens.
    pub listen: String,
    pub users: Vec<SqlUser>,
    /// Longest a statement may run, rows included, ms.
    pub query_timeout_ms: u64,
    /// Memory one statement may hold before spilling or failing, MiB.
    pub memory_limit_mb: usize,
    /// Threads one statement may use.
    pub target_partitions: usize,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5433".into(),
            users: Vec::new(),
            query_timeout_ms: 60_000,
            memory_limit_mb: 1_024,
            target_partitions: 2,
            max_connections: 64,
        }
    }
}

impl SqlConfig {
    pub fn validate(&self) -> Result<(), LakeError> {
        let fail = |message: String| Err(LakeError::Config(message));
        if self.users.is_empty() {
            return fail(
                "sql.users must name at least one user (name, password, optional merchant_id)"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for user in &self.users {
            if user.name.is_empty() || user.password.is_empty() {
                return fail("sql.users: every user needs a name and a password".into());
            }
            if !seen.insert(&user.name) {
                return fail(format!("sql.users: {} is listed twice", user.name));
            }
        }
        if self.query_timeout_ms == 0 || self.memory_limit_mb == 0 || self.target_partitions == 0 {
            return fail(
                "sql.query_timeout_ms, sql.memory_limit_mb and sql.target_partitions must be positive".into(),
            );
        }
        Ok(())
    }
}

/// A user as the server keeps it: the SCRAM salted password, never the password itself.
#[derive(Debug)]
pub(crate) struct Login {
    pub(crate) salt: Vec<u8>,
    pub(crate) salted_password: Vec<u8>,
    pub(crate) scope: Scope,
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) storage: Storage,
    pub(crate) logins: HashMap<String, Login>,
    pub(crate) config: SqlConfig,
}

/// Serves the endpoint on `listener` until `shutdown`. Connections open at shutdown are left
/// to finish their statement.
pub async fn serve(
    config: SqlConfig,
    storage: Storage,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), LakeError> {
    config.validate()?;
    let logins = config
        .users
        .iter()
        .map(|user| {
            let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
            let salted_password = handlers::salted_password(&user.password, &salt);
            let scope = match &user.merchant_id {
                Some(merchant) => Scope::Merchant(merchant.clone()),
                None => Scope::All,
            };
            (
                user.name.clone(),
                Login {
                    salt,
                    salted_password,
                    scope,
                },
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        storage,
        logins,
        config,
    });
    let connections = Arc::new(tokio::sync::Semaphore::new(shared.config.max_connections));
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a SQL connection failed");
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(%peer, "SQL connection refused: sql.max_connections reached");
            continue;
        };
        let handlers = handlers::Connection::new(Arc::clone(&shared));
        tokio::spawn(async move {
            if let Err(error) =
                datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers).await
            {
                tracing::debug!(%peer, %error, "SQL connection ended with an error");
            }
            drop(permit);
        });
    }
}
