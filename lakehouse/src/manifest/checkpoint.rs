//! Checkpoints of a table's manifest log, so a new reader (a SQL session, a batch job, a
//! restarted sink) starts from the newest checkpoint and reads only the entries after it
//! instead of replaying every entry from version 1.
//!
//! Every [`EVERY`] versions the committer writes the whole snapshot to
//! `<table>/_checkpoints/<version>.json` and keeps the newest [`KEEP`]. A checkpoint is
//! derived state: the log stays the truth. One that cannot be read, or whose version's entry is
//! gone or is now a different commit (the newest entry was moved out after damage, as the
//! manifest's error tells an operator to do, and the sink then committed that version again),
//! is passed over with a warning for an older one, or for a replay from the start.

use std::collections::BTreeMap;

use model::Table;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{DataFile, Manifest, Snapshot, entry_name, version_named};
use crate::LakeError;
use crate::evolution::Column;
use crate::storage::Storage;

/// Versions between checkpoints: a reader then reads at most this many entries.
pub const EVERY: u64 = 100;
/// Checkpoints kept; the older one stands in when the newest cannot be used.
const KEEP: usize = 2;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u64,
    /// The commit id of the entry at `version`, to tell it from a later commit of that version.
    commit_id: String,
    files: Vec<DataFile>,
    positions: Vec<Position>,
    schema: Option<Vec<Column>>,
    removed_at: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    topic: String,
    partition: i32,
    next: i64,
}

fn dir(storage: &Storage, table: Table) -> Path {
    storage.path(&format!("{}/_checkpoints", table.name()))
}

/// Writes `snapshot` as a checkpoint and deletes all but the newest [`KEEP`].
pub(super) async fn write(
    storage: &Storage,
    table: Table,
    snapshot: &Snapshot,
) -> Result<(), LakeError> {
    let stored = Stored {
        version: snapshot.version,
        commit_id: snapshot.commit_id.clone(),
        files: snapshot.files.values().cloned().collect(),
        positions: snapshot
            .positions
            .iter()
            .map(|((topic, partition), next)| Position {
                topic: topic.clone(),
                partition: *partition,
                next: *next,
            })
            .collect(),
        schema: snapshot.schema.clone(),
        removed_at: snapshot.removed_at.clone(),
    };
    let bytes = serde_json::to_vec(&stored)
        .map_err(|e| LakeError::Manifest(format!("encoding a checkpoint: {e}")))?;
    let dir = dir(storage, table);
    storage
        .put(&dir.clone().join(entry_name(snapshot.version)), bytes)
        .await?;
    for old in versions(storage, &dir).await?.into_iter().skip(KEEP) {
        storage.delete(&dir.clone().join(entry_name(old))).await?;
    }
    Ok(())
}

/// The newest usable checkpoint of `manifest`'s table, or the empty snapshot (replay from the
/// start) when there is none.
pub(super) async fn newest(manifest: &Manifest) -> Result<Snapshot, LakeError> {
    let (storage, table) = (&manifest.storage, manifest.table);
    let dir = dir(storage, table);
    for version in versions(storage, &dir).await? {
        let path = dir.clone().join(entry_name(version));
        match usable(manifest, &path, version).await {
            Ok(snapshot) => return Ok(snapshot),
            Err(why) => tracing::warn!(
                %table,
                checkpoint = %path,
                "passing over a manifest checkpoint: {why}; reading the log from an older one"
            ),
        }
    }
    Ok(Snapshot::default())
}

/// The checkpoint at `path` as a snapshot, or why it cannot be trusted.
async fn usable(manifest: &Manifest, path: &Path, version: u64) -> Result<Snapshot, String> {
    let bytes = manifest
        .storage
        .get(path)
        .await
        .map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_slice(&bytes)
        .map_err(|e| format!("unreadable ({e}; {} bytes)", bytes.len()))?;
    if stored.version != version {
        return Err(format!("it says it is version {}", stored.version));
    }
    let entry = match manifest.entry(version).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return Err(format!("the log has no version {version} any more")),
        Err(e) => return Err(format!("its entry cannot be read: {e}")),
    };
    if entry.commit_id != stored.commit_id {
        return Err(format!(
            "version {version} is now commit {}, not the {} it was taken after",
            entry.commit_id, stored.commit_id
        ));
    }
    Ok(Snapshot {
        version: stored.version,
        commit_id: stored.commit_id,
        files: stored
            .files
            .into_iter()
            .map(|file| (file.path.clone(), file))
            .collect(),
        positions: stored
            .positions
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.next))
            .collect(),
        schema: stored.schema,
        removed_at: stored.removed_at,
    })
}

