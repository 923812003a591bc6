//! The one path by which rows become table data: encode each table's rows of one day as one
//! zstd Parquet file (on the CPU pool), put every file whole, then commit one manifest entry
//! per table naming its files and, for the sink, the source offsets they cover. The sink and
//! the benchmark's order book both write through a [`Writer`]; compaction and retention (in
//! `maintain`) are the only other writers of manifest entries.
//!
//! A commit that stalls for half of `orphan_grace_ms` between putting its files and naming
//! them is abandoned: vacuum deletes unnamed files once they are that old, so the entry could
//! name files already gone. The caller's records are then read again from the position.

use std::collections::BTreeMap;
use std::time::Instant;

use model::Table;

use crate::manifest::{DataFile, Entry, Manifest, OffsetRange, Operation, Snapshot};
use crate::parquet::Encoding;
use crate::rows::{Rows, format_day};
use crate::{LakeError, Storage};

/// Rows of one table and day to commit together (as one file).
#[derive(Debug)]
pub struct Pending {
    pub table: Table,
    /// Days since the epoch (UTC), the `event_date` partition.
    pub day: i32,
    /// Row builders; each is finished into a batch of the file.
    pub rows: Vec<Rows>,
}

/// What one [`Writer::commit`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub rows: u64,
    pub files: u64,
}

/// Writes tables and keeps each table's snapshot current.
#[derive(Debug)]
pub struct Writer {
    storage: Storage,
    encoding: Encoding,
    orphan_grace_ms: i64,
    manifests: BTreeMap<Table, Manifest>,
    snapshots: BTreeMap<Table, Snapshot>,
}

impl Writer {
    /// A writer of every table in `storage`, starting from the committed snapshots.
    pub async fn open(
        storage: Storage,
        encoding: Encoding,
        orphan_grace_ms: i64,
    ) -> Result<Writer, LakeError> {
        let mut manifests = BTreeMap::new();
        let mut snapshots = BTreeMap::new();
        for table in Table::ALL {
            let manifest = Manifest::new(storage.clone(), table);
            snapshots.insert(table, manifest.snapshot().await?);
            manifests.insert(table, manifest);
        }
        Ok(Writer {
            storage,
            encoding,
            orphan_grace_ms,
            manifests,
            snapshots,
        })
    }

    /// Checkpoints each table's log every `versions` versions this writer commits at.
    pub fn checkpoint_every(mut self, versions: u64) -> Writer {
        self.manifests = std::mem::take(&mut self.manifests)
            .into_iter()
            .map(|(table, manifest)| (table, manifest.checkpoint_every(versions)))
            .collect();
        self
    }

    /// The table's snapshot as this writer last saw it.
    pub fn snapshot(&self, table: Table) -> Option<&Snapshot> {
        self.snapshots.get(&table)
    }

    /// The table's position for a source partition (the next offset not in it), read fresh
    /// from the manifest: another member may have committed since.
    pub async fn position(
        &mut self,
        table: Table,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LakeError> {
        let snapshot = self.snapshots.entry(table).or_default();
        self.manifests[&table].refresh(snapshot).await?;
        Ok(snapshot
            .positions
            .get(&(topic.to_owned(), partition))
            .copied())
    }

    /// Encodes `pending` (one file per table and day), puts the files, then commits one entry
    /// per table with its files and its `offsets` (empty for writers that read no topic). A
    /// table's entry is refused ([`LakeError::Fenced`]) when its ranges do not start at the
    /// table's position.
    pub async fn commit(
        &mut self,
        pending: Vec<Pending>,
        offsets: BTreeMap<Table, Vec<OffsetRange>>,
    ) -> Result<Committed, LakeError> {
        let encoding = self.encoding;
        let files = runtime::cpu::run(move || encode_all(pending, encoding))
            .await
            .map_err(|e| LakeError::Parquet(format!("encoder task failed: {e}")))??;
        let written_at = Instant::now();
        let mut by_table: BTreeMap<Table, Vec<DataFile>> = BTreeMap::new();
        let mut committed = Committed::default();
        for (table, file, bytes) in files {
            self.storage
                .put(&self.storage.path(&file.path), bytes)
                .await?;
            committed.rows += file.rows;
            by_table.entry(table).or_default().push(file);
        }
        let mut tables: Vec<Table> = offsets.keys().chain(by_table.keys()).copied().collect();
        tables.sort();
        tables.dedup();
        for table in tables {
            let added = by_table.remove(&table).unwrap_or_default();
            let ranges = offsets.get(&table).cloned().unwrap_or_default();
            if written_at.elapsed().as_millis() as i64 > self.orphan_grace_ms / 2 {
                return Err(LakeError::Manifest(format!(
                    "{table}: the commit stalled for {} s after writing its files, half of lakehouse.orphan_grace_ms; they may have been vacuumed, so it is not committed (the records are read again from the manifest's position)",
                    written_at.elapsed().as_secs()
                )));
            }
            committed.files += added.len() as u64;
            let snapshot = self.snapshots.entry(table).or_default();
            let columns = crate::evolution::columns(&model::schema::for_table(table));
            let entry = Entry {
                added,
                offsets: ranges,
                schema: (snapshot.schema.as_ref() != Some(&columns)).then_some(columns),
                ..Entry::new(Operation::Append)
            };
            self.manifests[&table].commit(snapshot, entry).await?;
        }
        Ok(committed)
    }
}

/// Encodes each table and day as one file.
fn encode_all(
    pending: Vec<Pending>,
    encoding: Encoding,
) -> Result<Vec<(Table, DataFile, Vec<u8>)>, LakeError> {
    let mut files = Vec::new();
    for Pending { table, day, rows } in pending {
        let mut batches = Vec::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for mut part in rows {
            if let Some((lo, hi)) = part.event_time_range() {
                min = min.min(lo);
                max = max.max(hi);
            }
            if !part.is_empty() {
                batches.push(part.finish()?);
            }
        }
        let row_count: usize = batches.iter().map(|b| b.num_rows()).sum();
        if row_count == 0 {
            continue;
        }
        let bytes = encoding.encode(&batches)?;
        let event_date = format_day(day);
        let file = DataFile {
            path: DataFile::fresh_path(table, &event_date),
            event_date,
            rows: row_count as u64,
            bytes: bytes.len() as u64,
            min_event_time: min,
            max_event_time: max,
        };
        files.push((table, file, bytes));
    }
    Ok(files)
}
