//! Outside programs the tests drive (psql, Python readers of Parquet), installed on first use
//! from Debian and PyPI, idempotently, so `cargo nextest run` sets up a fresh machine itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Python packages the lakehouse reader checks use, pinned so results do not drift.
const PYTHON_PACKAGES: &[&str] = &[
    "psycopg[binary]==3.3.9",
    "duckdb==2.0.0",
    "polars==2.1.0",
    "pyarrow==26.0.1",
    // DuckDB's Python API needs it to return timestamps with a time zone.
    "pytz==2026.6",
    // An S3-compatible server for the lakehouse's object-store path.
    "moto[server]==5.2.5",
];

/// Runs `command`, failing with its stderr when it fails; returns its stdout.
pub fn run_output(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn is_root() -> Result<bool> {
    Ok(run_output(Command::new("id").arg("-u"))?.trim() == "0")
}

/// Installs Debian packages (as root, or through passwordless sudo).
pub fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let as_root = is_root()?;
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_output(&mut command).map(|_| ())
    };
    eprintln!(
        "installing {} for {why} (once per machine)",
        packages.join(", ")
    );
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    apt(&args).with_context(|| format!("installing {}", packages.join(", ")))
}

/// A lock file under the machine's cache, held while the guard lives: test processes running
/// in parallel install once.
fn cache_lock(name: &str) -> Result<(PathBuf, std::fs::File)> {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home.join(".cache").join("shopstream");
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.join(format!("{name}.lock")))?;
    lock.lock()?;
    Ok((dir, lock))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// Debian's `psql`, installed with postgresql-client if missing.
pub fn psql() -> Result<PathBuf> {
    let (_, _lock) = cache_lock("psql")?;
    if let Some(psql) = on_path("psql") {
        return Ok(psql);
    }
    apt_install(&["postgresql-client"], "the SQL endpoint tests")?;
    on_path("psql").context("postgresql-client is installed but psql is not on PATH")
}

/// A Python with psycopg, DuckDB, polars, pyarrow and moto, in a venv under the machine's
/// cache.
pub fn python() -> Result<PathBuf> {
    venv("venv-lake", PYTHON_PACKAGES, "the lakehouse reader checks")
}

/// A Python with openpyxl and pandas, for reading finance workbooks as accountants' tools do.
pub fn spreadsheet_python() -> Result<PathBuf> {
    venv(
        "venv-spreadsheets",
        &["openpyxl==3.1.5", "pandas==3.1.1"],
        "the workbook reader checks",
    )
}

/// A Python with Playwright (which drives a browser it is given; it downloads none) and
/// Debian's Chromium, installed once per machine: `(python, chromium)`.
pub fn browser() -> Result<(PathBuf, PathBuf)> {
    let python = venv(
        "venv-browser",
        &["playwright==1.65.2"],
        "the dashboards' browser tests",
    )?;
    let (_, _lock) = cache_lock("chromium")?;
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() {
        apt_install(&["chromium"], "the dashboards' browser tests")?;
    }
    Ok((python, chromium))
}

/// The `schemathesis` command, in a venv of its own under the machine's cache.
pub fn schemathesis() -> Result<PathBuf> {
    let python = venv("venv-api", &["schemathesis==4.32.5"], "the API fuzzing")?;
    Ok(python.with_file_name("schemathesis"))
}

/// The Python of the venv `name` under the machine's cache with `packages` installed, made
/// once per machine (and again when the list changes).
fn venv(name: &str, packages: &[&str], why: &str) -> Result<PathBuf> {
    let (dir, _lock) = cache_lock(name)?;
    let venv = dir.join(name);
    let python = venv.join("bin").join("python");
    let stamp = venv.join("installed.txt");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    if !python.exists() {
        run_output(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .with_context(|| format!("creating a Python venv for {why} (python3-venv)"))?;
    }
    eprintln!(
        "installing {} into {} (once per machine)",
        packages.join(", "),
        venv.display()
    );
    run_output(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

/// A local S3-compatible server (moto) on a free 127.0.0.1 port, stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
}

impl S3Server {
    /// Blocking: run it with `spawn_blocking`. It polls the port with a deadline, which is the
    /// one condition there is to wait on.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Result<S3Server> {
        let python = python()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting moto_server")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("moto_server did not listen on {endpoint} within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(S3Server { child, endpoint })
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
