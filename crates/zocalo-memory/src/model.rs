//! The plain data of memory: what is stored, what a search returns.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::MemoryError;

/// Metadata: a JSON object whose values are strings or numbers.
pub type Metadata = Map<String, Value>;

/// The scope used for the (single) local user: memories from every conversation land here.
pub const DEFAULT_USER_SCOPE: &str = "user:default";

/// The scope of one conversation.
pub fn conversation_scope(conversation_id: &str) -> String {
    format!("conv:{conversation_id}")
}

/// A new `mem_…` id (UUIDv7, so ids sort by creation time).
pub fn new_memory_id() -> String {
    zocalo_core::ids::new_prefixed("mem")
}

/// What to remember.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewMemory {
    pub scope: String,
    pub text: String,
    pub metadata: Metadata,
    /// What it came from: `conv_…/msg_…`, `cli`, `import`, `tool:memory_save`, …
    pub source: Option<String>,
}

impl NewMemory {
    pub fn new(scope: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            text: text.into(),
            ..Self::default()
        }
    }

    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Checks what can be checked without the database; trims nothing (the text is kept as
    /// given) but rejects text that is only whitespace.
    pub fn validate(&self) -> Result<(), MemoryError> {
        if self.text.trim().is_empty() {
            return Err(MemoryError::EmptyText);
        }
        validate_scope(&self.scope)?;
        validate_metadata(&self.metadata)
    }
}

pub fn validate_scope(scope: &str) -> Result<(), MemoryError> {
    let ok = !scope.trim().is_empty()
        && scope.chars().count() <= 200
        && !scope.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(MemoryError::BadScope(scope.to_owned()))
    }
}

pub fn validate_metadata(metadata: &Metadata) -> Result<(), MemoryError> {
    for (k, v) in metadata {
        if k.is_empty() {
            return Err(MemoryError::BadMetadata("empty key".into()));
        }
        if !(v.is_string() || v.is_number()) {
            return Err(MemoryError::BadMetadata(format!(
                "value of {k:?} must be a string or a number, not {v}"
            )));
        }
    }
    Ok(())
}

/// A stored memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryRecord {
    pub id: String,
    pub scope: String,
    pub text: String,
    pub metadata: Metadata,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One search result: the memory and its fused score (higher is better).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub text: String,
    pub score: f64,
    pub scope: String,
    pub metadata: Metadata,
    #[serde(skip)]
    pub created_at: DateTime<Utc>,
}

/// Counts for `zocalo memory stats`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub memories: u64,
    pub chunks: u64,
    /// Chunks with a vector from the current embedder.
    pub vectors: u64,
    pub scopes: std::collections::BTreeMap<String, u64>,
    /// The embedder's model id; None when memory runs on keywords alone.
    pub embedder: Option<String>,
    /// The vector length (None: keywords only, or a provider's model not asked yet).
    pub dim: Option<usize>,
    /// Chunks whose stored vectors another embedder made, per embedder: meaning search is
    /// refused until `zocalo memory reindex` re-embeds them.
    pub other_embedders: std::collections::BTreeMap<String, u64>,
}
