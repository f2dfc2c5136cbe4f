//! zocalo-memory: scoped long-term memory with hybrid retrieval.
//!
//! - [`Memory`]: memorize / recall / update / forget. The database is the truth (rows and
//!   vectors); the indexes are derived, rebuilt at start-up and kept current on writes.
//! - `sync`: other processes' and nodes' writes, from the change log: [`Memory::sync`],
//!   [`Memory::spawn_sync`], [`SyncReport`]; `recall` catches up by itself.
//! - [`model`]: [`NewMemory`], [`MemoryRecord`], [`Hit`], scopes (`user:…`, `agent:…`,
//!   `conv:…`) and metadata rules.
//! - [`text`]: keyword terms: stop words out, Porter2 stems in.
//! - [`chunk`]: text longer than the embedder's window, split into overlapping windows.
//! - `index`: BM25 inverted index + brute-force cosine over unit vectors, per chunk.
//! - [`fuse`]: reciprocal-rank fusion of the two rankings (score fusion is in `memory`).
//! - [`ask`]: what the ask loop uses: recalled context under a budget, episodic turns, and the
//!   `memory_save` / `memory_search` tools.
//! - [`seed`]: the hashed TF-IDF baseline the benchmark compares against.
//!
//! Dense vectors come from any [`zocalo_core::embed::Embedder`]; without one, memory works on
//! keywords alone. Every stored vector records its embedder: an in-process embedder fills in
//! missing vectors by itself, vectors of another embedder are never compared (meaning search
//! is refused, naming both) until [`Memory::reindex`] re-embeds them.

pub mod ask;
pub mod chunk;
pub mod error;
pub mod fuse;
pub mod import;
mod index;
mod memory;
pub mod model;
pub mod seed;
mod simd;
mod sync;
pub mod text;

pub use ask::{AskMemory, MemorySave, MemorySearch};
pub use error::MemoryError;
pub use import::parse_import_line;
pub use memory::{
    from_blob, to_blob, Fusion, Memory, MemoryConfig, ReindexReport, Retrieval, REINDEX_BATCH,
};
pub use model::{
    conversation_scope, Hit, MemoryRecord, Metadata, NewMemory, Stats, DEFAULT_USER_SCOPE,
};
pub use sync::{SyncReport, CATCH_UP_EVERY, CHANGE_LOG_RETENTION};
