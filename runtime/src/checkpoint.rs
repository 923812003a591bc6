//! Checkpoints: one file per shard holding the shard's state *and* the next input offset that
//! state has not yet seen, so the two can never disagree.
//!
//! Protocol (what a job does every checkpoint interval, on revocation and on shutdown):
//! 1. produce every output the state owes and wait for the broker to acknowledge it;
//! 2. [`Checkpoints::save`] each shard: write `<name>.tmp`, fsync, rename over `<name>`, fsync
//!    the directory, so a crash leaves either the old checkpoint or the new one, whole;
//! 3. commit the same offsets to Kafka (only as a hint for tools; the checkpoint is the truth).
//!
//! On assignment the owner loads the shard's checkpoint and drops records below its offset:
//! the broker may redeliver from an older commit, and those records are already in the state.
//! A crash between 1 and 2 replays records whose outputs were already written; outputs are
//! keyed, so the replay rewrites them.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A checkpoint could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The disk refused (full, read-only, permissions); the job stops rather than run without
    /// durable state.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but is not a checkpoint this build can read; someone must look at it.
    #[error("checkpoint {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// A directory of per-shard checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Replaces `name`'s checkpoint with `state`, atomically. Returns the bytes written.
    pub fn save<T: Serialize>(&self, name: &str, state: &T) -> Result<usize, CheckpointError> {
        let path = self.path_of(name);
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(state).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let temporary = path.with_extension("json.tmp");
        let mut file = fs::File::create(&temporary).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&temporary, &path).map_err(io)?;
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        Ok(bytes.len())
    }

    /// `name`'s last checkpoint, or `None` if it never had one.
    pub fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CheckpointError> {
        let path = self.path_of(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_checkpoint_replaces_the_old_one_whole() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let checkpoints = Checkpoints::open(dir.path().join("job"))?;
        assert_eq!(checkpoints.load::<Vec<i64>>("clicks-0")?, None);
        checkpoints.save("clicks-0", &vec![1_i64, 2])?;
        checkpoints.save("clicks-0", &vec![3_i64])?;
        assert_eq!(checkpoints.load::<Vec<i64>>("clicks-0")?, Some(vec![3]));
        fs::write(dir.path().join("job/clicks-1.json"), b"{not json")?;
        let error = checkpoints
            .load::<Vec<i64>>("clicks-1")
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("clicks-1.json is unreadable")));
        Ok(())
    }
}
