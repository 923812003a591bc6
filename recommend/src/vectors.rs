//! Item vectors served from arroy. Each rebuild writes a fresh LMDB environment in a new
//! directory, builds arroy's trees there and commits; only then is it swapped in, so a
//! query sees the old index or the new one, never a half-built one. The old directory is
//! unlinked at once: queries still reading it keep their mapping until they finish.

#![allow(unsafe_code)]

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arroy::distances::Cosine;
use arroy::{Database, Reader, Writer};
use heed::{EnvOpenOptions, WithoutTls};
use rand::SeedableRng as _;

use crate::RecommendError;
use crate::embed::Vectors;

const PREFIX: &str = "vectors-";

struct Built {
    env: heed::Env<WithoutTls>,
    database: Database<Cosine>,
    dimensions: usize,
    items: usize,
    generation: u64,
    dir: PathBuf,
}

/// What a rebuild produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rebuilt {
    pub generation: u64,
    pub items: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The current arroy index, swapped whole.
pub struct Store {
    dir: PathBuf,
    current: RwLock<Option<Arc<Built>>>,
    /// How many times arroy's default number of tree nodes a query inspects: recall bought
    /// with time (`shopstream-bench recs ann` measures both).
    oversampling: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("generation", &self.generation())
            .finish()
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> RecommendError {
    RecommendError::Vectors(format!("{what}: {error}"))
}

impl Store {
    /// Opens `dir`, removing indexes an earlier run left: vectors are rebuilt from the
    /// learnt graph, which is what is checkpointed.
    pub fn open(dir: &Path) -> Result<Store, RecommendError> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(Store {
            dir: dir.to_owned(),
            current: RwLock::new(None),
            oversampling: AtomicUsize::new(1),
        })
    }

    fn current(&self) -> Option<Arc<Built>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_oversampling(&self, factor: usize) {
        self.oversampling.store(factor.max(1), Ordering::Relaxed);
    }

    fn effort(&self) -> NonZeroUsize {
        NonZeroUsize::new(self.oversampling.load(Ordering::Relaxed)).unwrap_or(NonZeroUsize::MIN)
    }

    pub fn generation(&self) -> u64 {
        self.current().map_or(0, |b| b.generation)
    }

    pub fn items(&self) -> usize {
        self.current().map_or(0, |b| b.items)
    }

    /// Writes `vectors` to a new index, builds it, and swaps it in.
    pub fn rebuild(
        &self,
        vectors: &Vectors,
        dimensions: usize,
        seed: u64,
    ) -> Result<Rebuilt, RecommendError> {
        let started = Instant::now();
        let generation = self.generation() + 1;
        let dir = self.dir.join(format!("{PREFIX}{generation:08}"));
        std::fs::create_dir_all(&dir)?;
        // Room for the vectors, arroy's tree nodes (about as large again) and slack.
        let map_size =
            (vectors.len() * (dimensions * 4 + 64) * 4 + (64 << 20)).next_multiple_of(4096);
        // SAFETY: heed requires that one environment is not opened twice in a process and
        // that its files are not changed behind its back; the directory is new, named by a
        // generation no other environment of this process uses, and only this store writes
        // it.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(map_size)
                .max_readers(1024)
                .open(&dir)
        }
        .map_err(|e| failed("opening the vector store", e))?;
        let mut wtxn = env.write_txn().map_err(|e| failed("vector store", e))?;
        let database: Database<Cosine> = env
            .create_database(&mut wtxn, None)
            .map_err(|e| failed("vector store", e))?;
        let writer = Writer::<Cosine>::new(database, 0, dimensions);
        for (item, vector) in vectors {
            writer
                .add_item(&mut wtxn, *item, vector)
                .map_err(|e| failed("adding a vector", e))?;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        writer
            .builder(&mut rng)
            .build(&mut wtxn)
            .map_err(|e| failed("building the vector index", e))?;
        wtxn.commit()
            .map_err(|e| failed("committing the vectors", e))?;
        let bytes = directory_bytes(&dir);
        let built = Arc::new(Built {
            env,
            database,
            dimensions,
            items: vectors.len(),
            generation,
            dir,
        });
        let old = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(built);
        if let Some(old) = old {
            // Unlinked files stay readable for queries that still map them.
            if let Err(error) = std::fs::remove_dir_all(&old.dir) {
                tracing::warn!(%error, dir = %old.dir.display(), "old vector index not removed");
            }
        }
        Ok(Rebuilt {
            generation,
            items: vectors.len(),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The `count` nearest items to `item` with cosine similarity, or None when the item has
    /// no vector (or nothing is built yet).
    pub fn nearest_to_item(
        &self,
        item: u32,
        count: usize,
    ) -> Result<Option<Vec<(u32, f32)>>, RecommendError> {
        let Some(built) = self.current() else {
            return Ok(None);
        };
        let rtxn = built
            .env
            .read_txn()
            .map_err(|e| failed("vector store", e))?;
        let reader = Reader::<Cosine>::open(&rtxn, 0, built.database)
            .map_err(|e| failed("vector store", e))?;
        let found = reader
            .nns(count + 1)
            .oversampling(self.effort())
            .by_item(&rtxn, item)
            .map_err(|e| failed("vector search", e))?;
        Ok(found.map(|list| {
            list.into_iter()
                .filter(|(other, _)| *other != item)
                .take(count)
                .map(|(other, distance)| (other, similarity(distance)))
                .collect()
        }))
    }

    /// The `count` nearest items to `vector` (which must have the index's dimensions).
    pub fn nearest_to_vector(
        &self,
        vector: &[f32],
        count: usize,
    ) -> Result<Vec<(u32, f32)>, RecommendError> {
        let Some(built) = self.current() else {
            return Ok(Vec::new());
        };
        if vector.len() != built.dimensions {
            return Ok(Vec::new());
        }
        let rtxn = built
            .env
            .read_txn()
            .map_err(|e| failed("vector store", e))?;
        let reader = Reader::<Cosine>::open(&rtxn, 0, built.database)
            .map_err(|e| failed("vector store", e))?;
        let found = reader
            .nns(count)
            .oversampling(self.effort())
            .by_vector(&rtxn, vector)
            .map_err(|e| failed("vector search", e))?;
        Ok(found
            .into_iter()
            .map(|(other, distance)| (other, similarity(distance)))
            .collect())
    }

    /// The stored vectors of `items` (those that have one).
    pub fn vectors_of(&self, items: &[u32]) -> Result<Vec<(u32, Vec<f32>)>, RecommendError> {
        let Some(built) = self.current() else {
            return Ok(Vec::new());
        };
        let rtxn = built
            .env
            .read_txn()
            .map_err(|e| failed("vector store", e))?;
        let reader = Reader::<Cosine>::open(&rtxn, 0, built.database)
            .map_err(|e| failed("vector store", e))?;
        let mut out = Vec::new();
        for item in items {
            if let Some(vector) = reader
                .item_vector(&rtxn, *item)
                .map_err(|e| failed("vector store", e))?
            {
                out.push((*item, vector));
            }
        }
        Ok(out)
    }
}

/// arroy's cosine distance is (1 - cos) / 2.
fn similarity(distance: f32) -> f32 {
    1.0 - 2.0 * distance
}

fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                // Blocks, not length: LMDB's file is as long as its map, mostly holes.
                .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                .sum()
        })
        .unwrap_or(0)
}
