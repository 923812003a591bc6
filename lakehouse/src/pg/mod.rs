//! The Postgres wire endpoint: psql, psycopg, DBeaver and BI tools query the lakehouse as if it
//! were a read-only PostgreSQL database.
//!
//! - Users log in with a password over SCRAM-SHA-256 (the password never crosses the wire);
//!   unknown users go through the same exchange, and failed logins are throttled
//!   ([`logins`]). Connections are admitted, timed out and capped per user by [`gate`].
//! - Each connection gets its own DataFusion session, built on its first query for the user
//!   it logged in as: every table (or, for a merchant-scoped user, only that merchant's rows,
//!   cut out inside the scan, [`crate::scope`]), the views, `pg_catalog` and
//!   `information_schema` for `\d` and tools' metadata queries.
//! - Memory: one pool of `total_memory_mb` for the endpoint, and within it `memory_limit_mb`
//!   per connection; a PostgreSQL connection runs one statement at a time, so that is a
//!   per-query limit. A statement past either fails with SQLSTATE 53200 naming the limit
//!   (nothing spills to disk).
//! - SQL runs on its own runtime threads (`threads`), so a heavy query does not hold the
//!   threads that serve the HTTP API and the stream jobs.
//! - Every statement (rows included) must finish within `query_timeout_ms` or it is cancelled
//!   with SQLSTATE 57014; a client's own `SET statement_timeout` can only make that shorter.
//! - Statements are checked before planning ([`guard`]): queries and session chatter run;
//!   writes, DDL, COPY, external tables and file-reading functions are refused with 25006 or
//!   42501 and a message.

mod gate;
pub mod guard;
mod handlers;
mod logins;
mod memory;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool as _};
use runtime::metrics::Registry;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    /// Memory one statement may hold before it fails, MiB.
    pub memory_limit_mb: usize,
    /// Memory all statements together may hold, MiB.
    pub total_memory_mb: usize,
    /// Threads one statement may use.
    pub target_partitions: usize,
    /// Worker threads of the SQL endpoint's own runtime.
    pub threads: usize,
    /// Logged-in connections served at once; more are refused.
    pub max_connections: usize,
    /// Logged-in connections one user may hold at once.
    pub max_connections_per_user: usize,
    /// Sockets still logging in at once; more are closed unanswered.
    pub max_pending_logins: usize,
    /// A socket that has not logged in by then is closed, ms.
    pub auth_timeout_ms: u64,
    /// A session that runs no statement for this long is closed, ms.
    pub idle_timeout_ms: u64,
    /// PBKDF2 rounds of the SCRAM exchange (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
    pub scram_iterations: usize,
    /// Failed logins in a row, per user name and per address, before the lockouts start.
    pub login_failures_allowed: u32,
    /// The first lockout, doubling with each further failure, ms.
    pub login_lockout_ms: u64,
    /// The longest lockout, ms.
    pub login_lockout_max_ms: u64,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5433".into(),
            users: Vec::new(),
            query_timeout_ms: 60_000,
            memory_limit_mb: 512,
            total_memory_mb: 2_048,
            target_partitions: 2,
            threads: 2,
            max_connections: 64,
            max_connections_per_user: 8,
            max_pending_logins: 256,
            auth_timeout_ms: 5_000,
            idle_timeout_ms: 600_000,
            scram_iterations: 600_000,
            login_failures_allowed: 5,
            login_lockout_ms: 1_000,
            login_lockout_max_ms: 300_000,
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
        if self.query_timeout_ms == 0
            || self.memory_limit_mb == 0
            || self.target_partitions == 0
            || self.threads == 0
            || self.max_connections == 0
            || self.max_connections_per_user == 0
            || self.max_pending_logins == 0
            || self.auth_timeout_ms == 0
        {
            return fail(
                "sql.query_timeout_ms, memory_limit_mb, target_partitions, threads, max_connections, max_connections_per_user, max_pending_logins and auth_timeout_ms must be positive".into(),
            );
        }
        if self.total_memory_mb < self.memory_limit_mb {
            return fail(format!(
                "sql.total_memory_mb ({}) must be at least sql.memory_limit_mb ({})",
                self.total_memory_mb, self.memory_limit_mb
            ));
        }
        if self.idle_timeout_ms <= self.query_timeout_ms {
            return fail(format!(
                "sql.idle_timeout_ms ({}) must be longer than sql.query_timeout_ms ({}): a session is idle only between statements",
                self.idle_timeout_ms, self.query_timeout_ms
            ));
        }
        if self.scram_iterations < 4_096 {
            return fail("sql.scram_iterations must be at least 4096 (RFC 7677)".into());
        }
        Ok(())
    }
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) storage: Storage,
    pub(crate) logins: Arc<logins::Logins>,
    pub(crate) gate: Arc<gate::Gate>,
    pub(crate) memory: Arc<GreedyMemoryPool>,
    pub(crate) config: SqlConfig,
}

