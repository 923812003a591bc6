//! Keeping the tables fast and bounded: compaction of small files, retention by partition, and
//! vacuum of files no commit names any more. Each is a manifest entry like the sink's, so a
//! reader sees the table before or after it, never half of it.
//!
//! - **Compaction** rewrites a partition's small files (below half the target size, once
//!   there are `compact_min_files` of them) as files of about `compact_target_bytes`, rows in
//!   the same order, columns as this build writes them (older files gain nulls for columns added
//!   since). The entry removes the inputs and adds the outputs in one version.
//! - **Retention** drops whole `event_date` partitions older than the table's
//!   `retention_days`.
//! - **Vacuum** deletes files taken out by compaction or retention once `orphan_grace_ms` has
//!   passed since, so a query planned before still finds its files; and files no entry ever
//!   named (a commit that crashed after writing them) once they are that old.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use model::Table;
use tokio_util::sync::CancellationToken;

use crate::manifest::{DataFile, Entry, Manifest, Operation, Snapshot};
use crate::parquet::Encoding;
use crate::rows::{event_day, parse_day};
use crate::{LakeConfig, LakeError, Storage, now_ms};

/// What one compaction of one table did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub files_before: usize,
    pub files_after: usize,
    pub rewritten: usize,
    pub written: usize,
}

/// Rewrites each partition's small files of `table` as larger ones.
pub async fn compact(
    storage: &Storage,
    table: Table,
    encoding: Encoding,
    min_files: usize,
    target_bytes: u64,
) -> Result<Compacted, LakeError> {
    let manifest = Manifest::new(storage.clone(), table);
    let mut snapshot = manifest.snapshot().await?;
    let mut report = Compacted {
        files_before: snapshot.files.len(),
        ..Compacted::default()
    };
    let mut by_day: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for file in snapshot.files.values() {
        if file.bytes < target_bytes / 2 {
            by_day
                .entry(file.event_date.clone())
                .or_default()
                .push(file.clone());
        }
    }
    for (event_date, mut small) in by_day {
        if small.len() < min_files.max(2) {
            continue;
        }
        // File names are UUIDv7s, so path order is commit order: rows keep their order.
        small.sort_by(|a, b| a.path.cmp(&b.path));
        let mut groups: Vec<Vec<DataFile>> = vec![Vec::new()];
        let mut group_bytes = 0;
        for file in small {
            if group_bytes + file.bytes > target_bytes
                && groups.last().is_some_and(|group| !group.is_empty())
            {
                groups.push(Vec::new());
                group_bytes = 0;
            }
            group_bytes += file.bytes;
            if let Some(group) = groups.last_mut() {
                group.push(file);
            }
        }
        let mut entry = Entry::new(Operation::Compact);
        for group in groups.into_iter().filter(|group| group.len() > 1) {
            let merged = merge(storage, table, &event_date, &group, encoding).await?;
            report.rewritten += group.len();
            report.written += 1;
            entry
                .removed
                .extend(group.iter().map(|file| file.path.clone()));
            entry.added.push(merged);
        }
        if entry.added.is_empty() {
            continue;
        }
        manifest.commit(&mut snapshot, entry).await?;
    }
    report.files_after = snapshot.files.len();
    Ok(report)
}

/// [`compact`] with the configured encoding, file count and target size.
pub async fn compact_configured(
    config: &LakeConfig,
    storage: &Storage,
    table: Table,
) -> Result<Compacted, LakeError> {
    compact(
        storage,
        table,
        config.encoding(),
        config.compact_min_files,
        config.compact_target_bytes,
    )
    .await
}

/// Writes `group` (files of one partition) as one file and returns it, not yet committed.
async fn merge(
    storage: &Storage,
    table: Table,
    event_date: &str,
    group: &[DataFile],
    encoding: Encoding,
) -> Result<DataFile, LakeError> {
    let schema = model::schema::for_table(table);
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(encoding.properties()?))
            .map_err(|e| LakeError::Parquet(e.to_string()))?;
    for file in group {
        let bytes = storage.get(&storage.path(&file.path)).await?;
        let schema = Arc::clone(&schema);
        let batches = runtime::cpu::run(move || read_as(bytes, &schema))
            .await
            .map_err(|e| LakeError::Parquet(format!("compaction reader failed: {e}")))??;
        for batch in &batches {
            writer
                .write(batch)
                .map_err(|e| LakeError::Parquet(e.to_string()))?;
        }
    }
    writer
        .close()
        .map_err(|e| LakeError::Parquet(e.to_string()))?;
    let merged = DataFile {
        path: DataFile::fresh_path(table, event_date),
        event_date: event_date.to_owned(),
        rows: group.iter().map(|file| file.rows).sum(),
        bytes: out.len() as u64,
        min_event_time: group.iter().map(|f| f.min_event_time).min().unwrap_or(0),
        max_event_time: group.iter().map(|f| f.max_event_time).max().unwrap_or(0),
    };
    storage.put(&storage.path(&merged.path), out).await?;
    Ok(merged)
}

