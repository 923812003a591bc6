//! lakehouse: the topics as Parquet tables, written exactly once, and SQL over them.
//!
//! - [`rows`] turns events into Arrow rows by the schemas `model` owns (pure);
//! - [`parquet`] encodes a table's rows as zstd Parquet with statistics (pure);
//! - [`storage`] is a local directory or an S3-compatible bucket behind `object_store`;
//! - [`manifest`] is each table's log of commits: files plus the Kafka offsets they cover;
//!   [`evolution`] decides which schema changes it accepts;
//! - [`maintain`] compacts small files, drops partitions past retention and deletes what no
//!   commit names any more;
//! - [`writer`] is the one path by which rows become committed files (the sink and the
//!   benchmark's order book write through it; [`manifest`] commits are crate-private);
//! - [`sink`] is the consumer-group member that fills the tables;
//! - [`pg`] serves it all over the Postgres wire protocol, read-only, per user;
//! - [`read`] lists a table's committed files and reads them, for batch jobs;
//! - [`query`] registers the tables (as of their manifests) and the analyst views with
//!   DataFusion.

pub mod bounded;
pub mod config;
pub mod evolution;
pub mod maintain;
#[cfg(test)]
mod maintain_tests;
pub mod manifest;
pub mod parquet;
pub mod pg;
pub mod query;
pub mod read;
pub mod rows;
pub mod scope;
pub mod sink;
pub mod storage;
pub mod writer;

pub use config::LakeConfig;
pub use storage::Storage;

use model::Table;
pub(crate) use runtime::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lakehouse configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Store {
        context: String,
        source: Box<object_store::Error>,
    },
    #[error("schema: {0}")]
    Schema(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("manifest: {0}")]
    Manifest(String),
    /// Another writer already committed records this one meant to commit: it lost its
    /// partitions without noticing. Carrying on would write those records twice.
    #[error(
        "{table}: refusing to commit records another writer has already committed ({conflict}); this member restarts from the manifest"
    )]
    Fenced { table: Table, conflict: String },
    #[error("bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error("sql: {0}")]
    Sql(String),
}

impl LakeError {
    pub(crate) fn store(context: impl Into<String>, source: object_store::Error) -> LakeError {
        LakeError::Store {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl From<datafusion::error::DataFusionError> for LakeError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        LakeError::Sql(error.to_string())
    }
}
