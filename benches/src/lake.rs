//! `shopstream-bench lake-sink`: rows per second from events to committed Parquet (the encode
//! alone on one thread, then the sink through the broker); `shopstream-bench lake-queries`:
//! ten report queries over an order book of at least 10 M order lines, DataFusion and DuckDB on
//! the same files, side by side, with the file count before and after compaction;
//! `shopstream-bench lake-manifest`: how long a new reader takes to learn a table from a long
//! manifest log, replaying every entry against starting from its newest checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bus::Bus;
use lakehouse::manifest::Manifest;
use lakehouse::query::Scope;
use lakehouse::rows::Rows;
use lakehouse::sink::SinkStats;
use lakehouse::{LakeConfig, Storage};
use model::{Envelope, Table};

use tokio_util::sync::CancellationToken;

use shopstream::config::Config;

/// CPU seconds this process has used (user + system).
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn generated(config: &Config, events: usize) -> Result<Vec<Envelope>> {
    Ok(traffic::Generator::new(traffic::GeneratorConfig {
        daily_rhythm: false,
        flash_sales: false,
        ..config.generator.clone()
    })?
    .take(events)
    .collect())
}

pub async fn sink(config: Config, events: usize) -> Result<()> {
    let envelopes = generated(&config, events)?;
    let mut expected_rows = 0;
    for table in Table::ALL {
        let mut rows = Rows::new(table)?;
        envelopes.iter().for_each(|envelope| rows.push(envelope));
        expected_rows += rows.len();
    }

    // 1. The encode: rows into Arrow builders and out as zstd Parquet, one thread.
    for run in 1..=3 {
        let started = Instant::now();
        let mut bytes = 0;
        let mut rows = 0;
        let mut arrow_seconds = 0.0;
        for table in Table::ALL {
            let arrow_started = Instant::now();
            let mut buffer = Rows::new(table)?;
            for envelope in &envelopes {
                buffer.push(envelope);
            }
            rows += buffer.len();
            let batch = buffer.finish()?;
            arrow_seconds += arrow_started.elapsed().as_secs_f64();
            bytes += lakehouse::parquet::Encoding::default()
                .encode(std::slice::from_ref(&batch))?
                .len();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "lake encode run {run}: {rows} rows ({events} events) to {:.1} MB of zstd Parquet in {seconds:.2} s = {:.2} M rows/s on one core (Arrow rows {arrow_seconds:.2} s, Parquet {:.2} s)",
            bytes as f64 / 1e6,
            rows as f64 / seconds / 1e6,
            seconds - arrow_seconds
        );
    }

    // 2. The sink: a backlog on the broker to committed files, all it takes.
    let mut bus_config = config.bus.clone();
    bus_config.topic_prefix = format!("bench-lake-{}.", std::process::id());
    let bus = Arc::new(Bus::connect(bus_config)?);
    bus.ensure_topics(&model::Topic::ALL).await?;
    crate::load::produce(&bus.producer()?, &envelopes).await?;
    let dir = tempfile::Builder::new()
        .prefix("shopstream-bench-lake-")
        .tempdir()?;
    let lake = LakeConfig {
        dir: Some(dir.path().to_owned()),
        group_id: "bench-lake".into(),
        commit_interval_ms: 2_000,
        ..config.lakehouse.clone()
    };
    let stats = Arc::new(SinkStats::default());
    let shutdown = CancellationToken::new();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let task = tokio::spawn({
        let (lake, bus, stats, shutdown) = (
            lake.clone(),
            Arc::clone(&bus),
            Arc::clone(&stats),
            shutdown.clone(),
        );
        async move { lakehouse::sink::run(lake, &bus, stats, runtime::Readiness::new(), shutdown).await }
    });
    while stats.rows_committed.get() < expected_rows as u64 {
        if task.is_finished() {
            task.await??;
            bail!("the sink stopped early");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    shutdown.cancel();
    task.await??;
    println!(
        "lake sink: {events} records from the broker to {expected_rows} committed rows in {seconds:.2} s wall = {:.0} K rows/s; {cpu:.2} CPU s = {:.0} K rows per CPU-second ({} commits, {} files)",
        expected_rows as f64 / seconds / 1e3,
        expected_rows as f64 / cpu.max(1e-9) / 1e3,
        stats.commits.get(),
        stats.files_committed.get(),
    );
    Ok(())
}

/// The report queries: a name, DataFusion's text and DuckDB's (the same unless a dialect
/// differs).
const QUERIES: &[(&str, &str)] = &[
    (
        "daily GMV per merchant",
        "SELECT merchant_id, event_date, sum(line_total_minor) AS gmv FROM order_lines GROUP BY merchant_id, event_date ORDER BY merchant_id, event_date",
    ),
    (
        "top 20 SKUs by units",
        "SELECT product_id, sum(quantity) AS units, sum(line_total_minor) AS gmv FROM order_lines GROUP BY product_id ORDER BY units DESC, product_id LIMIT 20",
    ),
    (
        "refund rate per merchant",
        "SELECT o.merchant_id, count(DISTINCT r.order_id) * 1.0 / count(DISTINCT o.order_id) AS refund_rate FROM orders o LEFT JOIN refunds r ON r.order_id = o.order_id WHERE o.event_type = 'order.placed' GROUP BY o.merchant_id ORDER BY refund_rate DESC, o.merchant_id",
    ),
    (
        "delivery TAT percentiles per courier",
        "SELECT c.courier_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY (date_part('epoch', d.event_time) - date_part('epoch', c.event_time)) / 3600.0) AS p50_h, percentile_cont(0.9) WITHIN GROUP (ORDER BY (date_part('epoch', d.event_time) - date_part('epoch', c.event_time)) / 3600.0) AS p90_h, percentile_cont(0.99) WITHIN GROUP (ORDER BY (date_part('epoch', d.event_time) - date_part('epoch', c.event_time)) / 3600.0) AS p99_h FROM shipments c JOIN shipments d ON d.shipment_id = c.shipment_id AND d.event_type = 'shipment.delivered' WHERE c.event_type = 'shipment.created' GROUP BY c.courier_id ORDER BY c.courier_id",
    ),
    (
        "search to order conversion per day",
        "SELECT s.event_date, count(DISTINCT s.session_id) AS searching, count(DISTINCT o.session_id) AS ordering FROM searches s LEFT JOIN (SELECT DISTINCT session_id FROM order_lines WHERE session_id IS NOT NULL) o ON o.session_id = s.session_id GROUP BY s.event_date ORDER BY s.event_date",
    ),
    (
        "orders per hour on one day (pruned)",
        "SELECT date_trunc('hour', event_time) AS hour, count(*) AS orders FROM orders WHERE event_date = DATE '2025-12-15' AND event_type = 'order.placed' GROUP BY 1 ORDER BY 1",
    ),
    (
        "average order value by delivery region",
        "SELECT substr(delivery_pincode, 1, 3) AS region, avg(total_minor) AS aov, count(*) AS orders FROM orders WHERE event_type = 'order.placed' GROUP BY 1 ORDER BY orders DESC, region LIMIT 20",
    ),
    (
        "payment failure rate by provider",
        "SELECT provider, sum(CASE WHEN event_type = 'payment.failed' THEN 1 ELSE 0 END) * 1.0 / count(*) AS failure_rate, count(*) AS attempts FROM payments WHERE event_type IN ('payment.captured', 'payment.failed') GROUP BY provider ORDER BY provider",
    ),
    (
        "repeat customers per merchant",
        "SELECT merchant_id, count(*) AS repeat_customers FROM (SELECT merchant_id, customer_id FROM orders WHERE event_type = 'order.placed' GROUP BY merchant_id, customer_id HAVING count(*) > 1) t GROUP BY merchant_id ORDER BY repeat_customers DESC, merchant_id",
    ),
    (
        "cancelled GMV share per day",
        "SELECT l.event_date, sum(CASE WHEN c.order_id IS NOT NULL THEN l.line_total_minor ELSE 0 END) * 1.0 / sum(l.line_total_minor) AS cancelled_share FROM order_lines l LEFT JOIN (SELECT DISTINCT order_id FROM orders WHERE event_type = 'order.cancelled') c ON c.order_id = l.order_id GROUP BY l.event_date ORDER BY l.event_date",
    ),
];

const DUCKDB_RUNNER: &str = include_str!("bench_duckdb.py");

pub async fn queries(
    config: Config,
    lines: usize,
    dir: PathBuf,
    python: Option<PathBuf>,
    runs: usize,
) -> Result<()> {
    let storage = Storage::local(&dir)?;
    let have = Manifest::new(storage.clone(), Table::OrderLines)
        .snapshot()
        .await?
        .rows();
    if have < lines as u64 {
        if have > 0 {
            bail!(
                "{} holds {have} order lines, fewer than {lines}; point --dir at an empty directory",
                dir.display()
            );
        }
        let started = Instant::now();
        let written = crate::orderbook::write(&storage, lines, config.generator.seed).await?;
        println!(
            "wrote an order book of {written} order lines (and its orders, payments, refunds, shipments and searches) in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let count_files = |storage: Storage| async move {
        let mut total = 0;
        for table in Table::ALL {
            total += Manifest::new(storage.clone(), table)
                .snapshot()
                .await?
                .files
                .len();
        }
        anyhow::Ok(total)
    };
    let before = count_files(storage.clone()).await?;
    let started = Instant::now();
    for table in Table::ALL {
        lakehouse::maintain::compact_configured(&config.lakehouse, &storage, table).await?;
    }
    let after = count_files(storage.clone()).await?;
    println!(
        "files before compaction {before}, after {after} (compaction took {:.1} s; target {} MiB)",
        started.elapsed().as_secs_f64(),
        config.lakehouse.compact_target_bytes >> 20
    );

    let datafusion = datafusion_times(&storage, runs).await?;
    let python = match python {
        Some(python) => python,
        None => default_python()?,
    };
    let duckdb = duckdb_times(&python, &dir, runs)?;
    println!();
    println!("| query | DataFusion (ms) | DuckDB (ms) | ratio | rows |");
    println!("|---|---|---|---|---|");
    let (mut df_total, mut duck_total) = (0.0, 0.0);
    for ((name, _), ((df_ms, df_rows), (duck_ms, duck_rows))) in
        QUERIES.iter().zip(datafusion.iter().zip(&duckdb))
    {
        if df_rows != duck_rows {
            bail!("{name}: DataFusion returned {df_rows} rows, DuckDB {duck_rows}");
        }
        df_total += df_ms;
        duck_total += duck_ms;
        println!(
            "| {name} | {df_ms:.0} | {duck_ms:.0} | {:.2}x | {df_rows} |",
            df_ms / duck_ms
        );
    }
    println!(
        "| total | {df_total:.0} | {duck_total:.0} | {:.2}x | |",
        df_total / duck_total
    );
    Ok(())
}

/// Median wall time (ms) and row count of each query over `runs` runs, two threads.
async fn datafusion_times(storage: &Storage, runs: usize) -> Result<Vec<(f64, usize)>> {
    let context = lakehouse::query::session(
        storage,
        datafusion::prelude::SessionConfig::new().with_target_partitions(2),
        &Scope::All,
    )
    .await?;
    let mut times = Vec::new();
    for (name, sql) in QUERIES {
        let mut samples = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let batches = context
                .sql(sql)
                .await
                .with_context(|| format!("DataFusion: {name}"))?
                .collect()
                .await
                .with_context(|| format!("DataFusion: {name}"))?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            rows = batches.iter().map(|b| b.num_rows()).sum();
        }
        times.push((median(&mut samples), rows));
    }
    Ok(times)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// DuckDB over the same files, from its Python package, two threads.
fn duckdb_times(python: &Path, dir: &Path, runs: usize) -> Result<Vec<(f64, usize)>> {
    let queries: Vec<&str> = QUERIES.iter().map(|(_, sql)| *sql).collect();
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(DUCKDB_RUNNER)
        .arg(dir)
        .arg(runs.to_string())
        .arg(serde_json::to_string(&queries)?)
        .output()
        .with_context(|| format!("running DuckDB through {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "DuckDB run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    #[derive(serde::Deserialize)]
    struct Timed {
        ms: f64,
        rows: usize,
    }
    let results: Vec<Timed> = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "reading DuckDB's timings from {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    Ok(results.into_iter().map(|t| (t.ms, t.rows)).collect())
}

/// The venv the tests make (`testkit::tools::python`), which has DuckDB.
fn default_python() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let python = home.join(".cache/shopstream/venv-lake/bin/python");
    if python.exists() {
        Ok(python)
    } else {
        bail!(
            "no Python with DuckDB at {}: run `cargo nextest run -p tests --test lake_sql` once (it makes that venv) or pass --python PATH",
            python.display()
        )
    }
}

/// Commits `versions` one-file entries to the `orders` table through the lakehouse's writer
/// (as a sink committing every few seconds would over days), then times a new reader: the
/// whole log replayed, and the newest checkpoint plus the entries after it.
pub async fn manifest(config: Config, versions: u64, every: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = Storage::local(dir.path())?;
    let mut writer =
        lakehouse::writer::Writer::open(storage.clone(), config.lakehouse.encoding(), i64::MAX)
            .await?
            .checkpoint_every(every);
    let orders: Vec<Envelope> = generated(&config, 200_000)?
        .into_iter()
        .filter(|e| Table::fed_by(e.topic()).any(|table| table == Table::Orders))
        .collect();
    let day = |e: &Envelope| lakehouse::rows::event_day(e.event_time);
    let started = Instant::now();
    for version in 0..versions {
        let envelope = &orders[version as usize % orders.len()];
        let mut rows = Rows::new(Table::Orders)?;
        rows.push(envelope);
        let pending = lakehouse::writer::Pending {
            table: Table::Orders,
            day: day(envelope),
            rows: vec![rows],
        };
        let offsets = [(
            Table::Orders,
            vec![lakehouse::manifest::OffsetRange {
                topic: "orders".into(),
                partition: (version % 12) as i32,
                from: (version / 12) as i64,
                to: (version / 12) as i64 + 1,
            }],
        )]
        .into();
        writer.commit(vec![pending], offsets).await?;
    }
    println!(
        "{versions} versions committed in {:.1} s (checkpoint every {every})",
        started.elapsed().as_secs_f64()
    );
    let manifest = Manifest::new(storage.clone(), Table::Orders);
    let time = |runs: &mut Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let (mut replayed, mut checkpointed) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let whole = manifest.replayed().await?;
        replayed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let read = manifest.snapshot().await?;
        checkpointed.push(t.elapsed().as_secs_f64() * 1e3);
        if read != whole {
            bail!(
                "the checkpointed read differs from the replay at version {}",
                whole.version
            );
        }
    }
    // No directory when the log never reached a checkpoint version.
    let checkpoint_bytes: u64 = std::fs::read_dir(dir.path().join("orders/_checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0);
    println!(
        "a new reader of {versions} versions ({} live files): whole log replayed {:.1} ms, \
         from the newest checkpoint {:.1} ms (median of 5); checkpoint {} KB",
        manifest.snapshot().await?.files.len(),
        time(&mut replayed),
        time(&mut checkpointed),
        checkpoint_bytes / 1024
    );
    Ok(())
}
