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
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level for the files (1 is fast; 3 to 9 trade encode time for size).
    pub zstd_level: i32,
    /// Unreferenced files younger than this are left alone, ms: another member may be between
    /// writing them and committing them.
    pub orphan_grace_ms: i64,
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
            row_group_rows: encoding.row_group_rows,
            zstd_level: encoding.zstd_level,
            orphan_grace_ms: 60 * 60_000,
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
        if self.max_buffered_rows == 0 || self.row_group_rows == 0 {
            return Err(LakeError::Config(
                "lakehouse.max_buffered_rows and lakehouse.row_group_rows must be positive".into(),
            ));
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
