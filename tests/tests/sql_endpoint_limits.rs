//! The SQL endpoint cannot be denied to a legitimate user, and its logins give nothing away:
//! memory-hungry sessions share one pool, sockets that never log in are closed after the
//! login timeout and hold no connection slot, each user has a connection cap, idle sessions
//! end; unknown users go through the whole SCRAM exchange, failed logins are throttled, and
//! the iteration count is current guidance. psql and a raw protocol client, over an empty lake.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lakehouse::pg::{SqlConfig, SqlUser};
use runtime::metrics::Registry;
use tokio_util::sync::CancellationToken;

/// Starts the endpoint over an empty lake in `dir`; returns its port.
async fn endpoint(
    dir: &std::path::Path,
    config: SqlConfig,
    shutdown: &CancellationToken,
) -> Result<u16> {
    reported_endpoint(dir, config, Registry::default(), shutdown).await
}

/// [`endpoint`], its series in `registry`.
async fn reported_endpoint(
    dir: &std::path::Path,
    config: SqlConfig,
    registry: Registry,
    shutdown: &CancellationToken,
) -> Result<u16> {
    let lake = testkit::lake::sink_config(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(lakehouse::pg::serve_reported(
        config,
        lake.storage()?,
        listener,
        registry,
        shutdown.clone(),
    ));
    Ok(port)
}

/// The sample of `series` (name and labels as rendered) in `registry`, 0 when absent.
fn sample(registry: &Registry, series: &str) -> f64 {
    registry
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn user(name: &str, password: &str) -> SqlUser {
    SqlUser {
        name: name.into(),
        password: password.into(),
        merchant_id: None,
    }
}

fn psql(port: u16, user: &str, password: &str, sql: &str) -> Command {
    let mut command = Command::new(testkit::tools::psql().unwrap());
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", "shopstream", "-X", "-A", "-t", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20");
    command
}

/// What the endpoint answers `user`'s first SCRAM message with: the server-first message
/// (`r=...,s=...,i=...`), or the error's text.
fn scram_first(port: u16, user: &str) -> Result<String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for text in ["user", user, "database", "shopstream"] {
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend(body);
    socket.write_all(&startup)?;
    let (kind, _) = message(&mut socket)?;
    if kind != b'R' {
        bail!("expected the SASL mechanisms, got {:?}", kind as char);
    }
    let client_first = b"n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(client_first.len() as u32).to_be_bytes());
    body.extend_from_slice(client_first);
    let mut response = vec![b'p'];
    response.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    response.extend(body);
    socket.write_all(&response)?;
    let (kind, body) = message(&mut socket)?;
    match kind {
        b'R' => Ok(String::from_utf8_lossy(&body[4..]).into_owned()),
        b'E' => Ok(format!("error: {}", String::from_utf8_lossy(&body))),
        other => bail!("unexpected message {:?}", other as char),
    }
}

fn message(socket: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    socket.read_exact(&mut head)?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; length - 4];
    socket.read_exact(&mut body)?;
    Ok((head[0], body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_give_nothing_away_and_guessing_is_throttled() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let config = SqlConfig {
        users: vec![user("analyst", "right-password")],
        login_failures_allowed: 3,
        login_lockout_ms: 2_000,
        ..SqlConfig::default()
    };
    let port = endpoint(dir.path(), config, &shutdown).await?;

    let (known, unknown) = tokio::task::spawn_blocking(move || {
        Ok::<_, anyhow::Error>((scram_first(port, "analyst")?, scram_first(port, "nobody")?))
    })
    .await??;
    for first in [&known, &unknown] {
        assert!(
            first.starts_with("r=abcdefghijklmnopqrstuvwx") && first.ends_with(",i=600000"),
            "every user gets a challenge with 600,000 rounds: {first}"
        );
    }

    let attempt = move |name: &'static str, password: &'static str| {
        tokio::task::spawn_blocking(move || psql(port, name, password, "SELECT 1").output())
    };
    let wrong = attempt("analyst", "guess").await??;
    let nobody = attempt("nobody", "guess").await??;
    let said = |output: &std::process::Output| {
        String::from_utf8_lossy(&output.stderr)
            .replace("\"analyst\"", "\"USER\"")
            .replace("\"nobody\"", "\"USER\"")
    };
    assert!(!wrong.status.success() && !nobody.status.success());
    assert_eq!(
        said(&wrong),
        said(&nobody),
        "a wrong password and an unknown user read alike"
    );
    assert!(
        said(&wrong)
            .to_lowercase()
            .contains("password authentication failed")
    );

    // Two more failures reach the allowance; the next is locked out, right password or not.
    for _ in 0..2 {
        attempt("analyst", "guess").await??;
    }
    let locked = attempt("analyst", "right-password").await??;
    assert!(!locked.status.success(), "a locked-out user got in");
    assert!(
        String::from_utf8_lossy(&locked.stderr).contains("too many failed logins"),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let back = attempt("analyst", "right-password").await??;
    assert!(
        back.status.success(),
        "after the lockout the right password works: {}",
        String::from_utf8_lossy(&back.stderr)
    );
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hungry_sessions_and_silent_sockets_do_not_keep_a_user_out() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let config = SqlConfig {
        users: vec![
            user("hog", "hog-password"),
            user("analyst", "analyst-password"),
        ],
        memory_limit_mb: 64,
        total_memory_mb: 256,
        max_connections_per_user: 40,
        query_timeout_ms: 20_000,
        scram_iterations: 4_096,
        ..SqlConfig::default()
    };
    let port = endpoint(dir.path(), config, &shutdown).await?;

    // 64 sockets that connect and never say a word.
    let silent: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", port)))
        .collect::<Result<_, _>>()?;
    // 32 sessions each sorting more than its statement may hold (2 GB of rows).
    let hungry: Vec<std::process::Child> = (0..32)
        .map(|_| {
            psql(
                port,
                "hog",
                "hog-password",
                "SELECT value, repeat('x', 1000) AS pad FROM generate_series(1, 2000000) ORDER BY value DESC",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        })
        .collect::<Result<_, _>>()?;

    let legit = tokio::task::spawn_blocking(move || {
        psql(
            port,
            "analyst",
            "analyst-password",
            "SELECT count(*) FROM orders",
        )
        .output()
    })
    .await??;
    assert!(
        legit.status.success(),
        "the legitimate user was kept out: {}",
        String::from_utf8_lossy(&legit.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&legit.stdout).trim(), "0");

    let outcomes = tokio::task::spawn_blocking(move || {
        hungry
            .into_iter()
            .map(|child| child.wait_with_output())
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let memory_refusals = outcomes
        .iter()
        .filter(|output| {
            let said = String::from_utf8_lossy(&output.stderr);
            said.contains("sql.memory_limit_mb") || said.contains("sql.total_memory_mb")
        })
        .count();
    assert_eq!(
        memory_refusals,
        outcomes.len(),
        "every hungry statement is stopped by a memory limit: {:?}",
        outcomes
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .find(|said| !said.contains("memory"))
    );

    // The silent sockets were closed at the login timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut socket in silent {
        socket.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        ))?;
        let mut byte = [0u8; 1];
        match socket.read(&mut byte) {
            Ok(0) => {}
            other => bail!("a silent socket was not closed by the login timeout: {other:?}"),
        }
    }
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_has_a_connection_cap_and_idle_sessions_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let config = SqlConfig {
        users: vec![user("analyst", "analyst-password")],
        max_connections_per_user: 2,
        query_timeout_ms: 1_000,
        idle_timeout_ms: 3_000,
        scram_iterations: 4_096,
        ..SqlConfig::default()
    };
    let registry = Registry::default();
    let port = reported_endpoint(dir.path(), config, registry.clone(), &shutdown).await?;
    let session = || {
        let mut command = Command::new(testkit::tools::psql().unwrap());
        command
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "analyst"])
            .args(["-d", "shopstream", "-X", "-A", "-t"])
            .env("PGPASSWORD", "analyst-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn()
    };
    let held: Vec<std::process::Child> = (0..2).map(|_| session()).collect::<Result<_, _>>()?;
    // Both sessions logged in and answered: their slots are taken.
    let mut held = tokio::task::spawn_blocking(move || {
        held.into_iter()
            .map(|mut child| {
                writeln!(child.stdin.as_mut().unwrap(), "SELECT 1;")?;
                let mut answers = std::io::BufReader::new(child.stdout.take().unwrap());
                let mut first = String::new();
                std::io::BufRead::read_line(&mut answers, &mut first)?;
                assert_eq!(first.trim(), "1");
                Ok((child, answers))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await??;
    let third = tokio::task::spawn_blocking(move || {
        psql(port, "analyst", "analyst-password", "SELECT 1").output()
    })
    .await??;
    let said = String::from_utf8_lossy(&third.stderr);
    assert!(
        !third.status.success() && said.contains("too many connections for user"),
        "a third session of a user capped at two: {said}"
    );
    // The operations page reads these: two sessions held, the third turned away.
    let sessions = r#"shopstream_sql_sessions{job="sql:analyst"}"#;
    assert_eq!(sample(&registry, sessions), 2.0);
    assert_eq!(
        sample(&registry, r#"shopstream_sql_logins_total{job="sql"}"#),
        2.0
    );
    assert!(
        sample(
            &registry,
            r#"shopstream_sql_connections_refused_total{job="sql"}"#
        ) >= 1.0
    );
    assert!(sample(&registry, r#"shopstream_sql_statements_total{job="sql"}"#) >= 2.0);
    // Past the idle timeout both held sessions are gone: their next statement fails.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let outcomes = tokio::task::spawn_blocking(move || {
        held.drain(..)
            .map(|(mut child, mut answers)| {
                let _ = writeln!(child.stdin.as_mut().unwrap(), "SELECT 2;");
                drop(child.stdin.take());
                let mut rest = String::new();
                answers.read_to_string(&mut rest)?;
                Ok((rest, child.wait_with_output()?))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await??;
    for (out, output) in outcomes {
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            !out.contains('2') && (said.contains("closed") || said.contains("terminat")),
            "an idle session still answered: stdout {out:?} stderr {said:?}"
        );
    }
    assert_eq!(
        sample(&registry, sessions),
        0.0,
        "ended sessions are off the gauge"
    );
    let after = tokio::task::spawn_blocking(move || {
        psql(port, "analyst", "analyst-password", "SELECT 3").output()
    })
    .await??;
    assert!(
        after.status.success(),
        "the closed sessions freed their slots"
    );
    shutdown.cancel();
    Ok(())
}
