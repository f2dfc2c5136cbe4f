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
        )
    }
}
