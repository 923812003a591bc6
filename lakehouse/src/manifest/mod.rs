//! Each table's manifest log: the only record of which files are the table.
//!
//! The log is a sequence of JSON entries `<table>/_manifest/<version>.json`, version 1, 2, 3,
//! ... with no gaps. An entry adds data files, removes data files (compaction, retention) and
//! moves the table's Kafka position: for each source partition, the offsets `[from, to)` whose
//! records it covers. A table is the replay of its log, a [`Snapshot`].
//!
//! Commit protocol (the sink's exactly-once, see [`crate::sink`]):
//! 1. data files are written under fresh names (a put lands whole or not at all);
//! 2. the entry is created at the next version with a create-only put. Two writers racing
//!    for a version cannot both win: the loser re-reads the log and checks its entry still
//!    fits, i.e. each of its offset ranges starts where the table's position for that
//!    partition now is, and each file it removes is still live. If not, someone else already
//!    covered those records (a member that lost its partitions without noticing), and the
//!    commit is refused with [`LakeError::Fenced`] instead of writing them twice;
//! 3. only then are the offsets committed to Kafka, as a hint: the manifest is the truth, and a
//!    sink that restarts skips records below the manifest's position.
//!
//! Files a crash left between steps 1 and 2 are in no entry, so no reader sees them;
//! [`crate::maintain::vacuum`] deletes them.
//!
//! A new reader starts from the newest [`checkpoint`] of the log, not from version 1.

pub mod checkpoint;

use std::collections::BTreeMap;

use model::Table;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::LakeError;
use crate::evolution::Column;
use crate::storage::Storage;

/// A committed Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Relative to the storage root: `<table>/event_date=<day>/part-<id>.parquet`.
    pub path: String,
    /// `YYYY-MM-DD`, the Hive partition the file is in.
    pub event_date: String,
    pub rows: u64,
    pub bytes: u64,
    /// Earliest and latest event time in the file, UTC ms.
    pub min_event_time: i64,
    pub max_event_time: i64,
}

impl DataFile {
    /// A new file's path in `table`'s `event_date` partition. The name is a UUIDv7, so names
    /// sort in the order files were written.
    pub fn fresh_path(table: Table, event_date: &str) -> String {
        format!(
            "{}/event_date={event_date}/part-{}.parquet",
            table.name(),
            uuid::Uuid::now_v7()
        )
    }

    /// A file of ten rows on one day, for the manifest's tests.
    #[cfg(test)]
    pub(crate) fn sample(path: &str) -> DataFile {
        DataFile {
            path: path.into(),
            event_date: "2026-11-22".into(),
            rows: 10,
            bytes: 100,
            min_event_time: 0,
            max_event_time: 1,
        }
    }
}

/// Records `[from, to)` of one partition of a source topic (by its name on the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// New records from the topics.
    Append,
    /// Small files replaced by fewer, larger ones with the same rows.
    Compact,
    /// Partitions older than the table's retention dropped.
    Retention,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub version: u64,
    /// Unique per commit, so a writer whose create was retried (a timeout after the store
    /// took it) recognises its own entry instead of a rival's.
    #[serde(default)]
    pub commit_id: String,
    pub operation: Operation,
    pub committed_at_ms: i64,
    #[serde(default)]
    pub added: Vec<DataFile>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub offsets: Vec<OffsetRange>,
    /// The table's columns from this version on, when they change (first commit, new
    /// nullable columns); see [`crate::evolution`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<Column>>,
}

impl Entry {
    /// An entry of `operation`, stamped now; the version is assigned at commit.
    pub fn new(operation: Operation) -> Entry {
        Entry {
            version: 0,
            commit_id: uuid::Uuid::new_v4().to_string(),
            operation,
            committed_at_ms: crate::now_ms(),
            added: Vec::new(),
            removed: Vec::new(),
            offsets: Vec::new(),
            schema: None,
        }
    }
}

/// A table as of one version of its log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    /// The commit id of the entry at `version`.
    pub commit_id: String,
    /// Live files by path.
    pub files: BTreeMap<String, DataFile>,
    /// The next offset not yet in the table, per (topic on the cluster, partition).
    pub positions: BTreeMap<(String, i32), i64>,
    /// The columns the table's files are written with, as last recorded.
    pub schema: Option<Vec<Column>>,
    /// Files taken out of the table (compaction, retention) and when: queries planned before
    /// may still read them, so they are deleted only a grace period later.
    pub removed_at: BTreeMap<String, i64>,
}

