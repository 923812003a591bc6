//! The CPU pool: work that burns CPU or blocks on the disk (Parquet encodes and decodes,
//! checkpoint writes with their fsyncs, and later index and ANN builds) runs here, never on the
//! I/O runtime's worker threads, so a long encode cannot stall the HTTP front door or a
//! consumer's heartbeat.
//!
//! It is tokio's blocking pool behind a semaphore of one permit per core: at most that many
//! such jobs run at once, the rest wait their turn (asynchronously) instead of oversubscribing
//! the machine.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// Why a job on the pool gave no result.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The job panicked; a bug in the job.
    #[error("a job on the CPU pool panicked: {0}")]
    Panicked(String),
}

fn permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

/// Runs `job` on the CPU pool and returns its result.
pub async fn run<T, F>(job: F) -> Result<T, CpuError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The semaphore is never closed, so acquiring only waits.
    let permit = Arc::clone(permits()).acquire_owned().await.ok();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await;
    outcome.map_err(|error| CpuError::Panicked(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_off_the_calling_thread_and_return_their_result() {
        let caller = std::thread::current().id();
        let (result, thread) = run(move || (6 * 7, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(result, 42);
        assert_ne!(thread, caller);
        let panicked = run(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert!(panicked.to_string().contains("panicked"), "{panicked}");
    }
}
