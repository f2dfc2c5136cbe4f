use zocalo_core::embed::EmbedError;
use zocalo_store::StoreError;

/// What can go wrong with memory. [`MemoryError::is_usage`] tells bad input (exit 2) from
/// runtime failures.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("a memory needs some text: the text is empty")]
    EmptyText,
    #[error("invalid scope {0:?}: use a non-empty name such as `user:me`, `agent:NAME` or `conv:ID` (at most 200 characters)")]
    BadScope(String),
    #[error("invalid metadata: {0}")]
    BadMetadata(String),
    #[error("no memory with id {0:?}")]
    UnknownMemory(String),
    #[error("{0}")]
    Embed(#[from] EmbedError),
    #[error("the embedder returned {got} vectors of length {dim} for {want} texts; expected length {expected}")]
    EmbedShape {
        got: usize,
        want: usize,
        dim: usize,
        expected: usize,
    },
    #[error("memory holds vectors made by another embedder ({}) and the configured embedder is {configured}: vectors of two embedders cannot be compared, so meaning search is refused. Run `zocalo memory reindex` to re-embed them with {configured}, or set `[memory] embedder` back", others.iter().map(|(m, n)| format!("{n} by {m}")).collect::<Vec<_>>().join(", "))]
    MixedEmbedders {
        configured: String,
        /// Chunks per other embedder.
        others: Vec<(String, usize)>,
    },
    #[error("no embedder is configured (`[memory] embedder = \"none\"` or ZOCALO_EMBEDDER=none): there is nothing to compute vectors with")]
    NoEmbedder,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("memory database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt memory row: {0}")]
    Corrupt(String),
}

impl MemoryError {
    /// Errors in what the caller asked for, as opposed to failures of the machinery.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            MemoryError::EmptyText
                | MemoryError::BadScope(_)
                | MemoryError::BadMetadata(_)
                | MemoryError::UnknownMemory(_)
                | MemoryError::NoEmbedder
        )
    }
}
