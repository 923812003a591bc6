//! Helpers for the lakehouse tests: traffic that spans two days, what each table should hold
//! (counted straight from the events, sharing no code with the sink), and what it does hold
//! (asked through DataFusion).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use lakehouse::LakeConfig;
use lakehouse::query::{Scope, session};
use model::{Envelope, Event, Table};

/// 2025-12-01T23:40:00Z: generated traffic crosses midnight, so tables have two partitions.
pub const BEFORE_MIDNIGHT_MS: i64 = 1_764_632_400_000;

/// `count` generated events from 20 minutes before midnight, at a slow enough rate that
/// cancellations and refunds (up to 40 minutes after an order) are among them.
pub fn events(seed: u64, count: usize) -> Result<Vec<Envelope>> {
    Ok(traffic::Generator::new(traffic::GeneratorConfig {
        seed,
        start_ms: BEFORE_MIDNIGHT_MS,
        rate: 10.0,
        products: 120,
        merchants: 6,
        customers: 800,
        daily_rhythm: false,
        ..traffic::GeneratorConfig::default()
    })?
    .take(count)
    .collect())
}

/// `YYYY-MM-DD` (UTC) of an event time.
pub fn day_of(event_time_ms: i64) -> String {
    lakehouse::rows::format_day(lakehouse::rows::event_day(event_time_ms))
}

/// Rows per table and `event_date` that `events` make.
pub fn expected_rows(events: &[Envelope]) -> BTreeMap<(Table, String), u64> {
    let mut rows = BTreeMap::new();
    for event in events {
        let day = day_of(event.event_time);
        for table in Table::fed_by(event.topic()) {
            let count = match (table, &event.event) {
                (Table::OrderLines, Event::OrderPlaced(order)) => order.lines.len() as u64,
                (Table::OrderLines, _) => 0,
                (Table::Refunds, Event::RefundIssued(_)) => 1,
                (Table::Refunds, _) => 0,
                _ => 1,
            };
            if count > 0 {
                *rows.entry((table, day.clone())).or_insert(0) += count;
            }
        }
    }
    rows
}

/// Sink settings for a test: the given directory, commits every 300 ms.
pub fn sink_config(dir: &std::path::Path) -> LakeConfig {
    LakeConfig {
        dir: Some(dir.to_owned()),
        group_id: "lake-test".into(),
        commit_interval_ms: 300,
        ..LakeConfig::default()
    }
}

/// The sink running in-process until [`RunningSink::stop`].
#[derive(Debug)]
pub struct RunningSink {
    pub stats: std::sync::Arc<lakehouse::sink::SinkStats>,
    pub readiness: runtime::Readiness,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), lakehouse::LakeError>>,
}

/// Starts the sink with `config` against `bus`.
pub fn start_sink(config: &LakeConfig, bus: &std::sync::Arc<bus::Bus>) -> RunningSink {
    let stats = std::sync::Arc::new(lakehouse::sink::SinkStats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let readiness = runtime::Readiness::new();
    let task = tokio::spawn({
        let (config, bus, stats, readiness, shutdown) = (
            config.clone(),
            std::sync::Arc::clone(bus),
            std::sync::Arc::clone(&stats),
            readiness.clone(),
            shutdown.clone(),
        );
        async move { lakehouse::sink::run(config, &bus, stats, readiness, shutdown).await }
    });
    RunningSink {
        stats,
        readiness,
        shutdown,
        task,
    }
}

impl RunningSink {
    /// Stops the sink (it commits what it holds) and returns how it ended.
    pub async fn stop(self) -> Result<std::sync::Arc<lakehouse::sink::SinkStats>> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(self.stats)
    }
}

/// Rows and distinct row keys per table and `event_date`, as SQL sees the committed tables.
pub async fn committed_rows(
    config: &LakeConfig,
) -> Result<(
    BTreeMap<(Table, String), u64>,
    BTreeMap<(Table, String), u64>,
)> {
    let storage = config.storage()?;
    let context = session(
        &storage,
        datafusion::prelude::SessionConfig::new(),
        &Scope::All,
    )
    .await?;
    let mut rows = BTreeMap::new();
    let mut distinct = BTreeMap::new();
    for table in Table::ALL {
        let key = table.row_key().join(" || '/' || CAST(");
        let key = if table.row_key().len() > 1 {
            format!("{key} AS VARCHAR)")
        } else {
            key
        };
        let sql = format!(
            "SELECT event_date, count(*), count(DISTINCT {key}) FROM {} GROUP BY event_date",
            table.name()
        );
        let batches = context
            .sql(&sql)
            .await
            .with_context(|| sql.clone())?
            .collect()
            .await
            .with_context(|| sql.clone())?;
        for batch in batches {
            for row in 0..batch.num_rows() {
                let day = text(batch.column(0), row);
                rows.insert((table, day.clone()), int(batch.column(1), row) as u64);
                distinct.insert((table, day), int(batch.column(2), row) as u64);
            }
        }
    }
    Ok((rows, distinct))
}

/// The first (table, day) whose count differs, described.
pub fn first_difference(
    got: &BTreeMap<(Table, String), u64>,
    want: &BTreeMap<(Table, String), u64>,
) -> Option<String> {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    keys.into_iter().find_map(|key| {
        let (g, w) = (got.get(key), want.get(key));
        (g != w).then(|| {
            format!(
                "{} event_date={}: {} rows committed, {} produced",
                key.0,
                key.1,
                g.copied().unwrap_or(0),
                w.copied().unwrap_or(0)
            )
        })
    })
}

/// A cell as text, whatever string type DataFusion chose (Utf8, Utf8View, a date...).
pub fn text(array: &dyn datafusion::arrow::array::Array, row: usize) -> String {
    datafusion::arrow::util::display::array_value_to_string(
        &datafusion::arrow::array::make_array(array.to_data()),
        row,
    )
    .unwrap_or_default()
}

/// A cell as i64, whatever integer type the aggregate produced.
pub fn int(array: &dyn datafusion::arrow::array::Array, row: usize) -> i64 {
    let array = datafusion::arrow::array::make_array(array.to_data());
    datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Int64)
        .map(|cast| cast.as_primitive::<Int64Type>().value(row))
        .unwrap_or(i64::MIN)
}

/// Waits until the committed tables hold exactly `want` rows per table and day, with no row
/// key twice.
pub async fn wait_committed(
    config: &LakeConfig,
    want: &BTreeMap<(Table, String), u64>,
    deadline: std::time::Duration,
) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let (rows, distinct) = committed_rows(config).await?;
        match first_difference(&rows, want) {
            None if rows == distinct => return Ok(()),
            None => anyhow::bail!("a row key appears twice: {rows:?} vs {distinct:?}"),
            Some(difference) if start.elapsed() > deadline => {
                anyhow::bail!("the tables never matched what was produced; last: {difference}")
            }
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
        }
    }
}

/// The one integer `sql` answers over the committed tables of `config`'s lake.
pub async fn query_int(config: &LakeConfig, sql: &str) -> Result<i64> {
    let storage = config.storage()?;
    let context = session(
        &storage,
        datafusion::prelude::SessionConfig::new(),
        &Scope::All,
    )
    .await?;
    let batches = context
        .sql(sql)
        .await
        .with_context(|| sql.to_owned())?
        .collect()
        .await
        .with_context(|| sql.to_owned())?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .with_context(|| format!("{sql} answered no rows"))?;
    Ok(int(batch.column(0), 0))
}
