//! Lakehouse settings, strict: an unknown key is an error naming it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::LakeError;
use crate::parquet::Encoding;
use crate::storage::{S3Config, Storage};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The directory tables live in. The binary defaults it to `<data dir>/lake`.
    pub dir: Option<PathBuf>,
    /// An S3-compatible bucket instead of a directory.
    pub s3: Option<S3Config>,
    /// The sink's consumer group; members sharing it split the partitions.
    pub group_id: String,
    /// How often buffered rows are committed, ms: how far the tables trail the topics.
    pub commit_interval_ms: u64,
    /// Commit early once this many rows are buffered, to bound memory.
    pub max_buffered_rows: usize,
    /// Ready (`/readyz`) once every owned partition has been read to within this many records
    /// of its log end.
    pub ready_max_lag: i64,
    /// How many offsets back each partition remembers event ids, so a re-published event
    /// (same id, same partition, a little later) becomes one row. A member taking a partition
    /// over reads this many records before the tables' position again to rebuild the set.
    pub dedup_horizon: i64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level for the files (1 is fast; 3 to 9 trade encode time for size).
    pub zstd_level: i32,
    /// Files are deleted only this long after compaction or retention took them out (queries
    /// planned before may still read them), and files no commit names only once this old
    /// (another member may be between writing and committing them), ms.
    pub orphan_grace_ms: i64,
    /// How often compaction, retention and vacuum run, ms.
    pub compact_interval_ms: u64,
    /// A partition is compacted once it has this many small files.
    pub compact_min_files: usize,
    /// Size compacted files aim for; files under half of it count as small, bytes.
    pub compact_target_bytes: u64,
    /// The sink checkpoints a table's manifest log every this many versions, so a new reader
    /// reads the newest checkpoint and fewer than this many entries after it.
    pub checkpoint_every: u64,
    /// Days of `event_date` partitions kept, per table name (e.g. `clicks = 30`); tables not
    /// named keep everything.
    pub retention_days: std::collections::BTreeMap<String, u32>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        let encoding = Encoding::default();
        Self {
            dir: None,
            s3: None,
            group_id: "lakehouse".into(),
            commit_interval_ms: 10_000,
            max_buffered_rows: 500_000,
            ready_max_lag: 10_000,
            dedup_horizon: 20_000,
            row_group_rows: encoding.row_group_rows,
            zstd_level: encoding.zstd_level,
            orphan_grace_ms: 60 * 60_000,
            compact_interval_ms: 5 * 60_000,
            compact_min_files: 8,
            compact_target_bytes: 128 * 1024 * 1024,
            checkpoint_every: crate::manifest::checkpoint::EVERY,
            retention_days: std::collections::BTreeMap::new(),
        }
    }
}

impl LakeConfig {
    pub fn validate(&self) -> Result<(), LakeError> {
        if self.dir.is_some() && self.s3.is_some() {
            return Err(LakeError::Config(
                "set either lakehouse.dir or lakehouse.s3, not both".into(),
            ));
        }
        if self.commit_interval_ms == 0 {
            return Err(LakeError::Config(
                "lakehouse.commit_interval_ms must be positive".into(),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(LakeError::Config(
                "lakehouse.checkpoint_every must be at least 1 (versions between checkpoints of a table's log)".into(),
            ));
        }
        if self.dedup_horizon < 1 {
            return Err(LakeError::Config(
                "lakehouse.dedup_horizon must be at least 1".into(),
            ));
        }
        if self.max_buffered_rows == 0 || self.row_group_rows == 0 {
            return Err(LakeError::Config(
                "lakehouse.max_buffered_rows and lakehouse.row_group_rows must be positive".into(),
            ));
        }
        if self.compact_interval_ms == 0
            || self.compact_min_files < 2
            || self.compact_target_bytes == 0
        {
            return Err(LakeError::Config(
                "lakehouse.compact_interval_ms and compact_target_bytes must be positive and compact_min_files at least 2".into(),
            ));
        }
        if self.orphan_grace_ms < 60_000 {
            return Err(LakeError::Config(format!(
                "lakehouse.orphan_grace_ms must be at least 60000 (a minute): files younger than that may be in a commit in progress or a running query; got {}",
                self.orphan_grace_ms
            )));
        }
        if let Some(unknown) = self
            .retention_days
            .keys()
            .find(|name| model::Table::from_name(name).is_none())
        {
            let known: Vec<&str> = model::Table::ALL.iter().map(|t| t.name()).collect();
            return Err(LakeError::Config(format!(
                "lakehouse.retention_days names {unknown:?}, which is not a table (tables: {})",
                known.join(", ")
            )));
        }
        self.encoding().properties()?;
        Ok(())
    }

    pub fn encoding(&self) -> Encoding {
        Encoding {
            row_group_rows: self.row_group_rows,
            zstd_level: self.zstd_level,
        }
    }

    pub fn storage(&self) -> Result<Storage, LakeError> {
        match (&self.dir, &self.s3) {
            (_, Some(s3)) => Storage::s3(s3),
            (Some(dir), None) => Storage::local(dir),
            (None, None) => Err(LakeError::Config(
                "lakehouse.dir or lakehouse.s3 must be set (the binary puts the lake under data_dir)".into(),
            )),
        }
    }
}
