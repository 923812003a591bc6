//! Storage of the orders core through sqlx's `Any` driver: an SQLite file in the data
//! directory by default (WAL, write transactions that take the write lock up front so
//! concurrent writers queue instead of deadlocking), PostgreSQL when a URL is configured. The
//! same SQL runs on both: `$n` parameters, BIGINT integers, 0/1 booleans.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor as _, Row as _};

mod group;
pub use group::{GroupCounts, Statement, Tx};

/// Migrations, embedded in the binary, applied in order exactly once per database.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("migrations/0001_core.sql")),
    (
        2,
        "lifecycle",
        include_str!("migrations/0002_lifecycle.sql"),
    ),
    (3, "keys", include_str!("migrations/0003_keys.sql")),
    (
        4,
        "key_topic",
        include_str!("migrations/0004_key_topic.sql"),
    ),
    (
        5,
        "warehouses_promises",
        include_str!("migrations/0005_warehouses_promises.sql"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:pass@host/db` to use PostgreSQL; unset: `orders.sqlite3` in the data
    /// directory.
    pub url: Option<String>,
    pub max_connections: u32,
    /// How long a writer waits for SQLite's write lock before giving up.
    pub busy_timeout_ms: u64,
    /// SQLite's durability: `full` (default) fsyncs the WAL at every commit, so an order
    /// answered 201 survives a power cut; `normal` fsyncs only at checkpoints, which survives a
    /// process crash but may lose the last commits on power loss (faster; see BENCHMARKS.md).
    pub sqlite_synchronous: Synchronous,
}

/// SQLite's `PRAGMA synchronous` setting, as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous = FULL",
            Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            busy_timeout_ms: 10_000,
            sqlite_synchronous: Synchronous::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("store.url {0:?} is neither postgres:// nor sqlite://")]
    UnsupportedUrl(String),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// The group this write was committed with failed; nothing of it was written.
    #[error("group commit failed: {0}")]
    GroupCommit(String),
    #[error("the store's write thread: {0}")]
    WriteThread(std::io::Error),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// The event a change would emit does not fit a Kafka message; nothing was written.
    #[error(
        "the {event} event this change makes is {bytes} bytes encoded, over the {limit}-byte limit; shorten its text fields"
    )]
    EventTooLarge {
        event: String,
        bytes: usize,
        limit: usize,
    },
}

/// A connection pool plus which database is behind it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions run. On SQLite a pool of one connection: writers queue for it
    /// in arrival order inside the process. Left to SQLite's own lock, each waiter would sleep
    /// in its busy handler (1, 2, 5 ... 100 ms steps) and be overtaken by later arrivals,
    /// which is where the orders bench's p99 of hundreds of ms came from. On PostgreSQL the
    /// same pool as reads: it runs writers side by side.
    writer: AnyPool,
    /// A thread of its own for the serial part of hot writes (see [`Store::on_writer`]).
    write_thread: Arc<WriteThread>,
    /// On SQLite, where [`Store::write_grouped`] sections queue for group commit.
    groups: Option<group::Queue>,
    group_counts: Arc<GroupCounts>,
    backend: Backend,
}

/// A one-thread runtime that runs nothing but write sections. Each statement of a write is a
/// round trip (to SQLite's worker thread, or to PostgreSQL), and the task that waits for it
/// must run again before the next one is sent. On the shared runtime that task queues behind
/// every HTTP request in flight, on every statement, while it holds the one writer: measured,
/// that queueing and not SQLite's work was most of an order's time under the lock. Here it
/// runs as soon as its answer is in. The runtime ends when the last `Store` clone is dropped.
#[derive(Debug)]
struct WriteThread {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriteThread {
    async fn start() -> Result<WriteThread, StoreError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, handle) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = started.send(Ok(runtime.handle().clone()));
                        // Until the stop sender is dropped with the last Store.
                        let _ = runtime.block_on(stopped);
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            })
            .map_err(StoreError::WriteThread)?;
        let handle = handle
            .await
            .map_err(|_| StoreError::WriteThread(std::io::Error::other("it ended at start")))?
            .map_err(StoreError::WriteThread)?;
        Ok(WriteThread {
            handle,
            _stop: stop,
        })
    }
}

impl Store {
    /// Opens (creating if needed) the configured database and applies pending migrations.
    pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        let url = match &config.url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("orders.sqlite3").display()
                )
            }
        };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(url));
        };
        install_default_drivers();
        let busy_timeout_ms = config.busy_timeout_ms;
        let synchronous = config.sqlite_synchronous;
        let options = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // SQLite connections are file handles: open them all at start, so the first
                // burst of requests does not wait for connections and their pragmas.
                .min_connections(if backend == Backend::Sqlite {
                    connections
                } else {
                    0
                })
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // WAL lets readers run beside the one writer; `synchronous` decides
                            // whether a commit survives a power cut (see StoreConfig).
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute(synchronous.pragma()).await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute(&*format!("PRAGMA busy_timeout = {busy_timeout_ms}"))
                                .await?;
                            // No commit copies the WAL back into the database: the
                            // checkpointer does, beside the writer (see `checkpoint_wal`).
                            conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = options(config.max_connections.max(1)).connect(&url).await?;
        let writer = match backend {
            Backend::Sqlite => options(1).connect(&url).await?,
            Backend::Postgres => pool.clone(),
        };
        let write_thread = Arc::new(WriteThread::start().await?);
        let group_counts = Arc::new(GroupCounts::default());
        let groups = (backend == Backend::Sqlite).then(|| {
            let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
            write_thread.handle.spawn(group::commit_groups(
                writer.clone(),
                queued,
                Arc::clone(&group_counts),
            ));
            queue
        });
        if backend == Backend::Sqlite {
            write_thread.handle.spawn(checkpoint_wal(pool.clone()));
        }
        let store = Store {
            pool,
            writer,
            write_thread,
            groups,
            group_counts,
            backend,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction. On SQLite it runs on the one writer connection and still takes
    /// the write lock at BEGIN, so a writer outside this process (a migration, an operator's
    /// `sqlite3`) cannot interleave a read snapshot the transaction must invalidate (the
    /// deferred-transaction deadlock); it waits on `busy_timeout` instead. Never open a second
    /// write transaction while holding one: on SQLite it would wait for the first.
    pub async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Runs `job` (a write section: [`Store::write`], its statements, commit) on the store's
    /// own write thread and waits for its outcome. For the hot paths, whose time under the
    /// write lock is their latency's floor.
    pub async fn on_writer<T: Send + 'static>(
        &self,
        job: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_thread
            .handle
            .spawn(job)
            .await
            .map_err(|error| StoreError::WriteThread(std::io::Error::other(error.to_string())))
    }

    /// Group commits so far (SQLite): groups begun and the sections in them.
    pub fn group_counts(&self) -> &GroupCounts {
        &self.group_counts
    }

    /// Runs `job` as one write section and answers its result once it is durable. `Err` from
    /// the job undoes everything it wrote. On SQLite, sections waiting for the writer commit
    /// together (one fsync for the group; see `group.rs`); on PostgreSQL, where writers run
    /// side by side, each is a transaction of its own. Either way on the write thread.
    pub async fn write_grouped<T, E, F>(&self, job: F) -> Result<T, E>
    where
        F: for<'a> FnOnce(&'a mut Tx) -> futures::future::BoxFuture<'a, Result<T, E>>
            + Send
            + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let gone = || StoreError::WriteThread(std::io::Error::other("it has stopped"));
        if let Some(groups) = &self.groups {
            let (reply, answer) = tokio::sync::oneshot::channel();
            groups
                .send(Box::new(group::Grouped { job, reply }))
                .map_err(|_| gone())?;
            return answer.await.map_err(|_| E::from(gone()))?;
        }
        let writes = self.clone();
        self.on_writer(async move {
            let mut tx = writes.write().await?;
            match job(&mut tx).await {
                Ok(value) => {
                    tx.commit().await.map_err(StoreError::from)?;
                    Ok(value)
                }
                Err(error) => {
                    let _ = tx.rollback().await;
                    Err(error)
                }
            }
        })
        .await?
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let identity = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        };
        let mut tx = self.write().await?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let sql = without_comments(&sql.replace("{identity_primary_key}", identity));
            for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
                tx.execute(statement).await?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tracing::info!(version, name, "applied migration");
        }
        tx.commit().await?;
        Ok(())
    }
}

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`], on a read connection.
/// Left to SQLite, the commit that crosses 1,000 WAL pages runs the checkpoint itself, with
/// its fsyncs, while holding the one writer: the orders bench saw a p99 of 200-400 ms from
/// those stalls alone at 800-1,000 orders/s. A passive checkpoint takes no write lock, so
/// writers go on meanwhile; once it has caught up, the next commit starts the WAL over, which
/// keeps it small. Ends with the store's write thread.
async fn checkpoint_wal(pool: AnyPool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::warn!(%error, "WAL checkpoint failed; trying again");
        }
    }
}