/// Serves the endpoint on `listener` until `shutdown`, on a runtime of its own. Connections
/// open at shutdown are left to finish their statement.
pub async fn serve(
    config: SqlConfig,
    storage: Storage,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), LakeError> {
    serve_reported(config, storage, listener, Registry::default(), shutdown).await
}

/// [`serve`], with the endpoint's series (`shopstream_sql_*`: sessions per user, logins,
/// refusals, statements, memory held) in `registry`.
pub async fn serve_reported(
    config: SqlConfig,
    storage: Storage,
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), LakeError> {
    config.validate()?;
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| LakeError::Io { context, source }
    };
    // The socket moves to the SQL runtime's reactor.
    let listener = listener
        .into_std()
        .map_err(io("handing the SQL listener to its runtime"))?;
    let (done, finished) = tokio::sync::oneshot::channel();
    let threads = config.threads;
    let metrics = metrics::SqlMetrics::new(&registry, config.total_memory_mb * 1024 * 1024);
    std::thread::Builder::new()
        .name("sql-endpoint".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("sql")
                .enable_all()
                .build()
                .map_err(io("starting the SQL runtime"))
                .and_then(|runtime| {
                    runtime.block_on(accept(config, storage, listener, metrics, shutdown))
                });
            // The caller may be gone; then nobody needs the outcome.
            let _ = done.send(result);
        })
        .map_err(io("starting the SQL thread"))?;
    finished.await.unwrap_or_else(|_| {
        Err(LakeError::Sql(
            "the SQL runtime ended without a word".into(),
        ))
    })
}

async fn accept(
    config: SqlConfig,
    storage: Storage,
    listener: std::net::TcpListener,
    metrics: metrics::SqlMetrics,
    shutdown: CancellationToken,
) -> Result<(), LakeError> {
    let listener = TcpListener::from_std(listener).map_err(|source| LakeError::Io {
        context: "listening for SQL connections".into(),
        source,
    })?;
    let logins = Arc::new(logins::Logins::new(&config.users, config.scram_iterations));
    let gate = Arc::new(gate::Gate::new(&config, logins.names(), metrics.clone()));
    let shared = Arc::new(Shared {
        storage,
        logins,
        gate,
        memory: Arc::new(GreedyMemoryPool::new(config.total_memory_mb * 1024 * 1024)),
        config,
    });
    let login_timeout = Duration::from_millis(shared.config.auth_timeout_ms);
    let idle_timeout = Duration::from_millis(shared.config.idle_timeout_ms);
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = sample.tick() => {
                let reserved = shared.memory.reserved();
                metrics.memory_reserved.set(i64::try_from(reserved).unwrap_or(i64::MAX));
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a SQL connection failed");
                    continue;
                }
            },
        };
        let Some(activity) = shared.gate.admit() else {
            metrics.connections_refused.inc();
            tracing::warn!(%peer, "SQL connection refused: sql.max_pending_logins sockets are logging in");
            continue;
        };
        let handlers = handlers::Connection::new(Arc::clone(&shared), Arc::clone(&activity));
        tokio::spawn(async move {
            tokio::select! {
                ended = datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers) => {
                    if let Err(error) = ended {
                        tracing::debug!(%peer, %error, "SQL connection ended with an error");
                    }
                }
                reason = activity.expired(login_timeout, idle_timeout) => {
                    tracing::debug!(%peer, reason, "SQL connection closed");
                }
            }
        });
    }
}
