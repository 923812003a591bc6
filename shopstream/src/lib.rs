//! What the `shopstream` binaries share: configuration (`config`), the stage lists each role
//! runs (`app`), traffic generation (`generate`, `pump`), imports, the SQL commands and the
//! batch jobs (`finance`). The `shopstream` binary is its command line; `shopstream-bench`
//! (`benches/`) measures on top of the same pieces.

pub mod app;
pub mod config;
pub mod finance;
pub mod generate;
pub mod import;
pub mod pump;
pub mod recovery;
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

/// Creates `dir` (and its parents) readable by its owner only, or narrows an existing one to
/// that: it holds the broker's log, the orders store and the lake, every merchant's rows,
/// which other local users must not read past the endpoints' checks.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "{} is open to other users and cannot be narrowed",
                    dir.display()
                )
            },
        )?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{:o}", mode & 0o777),
            "the data dir was readable by other users; narrowed it to 0700"
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    fn mode(dir: &std::path::Path) -> u32 {
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_is_made_or_narrowed_to_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b/data");
        super::create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        super::create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }
}
