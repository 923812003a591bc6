//! Memory for SQL: one pool for the whole endpoint, and within it a cap per statement.
//!
//! A connection runs one statement at a time, so a connection's pool is a statement's. Every
//! connection's reservations also count against the endpoint's total, so 64 memory-hungry
//! sessions share `sql.total_memory_mb` instead of each taking `sql.memory_limit_mb`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};

/// What a statement refused for memory says, so the endpoint can tell the client which limit.
pub(crate) const STATEMENT_LIMIT: &str = "over the statement limit";
pub(crate) const TOTAL_LIMIT: &str = "over the endpoint's total";

/// One connection's share of the endpoint's pool.
#[derive(Debug)]
pub(crate) struct ConnectionPool {
    total: Arc<GreedyMemoryPool>,
    used: AtomicUsize,
    limit: usize,
}

impl ConnectionPool {
    pub(crate) fn new(total: Arc<GreedyMemoryPool>, limit: usize) -> ConnectionPool {
        ConnectionPool {
            total,
            used: AtomicUsize::new(0),
            limit,
        }
    }
}

impl fmt::Display for ConnectionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sql connection (used {} of {} bytes; endpoint {})",
            self.used.load(Ordering::Relaxed),
            self.limit,
            self.total
        )
    }
}

impl MemoryPool for ConnectionPool {
    fn name(&self) -> &str {
        "sql-connection"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.total.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.total.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let wanted = used + additional;
                (wanted <= self.limit).then_some(wanted)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "{STATEMENT_LIMIT}: {additional} more bytes wanted with {used} of {} held",
                    self.limit
                ))
            })?;
        if self.total.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{TOTAL_LIMIT}: {additional} more bytes wanted while other connections hold {} of {}",
                self.total.reserved(),
                match self.total.memory_limit() {
                    MemoryLimit::Finite(limit) => limit.to_string(),
                    _ => "?".into(),
                }
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_connection_is_held_to_its_own_cap_and_to_what_the_others_left() {
        let total = Arc::new(GreedyMemoryPool::new(1_000));
        let first: Arc<dyn MemoryPool> = Arc::new(ConnectionPool::new(Arc::clone(&total), 600));
        let second: Arc<dyn MemoryPool> = Arc::new(ConnectionPool::new(Arc::clone(&total), 600));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        let over = a.try_grow(601).unwrap_err().to_string();
        assert!(over.contains(STATEMENT_LIMIT), "{over}");
        a.try_grow(600).unwrap();
        let crowded = b.try_grow(500).unwrap_err().to_string();
        assert!(crowded.contains(TOTAL_LIMIT), "{crowded}");
        assert_eq!(second.reserved(), 0, "a refused grow holds nothing");
        b.try_grow(400).unwrap();
        assert_eq!(total.reserved(), 1_000);
        drop(a);
        assert_eq!(
            total.reserved(),
            400,
            "a dropped reservation returns to the total"
        );
    }
}
