//! The lakehouse as batch jobs read it: a table's committed files as of now, and their bytes.
//! The binary injects the lakehouse's implementation; a job never sees its manifest, storage
//! or writer, and never reads a file no commit names.

use futures::future::BoxFuture;
use model::Table;

/// A committed Parquet file of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    /// Relative to the lake's root: what [`LakeFiles::read`] takes.
    pub path: String,
    pub rows: u64,
    /// Earliest and latest event time in the file (UTC ms), so a job can skip files outside
    /// the range it reads.
    pub min_event_time: i64,
    pub max_event_time: i64,
}

/// The lake could not list or read a table's files; the message names which and why.
#[derive(Debug, thiserror::Error)]
#[error("lakehouse: {0}")]
pub struct LakeReadError(pub String);

pub trait LakeFiles: Send + Sync + std::fmt::Debug {
    /// `table`'s files in its newest committed snapshot.
    fn files(&self, table: Table) -> BoxFuture<'_, Result<Vec<LakeFile>, LakeReadError>>;
    /// The bytes of one file [`LakeFiles::files`] listed.
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, LakeReadError>>;
}