impl Snapshot {
    /// Why `entry` cannot follow this snapshot, if it cannot.
    fn conflict(&self, entry: &Entry) -> Option<String> {
        for range in &entry.offsets {
            let key = (range.topic.clone(), range.partition);
            // Starting past the position is a gap (records the topic no longer had), not a
            // repeat; the sink reports gaps when it meets them.
            if let Some(&position) = self.positions.get(&key)
                && range.from < position
            {
                return Some(format!(
                    "{}[{}] is at offset {position} in the table, but this commit covers {}..{}",
                    range.topic, range.partition, range.from, range.to
                ));
            }
        }
        entry
            .removed
            .iter()
            .find(|path| !self.files.contains_key(*path))
            .map(|path| format!("{path} is no longer in the table"))
    }

    fn apply(&mut self, entry: &Entry) {
        for path in &entry.removed {
            self.files.remove(path);
            self.removed_at.insert(path.clone(), entry.committed_at_ms);
        }
        if let Some(schema) = &entry.schema {
            self.schema = Some(schema.clone());
        }
        for file in &entry.added {
            self.files.insert(file.path.clone(), file.clone());
        }
        for range in &entry.offsets {
            self.positions
                .insert((range.topic.clone(), range.partition), range.to);
        }
        self.version = entry.version;
        self.commit_id.clone_from(&entry.commit_id);
    }

    pub fn rows(&self) -> u64 {
        self.files.values().map(|file| file.rows).sum()
    }
}

/// The log of one table.
#[derive(Debug, Clone)]
pub struct Manifest {
    storage: Storage,
    table: Table,
    dir: Path,
    checkpoint_every: u64,
}

fn entry_name(version: u64) -> String {
    format!("{version:020}.json")
}

