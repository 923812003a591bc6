//! What the `shopstream` binaries share: configuration (`config`), the stage lists each role
//! runs (`app`), traffic generation (`generate`, `pump`), imports and the SQL commands. The
//! `shopstream` binary is its command line; `shopstream-bench` (`benches/`) measures on top of
//! the same pieces.

pub mod app;
pub mod config;
pub mod generate;
pub mod import;
pub mod pump;
pub mod sql;

use tokio_util::sync::CancellationToken;

/// Logs to stderr, `warn` and the binary's own `info` unless `SHOPSTREAM_LOG` says otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,shopstream=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down: stopping intake, flushing, committing offsets");
        shutdown.cancel();
    });
}