/// The checkpoints' versions, newest first.
async fn versions(storage: &Storage, dir: &Path) -> Result<Vec<u64>, LakeError> {
    let mut versions: Vec<u64> = storage
        .list(dir, None)
        .await?
        .iter()
        .filter_map(version_named)
        .collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::super::{Entry, OffsetRange, Operation};
    use super::*;

    /// Version n appends file `f<n>` covering offsets `[10(n-1), 10n)`; every fourth also
    /// compacts the file before it away.
    fn entry(n: u64) -> Entry {
        let mut entry = Entry::new(Operation::Append);
        entry.added = vec![DataFile::sample(&format!("f{n}"))];
        entry.offsets = vec![OffsetRange {
            topic: "orders".into(),
            partition: 0,
            from: 10 * (n as i64 - 1),
            to: 10 * n as i64,
        }];
        if n.is_multiple_of(4) {
            entry.removed = vec![format!("f{}", n - 1)];
        }
        entry
    }

    async fn log_of(versions: u64) -> (tempfile::TempDir, Storage, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let manifest = Manifest::new(storage.clone(), Table::Orders).checkpoint_every(5);
        let mut snapshot = Snapshot::default();
        for n in 1..=versions {
            manifest.commit(&mut snapshot, entry(n)).await.unwrap();
        }
        (dir, storage, manifest)
    }

    fn manifest_file(dir: &tempfile::TempDir, version: u64) -> std::path::PathBuf {
        dir.path()
            .join("orders/_manifest")
            .join(entry_name(version))
    }

    fn checkpoint_file(dir: &tempfile::TempDir, version: u64) -> std::path::PathBuf {
        dir.path()
            .join("orders/_checkpoints")
            .join(entry_name(version))
    }

    #[tokio::test]
    async fn a_new_reader_starts_from_the_newest_checkpoint_and_sees_the_whole_table() {
        let (dir, storage, manifest) = log_of(23).await;
        let replayed = manifest.replayed().await.unwrap();
        assert_eq!(replayed.version, 23);
        let kept = versions(&storage, &super::dir(&storage, Table::Orders))
            .await
            .unwrap();
        assert_eq!(kept, [20, 15], "the newest two checkpoints are kept");
        assert_eq!(manifest.snapshot().await.unwrap(), replayed);
        // Without the entries before the checkpoint, only a reader that starts from it still
        // sees the table.
        for version in 1..=19 {
            std::fs::remove_file(manifest_file(&dir, version)).unwrap();
        }
        assert_eq!(manifest.snapshot().await.unwrap(), replayed);
    }

    #[tokio::test]
    async fn a_damaged_checkpoint_is_passed_over_for_the_one_before() {
        let (dir, _storage, manifest) = log_of(23).await;
        let replayed = manifest.replayed().await.unwrap();
        std::fs::write(checkpoint_file(&dir, 20), b"{\"version\": 20, \"fil").unwrap();
        assert_eq!(manifest.snapshot().await.unwrap(), replayed);
        // A crash between version 20's entry and its checkpoint leaves no checkpoint at all.
        std::fs::remove_file(checkpoint_file(&dir, 20)).unwrap();
        std::fs::remove_file(checkpoint_file(&dir, 15)).unwrap();
        assert_eq!(manifest.snapshot().await.unwrap(), replayed);
    }

    #[tokio::test]
    async fn a_checkpoint_of_a_version_moved_out_or_committed_again_is_not_trusted() {
        let (dir, storage, manifest) = log_of(20).await;
        // Version 20's entry moved out after damage, as the manifest's error advises: the
        // table is as of version 19, whatever checkpoint 20 says.
        std::fs::rename(manifest_file(&dir, 20), dir.path().join("moved-out")).unwrap();
        let cut_back = manifest.snapshot().await.unwrap();
        assert_eq!(cut_back.version, 19);
        assert_eq!(cut_back, manifest.replayed().await.unwrap());
        // The sink commits version 20 again, differently, and dies before checkpointing it.
        let mut again = entry(20);
        again.version = 20;
        again.added = vec![DataFile::sample("f20-again")];
        let path = storage.path("orders/_manifest").join(entry_name(20));
        assert!(
            storage
                .create(&path, serde_json::to_vec(&again).unwrap())
                .await
                .unwrap()
        );
        let read = manifest.snapshot().await.unwrap();
        assert!(
            read.files.contains_key("f20-again"),
            "{:?}",
            read.files.keys()
        );
        assert!(!read.files.contains_key("f20"));
        assert_eq!(read, manifest.replayed().await.unwrap());
    }
}
