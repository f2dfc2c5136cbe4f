//! [`Memory`]: memorize, recall, update, forget over the database and the derived indexes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use zocalo_core::embed::Embedder;
use zocalo_store::{with_pool, Backend, Store};

use crate::chunk::chunks;
use crate::fuse::{dedup_first, rrf, DEFAULT_RRF_K};
use crate::index::{ChunkEntry, Index};
use crate::model::{
    new_memory_id, validate_metadata, Hit, MemoryRecord, Metadata, NewMemory, Stats,
};
use crate::sync::{CatchUp, SyncState, CATCH_UP_EVERY, CHANGE_LOG_RETENTION, PRUNE_EVERY};
use crate::text::terms;
use crate::MemoryError;

const MEMORY_INSERT: &str = include_str!("sql/memory_insert.sql");
const CHUNK_INSERT: &str = include_str!("sql/chunk_insert.sql");
const MEMORY_SELECT_ALL: &str = include_str!("sql/memory_select_all.sql");
const MEMORY_GET: &str = include_str!("sql/memory_get.sql");
const CHUNK_SELECT_ALL: &str = include_str!("sql/chunk_select_all.sql");
const CHUNK_DELETE: &str = include_str!("sql/chunk_delete.sql");
const MEMORY_DELETE: &str = include_str!("sql/memory_delete.sql");
const MEMORY_UPDATE: &str = include_str!("sql/memory_update.sql");
const CHUNK_SET_VECTOR: &str = include_str!("sql/chunk_set_vector.sql");
const STATS_SCOPES: &str = include_str!("sql/stats_scopes.sql");
const STATS_CHUNKS: &str = include_str!("sql/stats_chunks.sql");
const STATS_OTHER_EMBEDDERS: &str = include_str!("sql/stats_other_embedders.sql");
const CHUNK_VECTOR_OF_MODEL: &str = include_str!("sql/chunk_vector_of_model.sql");
const CHUNK_SELECT_STALE: &str = include_str!("sql/chunk_select_stale.sql");
const CHANGE_LOCK: &str = include_str!("sql/change_lock.sql");
const CHANGE_INSERT: &str = include_str!("sql/change_insert.sql");
const CHANGE_NOTIFY: &str = include_str!("sql/change_notify.sql");
pub(crate) const CHANGE_PRUNE: &str = include_str!("sql/change_prune.sql");
pub(crate) const CHANGE_BOUNDS: &str = include_str!("sql/change_bounds.sql");

/// Inserts one memory's chunk rows inside the transaction `$tx` (a macro, so that the body is
/// compiled for each backend inside `with_pool!`).
macro_rules! insert_chunks {
    ($tx:expr, $id:expr, $texts:expr, $vectors:expr, $model:expr) => {{
        for (seq, (text, vector)) in $texts.iter().zip($vectors.iter()).enumerate() {
            let blob: Option<Vec<u8>> = vector.as_deref().map(to_blob);
            sqlx::query(CHUNK_INSERT)
                .bind($id)
                .bind(seq as i32)
                .bind(text.replace('\0', "\u{FFFD}"))
                .bind(vector.as_ref().and($model))
                .bind(blob)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Appends one `memory_changes` row per `(memory id, op)` of `$changes` inside the
/// transaction `$tx` and evaluates to their seqs; prunes the log too when `$prune` is
/// `Some(cutoff ms)`. Every write calls it last, just before committing: on Postgres it first
/// takes the writers' advisory lock, held until the commit, so that change rows commit in seq
/// order (a reader that has seen seq N has seen everything below N), and nothing else is
/// locked after it (no lock-order deadlock with row locks the write already holds); and it
/// notifies listening handles ([`Memory::spawn_sync`]) so they need not wait for their timer.
macro_rules! log_changes {
    ($tx:expr, $backend:expr, $changes:expr, $prune:expr) => {{
        if $backend == Backend::Postgres {
            sqlx::query(CHANGE_LOCK).execute(&mut *$tx).await?;
        }
        let at = now_ms();
        let mut seqs: Vec<i64> = Vec::new();
        for (id, op) in $changes {
            let seq: i64 = sqlx::query_scalar(CHANGE_INSERT)
                .bind(id)
                .bind(op)
                .bind(at)
                .fetch_one(&mut *$tx)
                .await?;
            seqs.push(seq);
        }
        if $backend == Backend::Postgres && !seqs.is_empty() {
            sqlx::query(CHANGE_NOTIFY).execute(&mut *$tx).await?;
        }
        if let Some(cutoff) = $prune {
            sqlx::query(CHANGE_PRUNE)
                .bind(cutoff)
                .execute(&mut *$tx)
                .await?;
        }
        seqs
    }};
}

/// Texts per embedder call (and per progress report).
const EMBED_BATCH: usize = 64;
/// Chunks per transaction of [`Memory::reindex`]: what an interrupted run can lose.
pub const REINDEX_BATCH: usize = 256;

/// What [`Memory::reindex`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReindexReport {
    /// The embedder the vectors are now from.
    pub embedder: String,
    /// Chunks that had no vector.
    pub missing: usize,
    /// Chunks whose vector another embedder made, per embedder.
    pub replaced: BTreeMap<String, usize>,
    /// Chunks given a vector (fewer than found when memories changed meanwhile).
    pub embedded: usize,
    /// Memories those chunks belong to.
    pub memories: usize,
}

/// One line for people: "reindexed 12 chunks of 5 memories with E (3 without a vector, 9
/// from F)".
impl std::fmt::Display for ReindexReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reindexed {} chunks of {} memories with {} ({} without a vector",
            self.embedded, self.memories, self.embedder, self.missing
        )?;
        for (other, n) in &self.replaced {
            write!(f, ", {n} from {other}")?;
        }
        f.write_str(")")
    }
}

/// Which retrievers a search uses. [`Retrieval::Hybrid`] is the product; the others exist so
/// that benchmarks and tests can compare against each half alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retrieval {
    Hybrid,
    Keyword,
    Dense,
}

