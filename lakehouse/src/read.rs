//! The lake as batch jobs read it ([`runtime::lake::LakeFiles`]): each table's files in its
//! newest snapshot, and their bytes, from a local directory or a bucket alike.

use futures::future::BoxFuture;
use model::Table;
use runtime::lake::{LakeFile, LakeFiles, LakeReadError};

use crate::Storage;
use crate::manifest::Manifest;

#[derive(Debug, Clone)]
pub struct CommittedFiles {
    storage: Storage,
}

impl CommittedFiles {
    pub fn new(storage: Storage) -> CommittedFiles {
        CommittedFiles { storage }
    }
}

impl LakeFiles for CommittedFiles {
    fn files(&self, table: Table) -> BoxFuture<'_, Result<Vec<LakeFile>, LakeReadError>> {
        Box::pin(async move {
            let snapshot = Manifest::new(self.storage.clone(), table)
                .snapshot()
                .await
                .map_err(|error| LakeReadError(format!("{table}: {error}")))?;
            Ok(snapshot
                .files
                .into_values()
                .map(|file| LakeFile {
                    path: file.path,
                    rows: file.rows,
                    min_event_time: file.min_event_time,
                    max_event_time: file.max_event_time,
                })
                .collect())
        })
    }

    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, LakeReadError>> {
        Box::pin(async move {
            self.storage
                .get(&self.storage.path(path))
                .await
                .map_err(|error| LakeReadError(format!("{path}: {error}")))
        })
    }
}
