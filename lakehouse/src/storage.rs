//! Where tables live: a local directory by default, or an S3-compatible bucket, both behind
//! `object_store` so the sink, the manifest and DataFusion use one code path.
//!
//! Writes are whole-object puts. On a local directory `object_store` writes a temporary file
//! beside the target and renames it into place, so a reader (or a crash) never sees half a
//! file; on S3 a put is atomic by itself. Manifest entries are created with `PutMode::Create`,
//! which fails if the entry exists, so two writers can never both own one version.
//!
//! `object_store`'s local store does not fsync, so on a local directory every put is followed
//! by an fsync of the file and of each directory from its own up to the lake's root: a data
//! file is on disk before the manifest entry that names it is written, and an entry is on disk
//! before the sink moves on. A power cut then cannot leave an entry pointing at a file that
//! never reached the disk, nor an empty entry.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Deserialize;

use crate::LakeError;

/// An S3-compatible bucket (AWS, MinIO, R2, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix the tables live under, e.g. `shopstream/lake`.
    #[serde(default)]
    pub prefix: String,
    /// `https://...`; empty for AWS itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// When unset, the standard AWS environment variables and profiles are used.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints (a local MinIO).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Where the lakehouse keeps its files.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Directory(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// The store plus the prefix the tables live under.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    location: Location,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// A local directory, created if missing.
    pub fn local(dir: impl Into<PathBuf>) -> Result<Storage, LakeError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| LakeError::Io {
            context: format!("creating the lakehouse directory {}", dir.display()),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| LakeError::store(format!("opening {}", dir.display()), e))?;
        Ok(Storage {
            store: Arc::new(store),
            root: Path::default(),
            location: Location::Directory(dir),
        })
    }

    /// An S3-compatible bucket. Conditional puts (`If-None-Match`) are required for the
    /// manifest; AWS S3, MinIO and R2 support them.
    pub fn s3(config: &S3Config) -> Result<Storage, LakeError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| LakeError::store(format!("configuring bucket {}", config.bucket), e))?;
        Ok(Storage {
            store: Arc::new(store),
            root: Path::from(config.prefix.as_str()),
            location: Location::S3 {
                bucket: config.bucket.clone(),
                prefix: config.prefix.clone(),
            },
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The URL DataFusion knows this store by. One process may open several lakehouses (tests
    /// do), so the host part is unique per storage.
    pub fn url(&self) -> ObjectStoreUrl {
        let host = match &self.location {
            Location::Directory(dir) => {
                format!("dir-{:016x}", fnv(dir.to_string_lossy().as_bytes()))
            }
            Location::S3 { bucket, prefix } => {
                format!("s3-{:016x}", fnv(format!("{bucket}/{prefix}").as_bytes()))
            }
        };
        #[allow(clippy::unwrap_used)] // the host is hex digits and letters
        ObjectStoreUrl::parse(format!("lake://{host}")).unwrap()
    }

    /// `relative` under the root.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Writes a whole object, replacing any previous one; durable when this returns.
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| LakeError::store(format!("writing {path}"), e))?;
        self.sync(path).await
    }

    /// On a local directory: fsyncs the file at `path` and every directory from its own up to
    /// the root (new partition directories included). Object stores are durable on their own.
    async fn sync(&self, path: &Path) -> Result<(), LakeError> {
        let Location::Directory(root) = &self.location else {
            return Ok(());
        };
        let root = root.clone();
        let file = path
            .parts()
            .fold(root.clone(), |file, part| file.join(part.as_ref()));
        let context = format!("making {path} durable (fsync)");
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(current) = dir {
                std::fs::File::open(current)?.sync_all()?;
                if current == root {
                    break;
                }
                dir = current.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| LakeError::Io {
            context: context.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| LakeError::Io { context, source })
    }

    /// Writes a whole object only if nothing is there yet; `Ok(false)` if something is.
    pub async fn create(&self, path: &Path, bytes: Vec<u8>) -> Result<bool, LakeError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => self.sync(path).await.map(|()| true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(LakeError::store(format!("creating {path}"), e)),
        }
    }

    pub async fn get(&self, path: &Path) -> Result<Vec<u8>, LakeError> {
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| LakeError::store(format!("reading {path}"), e))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| LakeError::store(format!("reading {path}"), e))?;
        Ok(bytes.to_vec())
    }

    /// Deletes an object; deleting one that is already gone is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), LakeError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(LakeError::store(format!("deleting {path}"), e)),
        }
    }

    /// Every object under `prefix`, or after `offset` (exclusive) when given, in no
    /// particular order.
    pub async fn list(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<ObjectMeta>, LakeError> {
        let stream = match offset {
            Some(offset) => self.store.list_with_offset(Some(prefix), offset),
            None => self.store.list(Some(prefix)),
        };
        stream
            .try_collect()
            .await
            .map_err(|e| LakeError::store(format!("listing {prefix}"), e))
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
