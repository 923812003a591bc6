//! The tantivy index on disk: opened or rebuilt by schema version, written by one
//! [`Indexer`], read by any number of searchers. Every commit carries, as tantivy's commit
//! payload, the next offset of each catalog and inventory partition it covers, so a restart
//! resumes from exactly what the index holds and never reindexes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::{Envelope, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument};

use crate::SearchError;
use crate::record::{self, Change, Invalid, ProductRecord};
use crate::schema::{Fields, SCHEMA_VERSION};
use crate::text;

/// What each commit records beside the documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub schema_version: u32,
    /// Made when the index is created: the consumer group of this index is named after it,
    /// so a new or rebuilt index reads the topics from the start and a restarted one resumes.
    pub generation: String,
    /// Next offset per `topic/partition` of what the committed documents include.
    pub positions: BTreeMap<String, i64>,
    /// Stock for products not yet upserted.
    pub orphan_stock: BTreeMap<ProductId, BTreeMap<WarehouseId, i64>>,
}

/// The index and its reader, shared by the indexer and every query.
pub struct SearchIndex {
    index: Index,
    pub fields: Fields,
    reader: IndexReader,
    dir: PathBuf,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why an index was made anew instead of opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Resumed,
    Created,
    /// Written under another schema version (or unreadable): moved aside and rebuilt.
    Rebuilt {
        why: String,
    },
}

impl SearchIndex {
    /// Opens the index under `dir`, or creates it; an index of another schema version is
    /// moved to `dir.replaced` and a new one created, to be rebuilt from the topics.
    pub fn open(dir: &Path) -> Result<(Arc<SearchIndex>, Payload, Opened), SearchError> {
        let fields = Fields::new();
        std::fs::create_dir_all(dir)
            .map_err(|e| SearchError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let mut opened = Opened::Created;
        if dir.join("meta.json").is_file() {
            match Self::existing(dir, &fields) {
                Ok((index, payload)) => {
                    return Ok((Self::wrap(index, fields, dir)?, payload, Opened::Resumed));
                }
                Err(why) => {
                    let aside = dir.with_extension("replaced");
                    let _ = std::fs::remove_dir_all(&aside);
                    std::fs::rename(dir, &aside).map_err(|e| {
                        SearchError::Io(format!("cannot move {} aside: {e}", dir.display()))
                    })?;
                    std::fs::create_dir_all(dir).map_err(|e| {
                        SearchError::Io(format!("cannot create {}: {e}", dir.display()))
                    })?;
                    tracing::warn!(
                        dir = %dir.display(),
                        aside = %aside.display(),
                        %why,
                        "search index rebuilt from the catalog topic"
                    );
                    opened = Opened::Rebuilt { why };
                }
            }
        }
        let index = Index::create_in_dir(dir, fields.schema.clone())?;
        let payload = Payload {
            schema_version: SCHEMA_VERSION,
            generation: uuid::Uuid::now_v7().simple().to_string(),
            ..Payload::default()
        };
        Ok((Self::wrap(index, fields, dir)?, payload, opened))
    }

    /// The index at `dir` if it was written under this schema, with its last payload.
    fn existing(dir: &Path, fields: &Fields) -> Result<(Index, Payload), String> {
        let index = Index::open_in_dir(dir).map_err(|e| format!("unreadable: {e}"))?;
        if index.schema() != fields.schema {
            return Err("its fields differ from this version's".into());
        }
        let metas = index.load_metas().map_err(|e| format!("unreadable: {e}"))?;
        let Some(payload) = metas.payload else {
            return Err("it has no commit of this version".into());
        };
        let payload: Payload =
            serde_json::from_str(&payload).map_err(|e| format!("its commit payload: {e}"))?;
        if payload.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "it was written under schema version {}, this build writes {SCHEMA_VERSION}",
                payload.schema_version
            ));
        }
        Ok((index, payload))
    }

    fn wrap(index: Index, fields: Fields, dir: &Path) -> Result<Arc<SearchIndex>, SearchError> {
        index
            .tokenizers()
            .register(text::ANALYZER, text::analyzer());
        index
            .tokenizers()
            .register(text::WORDS, text::words_analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Arc::new(SearchIndex {
            index,
            fields,
            reader,
            dir: dir.to_owned(),
        }))
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The committed record of `product`, if it is searchable.
    pub fn lookup(
        &self,
        searcher: &Searcher,
        product: &ProductId,
    ) -> Result<Option<ProductRecord>, SearchError> {
        let query = TermQuery::new(self.fields.id_term(product), IndexRecordOption::Basic);
        let Some((_, address)) = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        self.record(searcher, address).map(Some)
    }

    /// The record stored in the document at `address`.
    pub fn record(
        &self,
        searcher: &Searcher,
        address: tantivy::DocAddress,
    ) -> Result<ProductRecord, SearchError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let source = doc
            .get_first(self.fields.source)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        serde_json::from_str(source)
            .map_err(|e| SearchError::Corrupt(format!("stored product record: {e}")))
    }

    /// Bytes the index takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// The one writer of an index: folds catalog and inventory events into documents and