/// How the two rankings become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusion {
    /// Reciprocal rank: `Σ weight / (rrf_k + rank)` over the lists a memory is in.
    Rrf,
    /// Scores: `keyword_weight · bm25 / best bm25 + dense_weight · cosine`, over the union of
    /// both candidate lists; every candidate gets its cosine (from its vectors), a memory
    /// outside BM25's list counts 0 there. Unlike ranks, scores keep how far apart two
    /// candidates are, so a weak dense signal nudges close keyword hits instead of pushing
    /// its own list's top into the results.
    Scores,
}

/// Tuning knobs; the defaults are the measured choice (docs/BENCHMARKS.md, "Memory").
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Words per chunk: all-MiniLM reads 256 word pieces, about 190 English words.
    pub chunk_words: usize,
    pub chunk_overlap: usize,
    /// Chunks each retriever hands to the fusion.
    pub candidates: usize,
    pub rrf_k: f64,
    pub keyword_weight: f64,
    pub dense_weight: f64,
    pub fusion: Fusion,
    /// Also index metadata string values (speaker, date, …) as keywords.
    pub index_metadata: bool,
    /// Embed each chunk together with the memory's `context` metadata (e.g. the neighbouring
    /// turns of a conversation): the vector then carries what a short turn ("Yes, last
    /// week!") is about. The memory's text, and what a search returns, stay as they are.
    pub embed_context: bool,
    /// Halve a memory's fused score every this many days of age (None: no recency weighting).
    pub recency_half_life_days: Option<f64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            chunk_words: 150,
            chunk_overlap: 30,
            candidates: 100,
            rrf_k: DEFAULT_RRF_K,
            keyword_weight: 1.0,
            // LoCoMo (docs/BENCHMARKS.md): MiniLM alone is far weaker than BM25 on chat turns,
            // and rank fusion let it push weak hits into the top 5 (R@5 below BM25's). Score
            // fusion with weight 0.5 had the best R@5 on the tuning half (conversations 0-4)
            // of 0.1, 0.2, 0.3, 0.5 and 1, with and without embedding the context.
            dense_weight: 0.5,
            fusion: Fusion::Scores,
            index_metadata: true,
            embed_context: false,
            recency_half_life_days: None,
        }
    }
}

/// Scoped long-term memory on a [`Store`]. The database is the truth; the keyword and vector
/// indexes are built from it on first use (or [`Memory::open`]), kept current by every write
/// through this handle, and brought up to date with other processes' writes from the change
/// log ([`Memory::sync`]; `recall` does it by itself, at most every 250 ms). Cheap to share
/// behind an `Arc`.
pub struct Memory {
    pub(crate) store: Store,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    /// The embedder's id, shared by every index entry that records it.
    model: Option<Arc<str>>,
    config: MemoryConfig,
    index: RwLock<Index>,
    loaded: OnceCell<()>,
    /// Where the indexes are in the change log. Held by every write from before its
    /// transaction until its index change is made, and by a sync from reading rows until
    /// applying them: so a sync never puts back an older state of a memory over a write of
    /// this handle that committed after the sync read it.
    pub(crate) sync: tokio::sync::Mutex<SyncState>,
    /// When `recall` should next read the change log.
    pub(crate) catch_up: Mutex<CatchUp>,
    /// When this handle last pruned the change log (ms since the epoch; 0: never).
    pub(crate) last_prune_ms: AtomicI64,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.model_id().to_owned()),
            )
            .field("config", &self.config)
            .finish()
    }
}

impl Memory {
    /// A handle that loads its indexes on first use. Without an embedder, memory runs on
    /// keywords alone (and fills in vectors once one is configured).
    pub fn new(store: Store, embedder: Option<Arc<dyn Embedder>>, config: MemoryConfig) -> Self {
        let dim = embedder.as_ref().map_or(0, |e| e.dim());
        Self {
            store,
            model: embedder.as_ref().map(|e| Arc::from(e.model_id())),
            embedder,
            config,
            index: RwLock::new(Index::new(dim)),
            loaded: OnceCell::new(),
            sync: tokio::sync::Mutex::new(SyncState::default()),
            catch_up: Mutex::new(CatchUp::default()),
            last_prune_ms: AtomicI64::new(0),
        }
    }

