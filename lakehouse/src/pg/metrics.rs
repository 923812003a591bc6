//! The endpoint's series on the process's `/metrics` (and so on the operations page): the
//! sessions each user holds, logins, failed logins and refused connections, statements and
//! those the guard refused, and the memory running statements hold against
//! `sql.total_memory_mb`.

use runtime::metrics::{Counter, Gauge, Registry};

const JOB: &str = "sql";

#[derive(Debug, Clone)]
pub(crate) struct SqlMetrics {
    registry: Registry,
    pub(crate) logins: Counter,
    pub(crate) login_failures: Counter,
    /// Sockets turned away: no logging-in slot, a throttled user or address, or no session
    /// slot (`max_connections`, `max_connections_per_user`).
    pub(crate) connections_refused: Counter,
    pub(crate) statements: Counter,
    pub(crate) statements_refused: Counter,
    pub(crate) memory_reserved: Gauge,
}

impl SqlMetrics {
    pub(crate) fn new(registry: &Registry, total_memory_bytes: usize) -> SqlMetrics {
        let counter = |name, help| registry.counter(name, help, JOB);
        let limit = registry.gauge(
            "shopstream_sql_memory_limit_bytes",
            "Memory all running SQL statements may hold together (sql.total_memory_mb).",
            JOB,
        );
        limit.set(i64::try_from(total_memory_bytes).unwrap_or(i64::MAX));
        SqlMetrics {
            registry: registry.clone(),
            logins: counter("shopstream_sql_logins", "SQL logins that opened a session."),
            login_failures: counter(
                "shopstream_sql_login_failures",
                "SQL logins refused for a wrong password or an unknown user.",
            ),
            connections_refused: counter(
                "shopstream_sql_connections_refused",
                "SQL sockets turned away: no slot free, or too many failed logins.",
            ),
            statements: counter("shopstream_sql_statements", "SQL statements received."),
            statements_refused: counter(
                "shopstream_sql_statements_refused",
                "SQL statements the read-only guard refused (writes, DDL, file access).",
            ),
            memory_reserved: registry.gauge(
                "shopstream_sql_memory_reserved_bytes",
                "Memory running SQL statements hold now.",
                JOB,
            ),
        }
    }

    /// The gauge of `user`'s open sessions (job `sql:<user>`).
    pub(crate) fn sessions(&self, user: &str) -> Gauge {
        self.registry.gauge(
            "shopstream_sql_sessions",
            "SQL sessions logged in now, per user (job sql:<user>).",
            &format!("{JOB}:{user}"),
        )
    }
}