/// commits them with the positions they cover.
pub struct Indexer {
    pub index: Arc<SearchIndex>,
    writer: IndexWriter,
    /// Records changed since the last commit (`None`: deleted): newer than what searchers see.
    pending: HashMap<ProductId, Option<ProductRecord>>,
    pub payload: Payload,
    dirty: bool,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("pending", &self.pending.len())
            .field("generation", &self.payload.generation)
            .finish_non_exhaustive()
    }
}

impl Indexer {
    /// A writer with one indexing thread and `memory_bytes` of buffer (tantivy's floor is
    /// 15 MB).
    pub fn new(
        index: Arc<SearchIndex>,
        payload: Payload,
        memory_bytes: usize,
    ) -> Result<Indexer, SearchError> {
        let writer = index.index.writer_with_num_threads(1, memory_bytes)?;
        Ok(Indexer {
            index,
            writer,
            pending: HashMap::new(),
            payload,
            dirty: false,
        })
    }

    /// Whether a record at `offset` of `position` (`topic/partition`) is already in the
    /// index; if not, it is counted as applied from now on.
    pub fn take(&mut self, position: &str, offset: i64) -> bool {
        if self
            .payload
            .positions
            .get(position)
            .is_some_and(|next| offset < *next)
        {
            return false;
        }
        self.payload
            .positions
            .insert(position.to_owned(), offset + 1);
        self.dirty = true;
        true
    }

    fn current(&self, product: &ProductId) -> Result<Option<ProductRecord>, SearchError> {
        if let Some(pending) = self.pending.get(product) {
            return Ok(pending.clone());
        }
        self.index.lookup(&self.index.searcher(), product)
    }

    /// Applies one catalog or inventory event. An event that cannot be indexed comes back
    /// as `Err(Ok(reason))` for the DLQ; an index failure as `Err(Err(_))`.
    pub fn apply(&mut self, envelope: &Envelope) -> Result<(), Result<Invalid, SearchError>> {
        let product = match &envelope.event {
            model::Event::ProductUpserted(p) => &p.product_id,
            model::Event::ProductDeactivated(p) => &p.product_id,
            model::Event::StockAdjusted(s) => &s.product_id,
            _ => return Ok(()),
        };
        let current = self.current(product).map_err(Err)?;
        let change = record::fold(
            current.as_ref(),
            self.payload.orphan_stock.get(product),
            envelope,
        )
        .map_err(Ok)?;
        let fields = &self.index.fields;
        match change {
            Change::Put(record) => {
                self.payload.orphan_stock.remove(&record.product_id);
                self.writer.delete_term(fields.id_term(&record.product_id));
                self.writer
                    .add_document(fields.document(&record))
                    .map_err(|e| Err(e.into()))?;
                self.pending.insert(record.product_id.clone(), Some(record));
            }
            Change::Delete(product) => {
                self.writer.delete_term(fields.id_term(&product));
                self.pending.insert(product, None);
            }
            Change::Orphan {
                product_id,
                warehouse_id,
                on_hand,
            } => {
                self.payload
                    .orphan_stock
                    .entry(product_id)
                    .or_default()
                    .insert(warehouse_id, on_hand);
            }
            Change::None => {}
        }
        Ok(())
    }

    /// Commits what was applied with the positions it covers, then shows it to searchers.
    /// Returns whether there was anything to commit.
    pub fn commit(&mut self) -> Result<bool, SearchError> {
        if !self.dirty {
            return Ok(false);
        }
        let payload = serde_json::to_string(&self.payload)
            .map_err(|e| SearchError::Corrupt(format!("commit payload: {e}")))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.index.reader.reload()?;
        self.pending.clear();
        self.dirty = false;
        Ok(true)
    }
}