    /// [`Memory::new`] and build the indexes now.
    pub async fn open(
        store: Store,
        embedder: Option<Arc<dyn Embedder>>,
        config: MemoryConfig,
    ) -> Result<Self, MemoryError> {
        let m = Self::new(store, embedder, config);
        m.ensure_loaded().await?;
        Ok(m)
    }

    pub fn embedder_id(&self) -> Option<&str> {
        self.embedder.as_ref().map(|e| e.model_id())
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Builds the indexes from the database once; vectors missing or made by another model
    /// are computed (and stored) first.
    pub async fn ensure_loaded(&self) -> Result<(), MemoryError> {
        self.loaded
            .get_or_try_init(|| self.load())
            .await
            .map(|_| ())
    }

    async fn load(&self) -> Result<(), MemoryError> {
        let mut state = self.sync.lock().await;
        let (index, last) = self.build_index().await?;
        *self.write_index() = index;
        state.reset(last);
        self.mark_checked();
        Ok(())
    }

    /// The indexes built from every row, and the change seq they include: the log's newest
    /// seq is read BEFORE the rows, so a change committed after it is either in the rows or
    /// past the seq (and applied again by the next sync, which is harmless).
    pub(crate) async fn build_index(&self) -> Result<(Index, i64), MemoryError> {
        let (_, last): (Option<i64>, Option<i64>) =
            with_pool!(self.store.pool(), |p| sqlx::query_as(CHANGE_BOUNDS)
                .fetch_one(p)
                .await)?;
        let last = last.unwrap_or(0);
        let rows: Vec<MemoryRow> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(MEMORY_SELECT_ALL)
                .fetch_all(p)
                .await)?;
        let chunk_rows: Vec<ChunkRow> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(CHUNK_SELECT_ALL)
                .fetch_all(p)
                .await)?;
        let model = self.embedder_id().map(str::to_owned);
        // Vectors computed here: only those missing, and only by an in-process embedder.
        // Vectors of another embedder are left for `reindex` (the search refuses meanwhile),
        // and a remote embedder never embeds a whole store by itself.
        let stale: Vec<usize> = if self.fills_missing() {
            chunk_rows
                .iter()
                .enumerate()
                .filter(|(_, c)| c.vector.is_none())
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        let records = rows
            .into_iter()
            .map(MemoryRow::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut fresh: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        if !stale.is_empty() {
            tracing::info!(chunks = stale.len(), "memory: computing missing vectors");
            let metadata: std::collections::HashMap<&str, &Metadata> = records
                .iter()
                .map(|r| (r.id.as_str(), &r.metadata))
                .collect();
            let none = Metadata::new();
            let texts: Vec<String> = stale
                .iter()
                .map(|&i| {
                    let c = &chunk_rows[i];
                    let meta = metadata.get(c.memory_id.as_str()).copied().unwrap_or(&none);
                    self.embed_text(&c.text, meta)
                })
                .collect();
            let vectors = self.embed_all(texts, &|_| {}).await?;
            let blobs: Vec<Vec<u8>> = vectors.iter().map(|v| to_blob(v)).collect();
            // Stored for the next load; no change rows: the memories are the same, and a
            // process using this model computes the same vectors itself (one using another
            // embedder sees them as foreign at its next load). The text must still match, so a
            // vector never lands on a chunk that another process rewrote meanwhile.
            with_pool!(self.store.pool(), |p| async {
                let mut tx = p.begin().await?;
                for (&i, blob) in stale.iter().zip(&blobs) {
                    sqlx::query(CHUNK_SET_VECTOR)
                        .bind(&chunk_rows[i].memory_id)
                        .bind(chunk_rows[i].seq)
                        .bind(model.as_deref())
                        .bind(blob)
                        .bind(&chunk_rows[i].text)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await)?;
            fresh = stale.into_iter().zip(vectors).collect();
        }
        let mut by_memory: BTreeMap<&str, Vec<(usize, &ChunkRow)>> = BTreeMap::new();
        for (i, c) in chunk_rows.iter().enumerate() {
            by_memory
                .entry(c.memory_id.as_str())
                .or_default()
                .push((i, c));
        }
        let mut index = Index::new(self.embedder.as_ref().map_or(0, |e| e.dim()));
        for record in records {
            let chunk_list = by_memory.remove(record.id.as_str()).unwrap_or_default();
            let mut entries = Vec::with_capacity(chunk_list.len());
            for (i, c) in chunk_list {
                let entry = match fresh.remove(&i) {
                    Some(v) => ChunkEntry {
                        terms: self.chunk_terms(&c.text, &record.metadata),
                        vector: Some(v),
                        foreign: None,
                        stored: self.model.clone(),
                    },
                    None => self.stored_entry(
                        &record.id,
                        &c.text,
                        &record.metadata,
                        c.model.as_deref(),
                        c.vector.as_deref(),
                    ),
                };
                entries.push(entry);
            }
            index.insert(record, entries);
        }
        if !index.foreign().is_empty() {
            tracing::warn!(
                embedder = ?model,
                others = ?index.foreign(),
                "memory: vectors of another embedder are stored; meaning search is refused until `zocalo memory reindex`"
            );
        }
        Ok((index, last))
    }

    /// Stores one memory (chunked and embedded) and indexes it.
    pub async fn memorize(&self, new: NewMemory) -> Result<MemoryRecord, MemoryError> {
        let mut out = self.memorize_many(vec![new], &|_| {}).await?;
        out.pop()
            .ok_or_else(|| MemoryError::Corrupt("nothing stored".into()))
    }

    /// Stores many memories in ONE transaction: all or nothing. `progress` gets the number of
    /// memories embedded so far (embedding is the slow part).
    pub async fn memorize_many(
        &self,
        items: Vec<NewMemory>,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Vec<MemoryRecord>, MemoryError> {
        for item in &items {
            item.validate()?;
        }
        self.ensure_loaded().await?;
        let now = now_ms();
        let mut records = Vec::with_capacity(items.len());
        let mut chunk_texts: Vec<Vec<String>> = Vec::with_capacity(items.len());
        for item in items {
            chunk_texts.push(chunks(
                &item.text,
                self.config.chunk_words,
                self.config.chunk_overlap,
            ));
            records.push(MemoryRecord {
                id: new_memory_id(),
                scope: item.scope,
                text: item.text.replace('\0', "\u{FFFD}"),
                metadata: item.metadata,
                source: item.source,
                created_at: from_ms(now)?,
                updated_at: from_ms(now)?,
            });
        }
        let embed_texts: Vec<Vec<String>> = chunk_texts
            .iter()
            .zip(&records)
            .map(|(texts, r)| self.embed_texts(texts, &r.metadata))
            .collect();
        let vectors = self.embed_grouped(&embed_texts, progress).await?;
        let model = self.embedder_id().map(str::to_owned);
        let backend = self.store.backend();
        let mut state = self.sync.lock().await;
        let prune = self.prune_due();
        let seqs = with_pool!(self.store.pool(), |p| async {
            let mut tx = p.begin().await?;
            for (r, (texts, vecs)) in records.iter().zip(chunk_texts.iter().zip(&vectors)) {
                sqlx::query(MEMORY_INSERT)
                    .bind(&r.id)
                    .bind(&r.scope)
                    .bind(&r.text)
                    .bind(serde_json::Value::Object(r.metadata.clone()).to_string())
                    .bind(r.source.as_deref())
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                insert_chunks!(tx, r.id.as_str(), texts, vecs, model.as_deref());
            }
            let changes = records.iter().map(|r| (r.id.as_str(), "upsert"));
            let seqs = log_changes!(tx, backend, changes, prune);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(seqs)
        }
        .await)?;
        {
            let mut index = self.write_index();
            for (r, (texts, vecs)) in records.iter().zip(chunk_texts.into_iter().zip(vectors)) {
                let entries = self.entries(&texts, vecs, &r.metadata);
                index.insert(r.clone(), entries);
            }
        }
        state.applied_own(seqs);
        Ok(records)
    }

    /// Replaces a memory's text and/or metadata (re-chunked and re-embedded).
    pub async fn update(
        &self,
        id: &str,
        text: Option<String>,
        metadata: Option<Metadata>,
    ) -> Result<MemoryRecord, MemoryError> {
        self.ensure_loaded().await?;
        let mut record = self
            .get(id)
            .await?
            .ok_or_else(|| MemoryError::UnknownMemory(id.to_owned()))?;
        if let Some(t) = text {
            if t.trim().is_empty() {
                return Err(MemoryError::EmptyText);
            }
            record.text = t.replace('\0', "\u{FFFD}");
        }
        if let Some(m) = metadata {
            validate_metadata(&m)?;
            record.metadata = m;
        }
        let now = now_ms();
        record.updated_at = from_ms(now)?;
        let texts = chunks(
            &record.text,
            self.config.chunk_words,
            self.config.chunk_overlap,
        );
        let mut vectors = self
            .embed_grouped(&[self.embed_texts(&texts, &record.metadata)], &|_| {})
            .await?;
        let vecs = vectors.pop().unwrap_or_default();
        let model = self.embedder_id().map(str::to_owned);
        let backend = self.store.backend();
        let mut state = self.sync.lock().await;
        let prune = self.prune_due();
        let seqs = with_pool!(self.store.pool(), |p| async {
            let mut tx = p.begin().await?;
            let n = sqlx::query(MEMORY_UPDATE)
                .bind(id)
                .bind(&record.text)
                .bind(serde_json::Value::Object(record.metadata.clone()).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                // Forgotten since we read it: nothing to change (the transaction rolls back).
                return Ok(None);
            }
            sqlx::query(CHUNK_DELETE).bind(id).execute(&mut *tx).await?;
            insert_chunks!(tx, id, texts, vecs, model.as_deref());
            let seqs = log_changes!(tx, backend, [(id, "upsert")], prune);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(seqs))
        }
        .await)?;
        let Some(seqs) = seqs else {
            return Err(MemoryError::UnknownMemory(id.to_owned()));
        };
        let entries = self.entries(&texts, vecs, &record.metadata);
        self.write_index().insert(record.clone(), entries);
        state.applied_own(seqs);
        Ok(record)
    }

    /// Deletes a memory for good: its rows, and its entries in every index.
    pub async fn forget(&self, id: &str) -> Result<(), MemoryError> {
        self.ensure_loaded().await?;
        let backend = self.store.backend();
        let mut state = self.sync.lock().await;
        let prune = self.prune_due();
        let (deleted, seqs) = with_pool!(self.store.pool(), |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(CHUNK_DELETE).bind(id).execute(&mut *tx).await?;
            let n = sqlx::query(MEMORY_DELETE)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let seqs = if n > 0 {
                log_changes!(tx, backend, [(id, "delete")], prune)
            } else {
                Vec::new()
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>((n, seqs))
        }
        .await)?;
        let was_indexed = self.write_index().remove(id);
        state.applied_own(seqs);
        if deleted == 0 && !was_indexed {
            return Err(MemoryError::UnknownMemory(id.to_owned()));
        }
        Ok(())
    }

    /// One memory, read from the database.
    pub async fn get(&self, id: &str) -> Result<Option<MemoryRecord>, MemoryError> {
        let row: Option<MemoryRow> = with_pool!(self.store.pool(), |p| sqlx::query_as(MEMORY_GET)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        row.map(MemoryRow::decode).transpose()
    }

    /// Hybrid search in `scopes`: the best `limit` memories for `query`, best first.
    pub async fn recall(
        &self,
        query: &str,
        scopes: &[&str],
        limit: usize,
    ) -> Result<Vec<Hit>, MemoryError> {
        self.recall_with(query, scopes, limit, Retrieval::Hybrid)
            .await
    }

    /// [`Memory::recall`] with a choice of retrievers.
    pub async fn recall_with(
        &self,
        query: &str,
        scopes: &[&str],
        limit: usize,
        mode: Retrieval,
    ) -> Result<Vec<Hit>, MemoryError> {
        self.ensure_loaded().await?;
        self.catch_up().await;
        if let (Some(e), Retrieval::Hybrid | Retrieval::Dense) = (&self.embedder, mode) {
            let others = self.foreign_vectors();
            if !others.is_empty() {
                return Err(MemoryError::MixedEmbedders {
                    configured: e.model_id().to_owned(),
                    others,
                });
            }
        }
        let vector = match (&self.embedder, mode) {
            (Some(_), Retrieval::Hybrid | Retrieval::Dense) if !query.trim().is_empty() => {
                self.embed_all(vec![query.to_owned()], &|_| {}).await?.pop()
            }
            _ => None,
        };
        Ok(self.search(query, vector.as_deref(), scopes, limit, mode))
    }

    /// The search itself, with the query's vector already computed (None: keywords only).
    /// Call [`Memory::ensure_loaded`] first; this does no I/O, so it sees other processes'
    /// writes as of the last [`Memory::sync`] (which `recall` and [`Memory::spawn_sync`] run).
    pub fn search(
        &self,
        query: &str,
        query_vector: Option<&[f32]>,
        scopes: &[&str],
        limit: usize,
        mode: Retrieval,
    ) -> Vec<Hit> {
        if limit == 0 || query.trim().is_empty() {
            return Vec::new();
        }
        let index = self.read_index();
        let scope_ids: Vec<u32> = scopes.iter().filter_map(|s| index.scope_id(s)).collect();
        let n = self.config.candidates.max(limit);
        let keyword = if mode == Retrieval::Dense {
            Vec::new()
        } else {
            index.search_bm25(&terms(query), &scope_ids, n)
        };
        let query_vector = query_vector.filter(|_| mode != Retrieval::Keyword);
        let dense = query_vector
            .map(|q| index.search_dense(q, &scope_ids, n))
            .unwrap_or_default();
        let mut fused = match self.config.fusion {
            Fusion::Rrf => {
                let mut lists = Vec::new();
                if mode != Retrieval::Dense {
                    let ids = dedup_first(keyword.iter().filter_map(|(s, _)| index.memory_of(*s)));
                    lists.push((self.config.keyword_weight, ids));
                }
                if query_vector.is_some() {
                    let ids = dedup_first(dense.iter().filter_map(|(s, _)| index.memory_of(*s)));
                    lists.push((self.config.dense_weight, ids));
                }
                rrf(&lists, self.config.rrf_k)
            }
            Fusion::Scores => {
                let mut scores: HashMap<Arc<str>, f64> = HashMap::new();
                // BM25 relative to the best hit (a memory counts by its best chunk, which
                // comes first in the list).
                let best = keyword
                    .first()
                    .map_or(1.0, |h| f64::from(h.1).max(f64::MIN_POSITIVE));
                for (slot, score) in &keyword {
                    if let Some(id) = index.memory_of(*slot) {
                        scores
                            .entry(id.clone())
                            .or_insert(self.config.keyword_weight * f64::from(*score) / best);
                    }
                }
                for (slot, _) in &dense {
                    if let Some(id) = index.memory_of(*slot) {
                        scores.entry(id.clone()).or_insert(0.0);
                    }
                }
                if let Some(q) = query_vector {
                    for (id, score) in &mut scores {
                        let cos = index.cosine(id, q).unwrap_or(0.0);
                        *score += self.config.dense_weight * f64::from(cos);
                    }
                }
                let mut v: Vec<(Arc<str>, f64)> = scores.into_iter().collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v
            }
        };
        if let Some(days) = self.config.recency_half_life_days.filter(|d| *d > 0.0) {
            let now = Utc::now();
            for (id, score) in &mut fused {
                if let Some(r) = index.get(id) {
                    let age = (now - r.created_at).num_seconds().max(0) as f64 / 86_400.0;
                    *score *= 0.5f64.powf(age / days);
                }
            }
            fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        fused
            .into_iter()
            .filter_map(|(id, score)| {
                index.get(&id).map(|r| Hit {
                    id: r.id.clone(),
                    text: r.text.clone(),
                    score,
                    scope: r.scope.clone(),
                    metadata: r.metadata.clone(),
                    created_at: r.created_at,
                })
            })
            .take(limit)
            .collect()
    }

    /// Gives every chunk whose vector is missing or was made by another embedder a vector of
    /// this handle's embedder, in batches of [`REINDEX_BATCH`] chunks: each batch is stored in
    /// one transaction with change rows for its memories (so other processes re-read them),
    /// so an interrupted run leaves every chunk either done or still to do, and a rerun
    /// continues where it stopped. `progress(done, total)` is called after each batch (and
    /// once with 0 first).
    pub async fn reindex(
        &self,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ReindexReport, MemoryError> {
        let Some(embedder) = self.embedder.clone() else {
            return Err(MemoryError::NoEmbedder);
        };
        self.ensure_loaded().await?;
        let model = embedder.model_id().to_owned();
        let rows: Vec<StaleRow> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(CHUNK_SELECT_STALE)
                .bind(&model)
                .fetch_all(p)
                .await)?;
        let mut report = ReindexReport {
            embedder: model.clone(),
            ..ReindexReport::default()
        };
        for r in &rows {
            match &r.model {
                Some(m) => *report.replaced.entry(m.clone()).or_insert(0) += 1,
                None => report.missing += 1,
            }
        }
        let total = rows.len();
        progress(0, total);
        let backend = self.store.backend();
        let mut memories: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for batch in rows.chunks(REINDEX_BATCH) {
            let texts: Vec<String> = batch
                .iter()
                .map(|r| {
                    let meta = match serde_json::from_str(&r.metadata) {
                        Ok(serde_json::Value::Object(m)) => m,
                        _ => Metadata::new(),
                    };
                    self.embed_text(&r.text, &meta)
                })
                .collect();
            let vectors = self.embed_all(texts, &|_| {}).await?;
            let blobs: Vec<Vec<u8>> = vectors.iter().map(|v| to_blob(v)).collect();
            let ids: std::collections::BTreeSet<&str> =
                batch.iter().map(|r| r.memory_id.as_str()).collect();
            let mut state = self.sync.lock().await;
            let prune = self.prune_due();
            let (set, seqs) = with_pool!(self.store.pool(), |p| async {
                let mut tx = p.begin().await?;
                let mut set = 0u64;
                for (r, blob) in batch.iter().zip(&blobs) {
                    // The text must still match: a memory rewritten meanwhile has new
                    // chunks (with their own vectors) and keeps them.
                    set += sqlx::query(CHUNK_SET_VECTOR)
                        .bind(&r.memory_id)
                        .bind(r.seq)
                        .bind(model.as_str())
                        .bind(blob)
                        .bind(&r.text)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                let changes = ids.iter().map(|id| (*id, "upsert"));
                let seqs = log_changes!(tx, backend, changes, prune);
                tx.commit().await?;
                Ok::<_, sqlx::Error>((set, seqs))
            }
            .await)?;
            // This handle's indexes take the memories back from their rows, now with this
            // embedder's vectors.
            self.apply(&ids).await?;
            state.applied_own(seqs);
            drop(state);
            report.embedded += usize::try_from(set).unwrap_or(usize::MAX);
            memories.extend(ids);
            progress(report.embedded.min(total), total);
        }
        report.memories = memories.len();
        Ok(report)
    }

    /// Counts from the database (the truth), plus the embedder in use.
    pub async fn stats(&self) -> Result<Stats, MemoryError> {
        let scopes: Vec<(String, i64)> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(STATS_SCOPES)
                .fetch_all(p)
                .await)?;
        let (chunks, vectors): (i64, i64) =
            with_pool!(self.store.pool(), |p| sqlx::query_as(STATS_CHUNKS)
                .bind(self.embedder_id())
                .fetch_one(p)
                .await)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        // A provider's embedder knows its dimension once it answered: before that, the
        // length of a vector it stored says it.
        let mut dim = self.embedder.as_ref().map(|e| e.dim());
        if dim == Some(0) {
            dim = Some(self.read_index().dim());
        }
        if let (Some(0), Some(m)) = (dim, self.embedder_id()) {
            let blob: Option<Vec<u8>> = with_pool!(self.store.pool(), |p| sqlx::query_scalar(
                CHUNK_VECTOR_OF_MODEL
            )
            .bind(m)
            .fetch_optional(p)
            .await)?;
            dim = blob.map(|b| b.len() / 4).filter(|d| *d > 0);
        }
        let others: Vec<(String, i64)> = match self.embedder_id() {
            Some(m) => with_pool!(self.store.pool(), |p| sqlx::query_as(STATS_OTHER_EMBEDDERS)
                .bind(m)
                .fetch_all(p)
                .await)?,
            None => Vec::new(),
        };
        Ok(Stats {
            other_embedders: others.into_iter().map(|(m, n)| (m, count(n))).collect(),
            memories: scopes.iter().map(|(_, n)| count(*n)).sum(),
            chunks: count(chunks),
            vectors: count(vectors),
            scopes: scopes.into_iter().map(|(s, n)| (s, count(n))).collect(),
            embedder: self.embedder_id().map(str::to_owned),
            dim,
        })
    }

    /// Memories held in the in-process index (for tests and diagnostics).
    pub fn indexed(&self) -> (usize, usize) {
        let index = self.read_index();
        (index.len(), index.chunk_count())
    }

    /// The ids of the memories in the in-process index, sorted (for tests and diagnostics).
    pub fn indexed_ids(&self) -> Vec<String> {
        let mut ids = self.read_index().ids();
        ids.sort_unstable();
        ids
    }

    /// Whether this handle should prune the change log in its next write (at most once per
    /// [`PRUNE_EVERY`]); the cutoff in ms if so.
    pub(crate) fn prune_due(&self) -> Option<i64> {
        let now = now_ms();
        let every = i64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(i64::MAX);
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every {
            return None;
        }
        self.last_prune_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let keep = i64::try_from(CHANGE_LOG_RETENTION.as_millis()).unwrap_or(i64::MAX);
        Some(now.saturating_sub(keep))
    }

    /// The change log was just read (a sync, or the load): `recall` need not for a while.
    pub(crate) fn mark_checked(&self) {
        let mut c = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        c.next = Some(Instant::now() + CATCH_UP_EVERY);
    }

    /// Whether this handle computes missing vectors of stored chunks by itself (at load and
    /// sync): with an in-process embedder only.
    pub(crate) fn fills_missing(&self) -> bool {
        self.embedder.as_ref().is_some_and(|e| !e.remote())
    }

    /// A stored chunk as the indexes take it: with its vector if this handle's embedder made
    /// it, flagged foreign if another embedder did, without a vector otherwise.
    pub(crate) fn stored_entry(
        &self,
        memory: &str,
        text: &str,
        metadata: &Metadata,
        model: Option<&str>,
        vector: Option<&[u8]>,
    ) -> ChunkEntry {
        let terms = self.chunk_terms(text, metadata);
        let stored: Option<Arc<str>> = match (vector, model) {
            (Some(_), Some(m)) if self.model.as_deref() == Some(m) => self.model.clone(),
            (Some(_), Some(m)) => Some(Arc::from(m)),
            _ => None,
        };
        let Some(ours) = self.embedder_id() else {
            // Keywords only: no vector is compared, whoever made it.
            return ChunkEntry {
                terms,
                vector: None,
                foreign: None,
                stored,
            };
        };
        match (&stored, vector) {
            (Some(m), Some(blob)) if &**m == ours => {
                let dim = self.embedder.as_ref().map_or(0, |e| e.dim());
                let vector = match from_blob(blob) {
                    Ok(v) if dim == 0 || v.len() == dim => Some(v),
                    Ok(v) => {
                        tracing::warn!(
                            memory,
                            len = v.len(),
                            dim,
                            "memory: stored vector of the wrong length left out"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(memory, error = %e, "memory: unreadable stored vector left out");
                        None
                    }
                };
                ChunkEntry {
                    terms,
                    vector,
                    foreign: None,
                    stored,
                }
            }
            (Some(m), _) => ChunkEntry {
                terms,
                vector: None,
                foreign: Some(m.clone()),
                stored,
            },
            (None, _) => ChunkEntry {
                terms,
                vector: None,
                foreign: None,
                stored,
            },
        }
    }

    /// Chunks in the indexes whose stored vectors another embedder made, per embedder id
    /// (what makes `recall` refuse meaning search until `reindex`).
    pub fn foreign_vectors(&self) -> Vec<(String, usize)> {
        self.read_index()
            .foreign()
            .iter()
            .map(|(m, n)| (m.to_string(), *n))
            .collect()
    }

    /// What is embedded for a chunk: the chunk, plus the memory's `context` metadata when
    /// [`MemoryConfig::embed_context`] is on.
    pub(crate) fn embed_text(&self, chunk: &str, metadata: &Metadata) -> String {
        match metadata.get("context").and_then(|v| v.as_str()) {
            Some(ctx) if self.config.embed_context && !ctx.trim().is_empty() => {
                format!("{chunk}\n{ctx}")
            }
            _ => chunk.to_owned(),
        }
    }

    fn embed_texts(&self, chunks: &[String], metadata: &Metadata) -> Vec<String> {
        chunks
            .iter()
            .map(|c| self.embed_text(c, metadata))
            .collect()
    }

    pub(crate) fn chunk_terms(&self, text: &str, metadata: &Metadata) -> Vec<String> {
        let mut t = terms(text);
        if self.config.index_metadata {
            for v in metadata.values() {
                if let Some(s) = v.as_str() {
                    t.extend(terms(s));
                }
            }
        }
        t
    }

    fn entries(
        &self,
        texts: &[String],
        vectors: Vec<Option<Vec<f32>>>,
        metadata: &Metadata,
    ) -> Vec<ChunkEntry> {
        texts
            .iter()
            .zip(vectors)
            .map(|(t, vector)| ChunkEntry {
                terms: self.chunk_terms(t, metadata),
                stored: vector.as_ref().and(self.model.clone()),
                vector,
                foreign: None,
            })
            .collect()
    }

    /// Vectors for each memory's chunks (None everywhere without an embedder).
    async fn embed_grouped(
        &self,
        groups: &[Vec<String>],
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Vec<Vec<Option<Vec<f32>>>>, MemoryError> {
        if self.embedder.is_none() {
            progress(groups.len());
            return Ok(groups.iter().map(|g| vec![None; g.len()]).collect());
        }
        let flat: Vec<String> = groups.iter().flatten().cloned().collect();
        // Progress in memories: map chunks done back to the memories they finish.
        let ends: Vec<usize> = groups
            .iter()
            .scan(0, |acc, g| {
                *acc += g.len();
                Some(*acc)
            })
            .collect();
        let report = |chunks_done: usize| progress(ends.partition_point(|&e| e <= chunks_done));
        let mut vectors = self.embed_all(flat, &report).await?.into_iter();
        Ok(groups
            .iter()
            .map(|g| g.iter().map(|_| vectors.next()).collect())
            .collect())
    }

    /// Embeds `texts` in batches on a blocking thread; checks shape, re-normalises.
    pub(crate) async fn embed_all(
        &self,
        texts: Vec<String>,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Vec<Vec<f32>>, MemoryError> {
        let Some(embedder) = self.embedder.clone() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            let batch = batch.to_vec();
            let e = embedder.clone();
            let got = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                e.embed(&refs).map(|v| (refs.len(), v))
            })
            .await
            .map_err(|e| MemoryError::Corrupt(format!("embedder thread: {e}")))?;
            let (want, vectors) = got?;
            // Read after the call: a provider's embedder learns its dimension from its first
            // answer.
            let dim = match embedder.dim() {
                0 => vectors.first().map_or(0, Vec::len),
                d => d,
            };
            let bad = vectors.len() != want || vectors.iter().any(|v| v.len() != dim);
            if bad {
                return Err(MemoryError::EmbedShape {
                    got: vectors.len(),
                    want,
                    dim: vectors.first().map_or(0, Vec::len),
                    expected: dim,
                });
            }
            out.extend(vectors.into_iter().map(normalise));
            progress(out.len());
        }
        Ok(out)
    }

    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && (norm - 1.0).abs() > 1e-4 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Little-endian f32s.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(b: &[u8]) -> Result<Vec<f32>, MemoryError> {
    if !b.len().is_multiple_of(4) {
        return Err(MemoryError::Corrupt(format!(
            "vector of {} bytes is not a whole number of f32",
            b.len()
        )));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn from_ms(ms: i64) -> Result<DateTime<Utc>, MemoryError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| MemoryError::Corrupt(format!("timestamp {ms} out of range")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemoryRow {
    pub id: String,
    pub scope: String,
    pub text: String,
    pub metadata: String,
    pub source: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MemoryRow {
    pub(crate) fn decode(self) -> Result<MemoryRecord, MemoryError> {
        let metadata = match serde_json::from_str(&self.metadata) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(MemoryError::Corrupt(format!(
                    "memory {}: metadata is not a JSON object",
                    self.id
                )))
            }
        };
        Ok(MemoryRecord {
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            id: self.id,
            scope: self.scope,
            text: self.text,
            metadata,
            source: self.source,
        })
    }
}

#[derive(sqlx::FromRow)]
struct StaleRow {
    memory_id: String,
    seq: i32,
    text: String,
    model: Option<String>,
    metadata: String,
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    memory_id: String,
    seq: i32,
    text: String,
    model: Option<String>,
    vector: Option<Vec<u8>>,
}