/// A file's rows in `schema`: columns it lacks (added since it was written) are null.
fn read_as(bytes: Vec<u8>, schema: &SchemaRef) -> Result<Vec<RecordBatch>, LakeError> {
    let parquet = |e: &dyn std::fmt::Display| LakeError::Parquet(e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| parquet(&e))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| parquet(&e))?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet(&e))?;
        let columns = schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(Arc::clone(column)),
                Some(column) => cast(column, field.data_type()).map_err(|e| parquet(&e)),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        batches.push(RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| parquet(&e))?);
    }
    Ok(batches)
}

/// Drops `table`'s partitions whose day is more than `days` before `today` (a day number).
/// Returns how many files left the table.
pub async fn retain(
    storage: &Storage,
    table: Table,
    days: u32,
    today: i32,
) -> Result<usize, LakeError> {
    let manifest = Manifest::new(storage.clone(), table);
    let mut snapshot = manifest.snapshot().await?;
    let oldest_kept = today - i32::try_from(days).unwrap_or(i32::MAX);
    let mut entry = Entry::new(Operation::Retention);
    entry.removed = snapshot
        .files
        .values()
        .filter(|file| parse_day(&file.event_date).is_some_and(|day| day < oldest_kept))
        .map(|file| file.path.clone())
        .collect();
    let dropped = entry.removed.len();
    if dropped > 0 {
        manifest.commit(&mut snapshot, entry).await?;
    }
    Ok(dropped)
}

/// Deletes `table`'s files that are in no version any more (removed before
/// `now_ms - grace_ms`) or never were (and are older than that). Returns how many.
pub async fn vacuum(storage: &Storage, table: Table, grace_ms: i64) -> Result<usize, LakeError> {
    let manifest = Manifest::new(storage.clone(), table);
    let snapshot = manifest.snapshot().await?;
    let doomed = unreferenced(storage, table, &snapshot, now_ms() - grace_ms).await?;
    for path in &doomed {
        storage.delete(path).await?;
    }
    Ok(doomed.len())
}

async fn unreferenced(
    storage: &Storage,
    table: Table,
    snapshot: &Snapshot,
    before_ms: i64,
) -> Result<Vec<object_store::path::Path>, LakeError> {
    let root_parts = storage.path("").parts().count();
    let listed = storage.list(&storage.path(table.name()), None).await?;
    Ok(listed
        .into_iter()
        .filter(|meta| meta.location.extension() == Some("parquet"))
        .filter(|meta| {
            let relative = meta
                .location
                .parts()
                .skip(root_parts)
                .map(|part| part.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/");
            if snapshot.files.contains_key(&relative) {
                return false;
            }
            match snapshot.removed_at.get(&relative) {
                Some(&removed) => removed < before_ms,
                None => meta.last_modified.timestamp_millis() < before_ms,
            }
        })
        .map(|meta| meta.location)
        .collect())
}

/// Compaction, retention and vacuum of every table, every `compact_interval_ms`, until
/// `shutdown`.
pub async fn run(config: LakeConfig, shutdown: CancellationToken) -> Result<(), LakeError> {
    config.validate()?;
    let storage = config.storage()?;
    let mut every = tokio::time::interval(Duration::from_millis(config.compact_interval_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        for table in Table::ALL {
            if let Err(error) = maintain_table(&config, &storage, table).await {
                // Another writer winning a race is routine; the next round retries.
                tracing::warn!(%table, %error, "table maintenance failed; retrying next round");
            }
        }
    }
}

async fn maintain_table(
    config: &LakeConfig,
    storage: &Storage,
    table: Table,
) -> Result<(), LakeError> {
    let compacted = compact_configured(config, storage, table).await?;
    if compacted.written > 0 {
        tracing::info!(%table, before = compacted.files_before, after = compacted.files_after, "compacted");
    }
    if let Some(&days) = config.retention_days.get(table.name()) {
        let dropped = retain(storage, table, days, event_day(now_ms())).await?;
        if dropped > 0 {
            tracing::info!(%table, files = dropped, days, "partitions past retention dropped");
        }
    }
    let deleted = vacuum(storage, table, config.orphan_grace_ms).await?;
    if deleted > 0 {
        tracing::info!(%table, files = deleted, "vacuumed");
    }
    Ok(())
}
