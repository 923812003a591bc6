//! A PostgreSQL database per test. `SHOPSTREAM_TEST_POSTGRES_URL` names a server to use (its
//! user must be allowed to create databases); otherwise the harness starts Debian's
//! PostgreSQL (installing the package with apt-get if it is missing) once per machine on a free
//! 127.0.0.1 port, under the system temp directory, and every test process reuses it. The
//! server keeps running after the tests so the next run starts at once. Each test process
//! drops the databases of test processes that have exited, so the shared server does not grow
//! with every run (it once held 430 leftover databases, 3.6 GB).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sqlx::{AnyConnection, Connection as _, Executor as _};

/// A fresh, empty database for `test` and its URL.
pub async fn database(test: &str) -> Result<String> {
    let (admin, ours) = match std::env::var("SHOPSTREAM_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => (url, false),
        _ => (tokio::task::spawn_blocking(local_server).await??, true),
    };
    let name = database_name(test, std::process::id(), unique_number());
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&admin)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
    // Only on the machine's own server do the process ids in the names belong to this machine.
    if ours {
        drop_databases_of_exited_tests(&mut conn).await?;
    }
    conn.execute(&*format!("CREATE DATABASE \"{name}\""))
        .await?;
    conn.close().await?;
    Ok(with_database(&admin, &name))
}

/// PostgreSQL silently truncates identifiers to 63 bytes, which once cut off the part of a long
/// test name that made it unique; the test name is shortened instead.
fn database_name(test: &str, pid: u32, unique: u64) -> String {
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(28)
        .collect();
    format!("t_{test}_{pid}_{unique}")
}

/// The process id inside a name made by [`database_name`].
fn owner_pid(name: &str) -> Option<u32> {
    let (rest, _unique) = name.strip_prefix("t_")?.rsplit_once('_')?;
    rest.rsplit_once('_')?.1.parse().ok()
}

async fn drop_databases_of_exited_tests(conn: &mut AnyConnection) -> Result<()> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 't\\_%'")
            .fetch_all(&mut *conn)
            .await?;
    for name in names {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another test process may be dropping the same database at this moment.
        if let Err(e) = conn
            .execute(&*format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
        {
            eprintln!("could not drop the leftover test database {name}: {e}");
        }
    }
    Ok(())
}

fn unique_number() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    u64::from(nanos) * 1000 + COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("//") && !server.ends_with('/') => server,
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Starts (or finds running) the machine's shared test server; returns its admin URL.
fn local_server() -> Result<String> {
    let dir = std::env::temp_dir().join("shopstream-test-postgres");
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.join("lock"))?;
    lock.lock()?; // Released when `lock` drops; serialises start-up across test processes.
    let port_file = dir.join("port");
    if let Ok(port) = std::fs::read_to_string(&port_file)
        && is_ready(&dir, port.trim())?
    {
        return Ok(admin_url(port.trim()));
    }
    let as_root = crate::tools::is_root()?;
    let bin = match postgres_bin() {
        Ok(bin) => bin,
        Err(_) => {
            install_postgres()?;
            postgres_bin()?
        }
    };
    // PostgreSQL refuses to run as root; the Debian package's `postgres` user owns it then.
    let run = |program: &str, args: &[&str]| -> Result<()> {
        let path = bin.join(program);
        let mut command = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args);
        crate::tools::run_output(&mut command).map(|_| ())
    };
    if as_root {
        crate::tools::run_output(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
        )?;
    }
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
    }
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
        path_str(&dir)?
    );
    let log = dir.join("server.log");
    run(
        "pg_ctl",
        &[
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-o",
            &options,
            "-w",
            "start",
        ],
    )
    .with_context(|| format!("starting PostgreSQL; its log is {}", log.display()))?;
    std::fs::write(&port_file, &port)?;
    Ok(admin_url(&port))
}

/// Installs Debian's server package, as the test command must set up a fresh machine itself.
fn install_postgres() -> Result<()> {
    crate::tools::apt_install(&["postgresql"], "the orders-core tests").context(
        "installing postgresql; set SHOPSTREAM_TEST_POSTGRES_URL to use a server of your own",
    )
}

fn admin_url(port: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn is_ready(dir: &Path, port: &str) -> Result<bool> {
    let bin = postgres_bin()?;
    let status = Command::new(bin.join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", port, "-q"])
        .current_dir(dir)
        .status()?;
    Ok(status.success())
}

/// The newest installed server's binaries (Debian keeps them per major version).
fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server under /usr/lib/postgresql: install Debian's `postgresql` \
             package (`.ci/run` does) or set SHOPSTREAM_TEST_POSTGRES_URL"
        ),
    }
}

fn free_port() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port().to_string())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{database_name, owner_pid};

    #[test]
    fn database_names_fit_postgres_identifiers() {
        let long = "idempotency_key_replays_the_answer_and_refuses_another_body";
        let name = database_name(long, u32::MAX, u64::MAX);
        assert!(name.len() <= 63, "{name} is {} bytes", name.len());
        assert_ne!(database_name(long, 1, 1), database_name(long, 1, 2));
    }

    #[test]
    fn the_owning_process_is_read_back_from_the_name() {
        let name = database_name("outbox-crash_pg", 4242, 17);
        assert_eq!(owner_pid(&name), Some(4242));
        assert_eq!(owner_pid("t_reopen_99_1"), Some(99));
        assert_eq!(owner_pid("postgres"), None);
        assert_eq!(owner_pid("t_x_notapid_1"), None);
    }
}