/// Drops `--` comment lines, so a `;` in a comment does not split a statement. Our
/// migrations keep comments on lines of their own.
fn without_comments(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters: the VALUES list of one
/// multi-row INSERT, numbered the way both databases read.
pub fn placeholders(rows: usize, columns: usize) -> String {
    placeholders_from(1, rows, columns)
}

/// [`placeholders`] numbered from `$first`, for a statement that binds other values first.
pub fn placeholders_from(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let numbers: Vec<String> = (0..columns)
                .map(|column| format!("${}", first + row * columns + column))
                .collect();
            format!("({})", numbers.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An INSERT whose parameters are numbered from a given `$n`, so that several can share one
/// statement (PostgreSQL runs INSERTs in a WITH clause as parts of the statement).
#[derive(Debug, Clone)]
pub struct Insert {
    into: &'static str,
    values: String,
    /// How many parameters it binds; the next part's numbers start after them.
    pub parameters: usize,
}

impl Insert {
    /// `rows` rows of `columns` parameters each into `into` (`table (column, ...)`).
    pub fn rows(into: &'static str, first: usize, rows: usize, columns: usize) -> Insert {
        Insert {
            into,
            values: placeholders_from(first, rows, columns),
            parameters: rows * columns,
        }
    }

    /// A VALUES list written out by the caller (a parameter used twice, say).
    pub fn values(into: &'static str, values: String, parameters: usize) -> Insert {
        Insert {
            into,
            values,
            parameters,
        }
    }

    pub fn sql(&self) -> String {
        format!("INSERT INTO {} VALUES {}", self.into, self.values)
    }
}

/// Wall-clock UTC ms, for the columns that record when something was written.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
