//! The SQL endpoint as its users meet it: psql (`\d`, queries, refusals, a wrong password) and
//! Python (psycopg against the endpoint; DuckDB, polars and pyarrow reading the Parquet files
//! directly must agree with it; refusals, limits and merchant scope), over a lake the sink
//! filled from generated traffic.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lakehouse::pg::{SqlConfig, SqlUser};
use model::Topic;
use testkit::lake::{events, expected_rows, sink_config, wait_committed};
use tokio_util::sync::CancellationToken;

const ANALYST_PASSWORD: &str = "analyst-secret";
const MERCHANT_PASSWORD: &str = "merchant-secret";

fn psql(port: u16, user: &str, password: &str, command: &str) -> Result<std::process::Output> {
    Ok(Command::new(testkit::tools::psql()?)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "shopstream",
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()?)
}

fn stdout_of(output: &std::process::Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "psql {what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_python_readers_agree_with_the_endpoint_and_it_stays_read_only() -> Result<()> {
    let bus = testkit::bus("lake-sql")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let dir = tempfile::tempdir()?;
    let config = sink_config(dir.path());
    let events = events(9, 20_000)?;
    let want = expected_rows(&events);
    testkit::produce_all(&bus.producer()?, &events).await?;
    let sink = testkit::lake::start_sink(&config, &bus);
    let shutdown = CancellationToken::new();
    wait_committed(&config, &want, Duration::from_secs(90)).await?;

    let merchant_id = events[events.len() / 2].merchant_id.as_str().to_owned();
    let sql = SqlConfig {
        listen: "127.0.0.1:0".into(),
        users: vec![
            SqlUser {
                name: "analyst".into(),
                password: ANALYST_PASSWORD.into(),
                merchant_id: None,
            },
            SqlUser {
                name: "merchant".into(),
                password: MERCHANT_PASSWORD.into(),
                merchant_id: Some(merchant_id.clone()),
            },
        ],
        query_timeout_ms: 2_000,
        memory_limit_mb: 32,
        ..SqlConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(lakehouse::pg::serve(
        sql,
        config.storage()?,
        listener,
        shutdown.clone(),
    ));

    // psql: a query, the catalog as \d shows it, a refusal, a wrong password.
    let orders: usize = want
        .iter()
        .filter(|((table, _), _)| *table == model::Table::Orders)
        .map(|(_, rows)| *rows as usize)
        .sum();
    let counted = tokio::task::spawn_blocking(move || {
        psql(
            port,
            "analyst",
            ANALYST_PASSWORD,
            "SELECT count(*) FROM orders",
        )
    })
    .await??;
    assert_eq!(stdout_of(&counted, "count")?.trim(), orders.to_string());

    let listing =
        tokio::task::spawn_blocking(move || psql(port, "analyst", ANALYST_PASSWORD, "\\d"))
            .await??;
    let listing = stdout_of(&listing, "\\d")?;
    for name in [
        "orders",
        "order_lines",
        "refunds",
        "daily_sales",
        "order_facts",
        "catalog",
    ] {
        assert!(
            listing
                .lines()
                .any(|line| line.split('|').nth(1) == Some(name)),
            "\\d does not list {name}:\n{listing}"
        );
    }
    let described = tokio::task::spawn_blocking(move || {
        psql(port, "analyst", ANALYST_PASSWORD, "\\d order_lines")
    })
    .await??;
    let described = stdout_of(&described, "\\d order_lines")?;
    for column in ["line_total_minor", "event_date", "merchant_id"] {
        assert!(
            described.contains(column),
            "\\d order_lines lacks {column}:\n{described}"
        );
    }

    let refused = tokio::task::spawn_blocking(move || {
        psql(port, "analyst", ANALYST_PASSWORD, "DELETE FROM orders")
    })
    .await??;
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("read-only") && message.contains("DELETE"),
        "{message}"
    );

    let wrong =
        tokio::task::spawn_blocking(move || psql(port, "analyst", "guess", "SELECT 1")).await??;
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );

    // Python: DuckDB, polars and pyarrow against the endpoint, then refusals and limits.
    let python = testkit::tools::python()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/lake_readers.py");
    let lake_dir = dir.path().to_owned();
    let checks = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("LAKE_DIR", lake_dir)
            .env("PG_PORT", port.to_string())
            .env("ANALYST_PASSWORD", ANALYST_PASSWORD)
            .env("MERCHANT_USER", "merchant")
            .env("MERCHANT_PASSWORD", MERCHANT_PASSWORD)
            .env("MERCHANT_ID", merchant_id)
            .output()
            .context("running tests/python/lake_readers.py")
    })
    .await??;
    let report = String::from_utf8_lossy(&checks.stdout);
    if !checks.status.success() {
        bail!(
            "reader checks failed:\n{report}\n{}",
            String::from_utf8_lossy(&checks.stderr)
        );
    }
    eprintln!("{report}");
    assert!(report.contains("all reader checks passed"), "{report}");

    shutdown.cancel();
    server.await??;
    sink.stop().await?;
    Ok(())
}