/// The version a file named by [`entry_name`] (an entry or a checkpoint) is of.
fn version_named(meta: &object_store::ObjectMeta) -> Option<u64> {
    meta.location
        .filename()?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

impl Manifest {
    pub fn new(storage: Storage, table: Table) -> Manifest {
        let dir = storage.path(&format!("{}/_manifest", table.name()));
        Manifest {
            storage,
            table,
            dir,
            checkpoint_every: checkpoint::EVERY,
        }
    }

    /// Checkpoints every `versions` versions instead of every [`checkpoint::EVERY`].
    pub fn checkpoint_every(mut self, versions: u64) -> Manifest {
        self.checkpoint_every = versions.max(1);
        self
    }

    /// Brings `snapshot` up to the newest version, reading only entries after its own.
    pub async fn refresh(&self, snapshot: &mut Snapshot) -> Result<(), LakeError> {
        let offset = self.dir.clone().join(entry_name(snapshot.version));
        let mut versions: Vec<u64> = self
            .storage
            .list(&self.dir, Some(&offset))
            .await?
            .iter()
            .filter_map(version_named)
            .filter(|&version| version > snapshot.version)
            .collect();
        versions.sort_unstable();
        for version in versions {
            if version != snapshot.version + 1 {
                // A writer is between creating version N+1 and the listing seeing it; the
                // entries after the gap wait for the next refresh.
                break;
            }
            let Some(entry) = self.entry(version).await? else {
                // Listed, then gone: moved out after damage in the meantime.
                break;
            };
            snapshot.apply(&entry);
        }
        Ok(())
    }

    /// The entry at `version`; `None` when the log has none there.
    async fn entry(&self, version: u64) -> Result<Option<Entry>, LakeError> {
        let path = self.dir.clone().join(entry_name(version));
        let bytes = match self.storage.get(&path).await {
            Ok(bytes) => bytes,
            Err(LakeError::Store { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
            LakeError::Manifest(format!(
                "{table} manifest entry {path} (version {version}) is unreadable ({e}; {size} bytes). \
                 Entries are fsynced before the sink moves on, so this is damage from outside \
                 (a disk fault, a copy cut short, an edit). If it is the newest entry, move \
                 it out of {dir}: the table is then as of version {previous}, and the sink \
                 writes the records it covered again from the offsets that version recorded \
                 (its data files are left for `shopstream lake vacuum`). If entries follow \
                 it, restore it from a backup",
                table = self.table,
                size = bytes.len(),
                dir = self.dir,
                previous = version - 1,
            ))
        })?;
        if entry.version != version {
            return Err(LakeError::Manifest(format!(
                "{} entry {} says it is version {}",
                self.table,
                entry_name(version),
                entry.version
            )));
        }
        Ok(Some(entry))
    }

    /// The table as of its newest version: the newest checkpoint and the entries after it.
    pub async fn snapshot(&self) -> Result<Snapshot, LakeError> {
        let mut snapshot = checkpoint::newest(self).await?;
        self.refresh(&mut snapshot).await?;
        Ok(snapshot)
    }

    /// The table as of its newest version, read from every entry (what checkpoints are checked
    /// against).
    pub async fn replayed(&self) -> Result<Snapshot, LakeError> {
        let mut snapshot = Snapshot::default();
        self.refresh(&mut snapshot).await?;
        Ok(snapshot)
    }

    /// Writes a checkpoint when `snapshot` (just committed) is at a checkpoint version. A
    /// checkpoint that cannot be written costs later readers time, never data: the commit
    /// stands, and the failure is logged.
    async fn checkpoint(&self, snapshot: &Snapshot) {
        if !snapshot.version.is_multiple_of(self.checkpoint_every) {
            return;
        }
        if let Err(error) = checkpoint::write(&self.storage, self.table, snapshot).await {
            tracing::warn!(
                table = %self.table,
                version = snapshot.version,
                %error,
                "could not write a manifest checkpoint; readers replay more of the log until the next"
            );
        }
    }

    /// Appends `entry` (its version is assigned here) after `snapshot`, which it brings up to
    /// date. Returns [`LakeError::Fenced`] when the entry no longer fits the log.
    pub(crate) async fn commit(
        &self,
        snapshot: &mut Snapshot,
        mut entry: Entry,
    ) -> Result<u64, LakeError> {
        loop {
            self.refresh(snapshot).await?;
            if let Some(conflict) = snapshot.conflict(&entry) {
                return Err(LakeError::Fenced {
                    table: self.table,
                    conflict,
                });
            }
            if let Some(schema) = &entry.schema {
                crate::evolution::check(self.table, snapshot.schema.as_deref(), schema)?;
            }
            entry.version = snapshot.version + 1;
            // Stamped as it is written: vacuum's grace for removed files counts from here.
            entry.committed_at_ms = crate::now_ms();
            let bytes = serde_json::to_vec_pretty(&entry)
                .map_err(|e| LakeError::Manifest(format!("encoding an entry: {e}")))?;
            let path = self.dir.clone().join(entry_name(entry.version));
            if self.storage.create(&path, bytes).await? {
                snapshot.apply(&entry);
                self.checkpoint(snapshot).await;
                return Ok(entry.version);
            }
            // Someone took this version: a rival, or our own create that the store took
            // before a retry of it.
            if let Ok(existing) = serde_json::from_slice::<Entry>(&self.storage.get(&path).await?)
                && existing.commit_id == entry.commit_id
            {
                snapshot.apply(&existing);
                self.checkpoint(snapshot).await;
                return Ok(existing.version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: i64, to: i64) -> OffsetRange {
        OffsetRange {
            topic: "orders".into(),
            partition: 0,
            from,
            to,
        }
    }

    fn append(offsets: Vec<OffsetRange>, path: &str) -> Entry {
        Entry {
            added: vec![DataFile::sample(path)],
            offsets,
            ..Entry::new(Operation::Append)
        }
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_named_with_the_way_out_and_moving_it_aside_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let manifest = Manifest::new(storage.clone(), Table::Orders);
        let mut snapshot = Snapshot::default();
        manifest
            .commit(&mut snapshot, append(vec![range(0, 5)], "a"))
            .await
            .unwrap();
        let torn = dir.path().join("orders/_manifest").join(entry_name(2));
        std::fs::write(&torn, b"").unwrap();
        let error = manifest.snapshot().await.unwrap_err().to_string();
        for says in [
            entry_name(2).as_str(),
            "0 bytes",
            "move it out",
            "as of version 1",
        ] {
            assert!(error.contains(says), "{says:?} missing from: {error}");
        }
        std::fs::rename(&torn, dir.path().join("torn-entry")).unwrap();
        let recovered = manifest.snapshot().await.unwrap();
        assert_eq!(recovered.version, 1);
        assert_eq!(
            manifest
                .commit(&mut snapshot, append(vec![range(5, 9)], "b"))
                .await
                .unwrap(),
            2,
            "the sink commits the version again"
        );
    }

    #[tokio::test]
    async fn versions_follow_each_other_and_a_stale_writer_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let manifest = Manifest::new(storage, Table::Orders);
        let mut ours = Snapshot::default();
        let mut theirs = Snapshot::default();
        assert_eq!(
            manifest
                .commit(&mut ours, append(vec![range(0, 5)], "a"))
                .await
                .unwrap(),
            1
        );
        // The other writer has not read version 1; it takes version 2, since its range
        // follows on.
        assert_eq!(
            manifest
                .commit(&mut theirs, append(vec![range(5, 9)], "b"))
                .await
                .unwrap(),
            2
        );
        // A writer that still thinks the partition is at 5 would write 5..9 twice.
        let refused = manifest
            .commit(&mut ours, append(vec![range(5, 9)], "c"))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, LakeError::Fenced { conflict, .. } if conflict.contains("at offset 9")),
            "{refused}"
        );
        let snapshot = manifest.snapshot().await.unwrap();
        assert_eq!(snapshot.version, 2);
        assert_eq!(snapshot.rows(), 20);
        assert_eq!(snapshot.positions[&("orders".to_owned(), 0)], 9);
    }
}
