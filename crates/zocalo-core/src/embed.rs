//! The [`Embedder`] seam: text in, unit-length vectors out.
//!
//! Memory depends on this trait only, so the vectors can come from the in-process MiniLM, a
//! provider's embeddings endpoint, or anything else that keeps the contract.

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model cannot be used at all (weights missing, endpoint not configured); the message
    /// says what to run or set.
    #[error("embedder unavailable: {0}")]
    Unavailable(String),
    /// This call failed (bad input for the model, a runtime error in it).
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Text to vectors. Implementations return one unit-length vector of [`Embedder::dim`] floats
/// per input, in input order. Calls may be slow (a model runs on the CPU): async callers run
/// them on a blocking thread.
pub trait Embedder: Send + Sync {
    /// A stable id of the model (`all-minilm-l6-v2`, `openai:text-embedding-3-small`), stored
    /// beside every vector, so that a change of embedder is noticed: vectors of two embedders
    /// are never compared.
    fn model_id(&self) -> &str;
    /// Length of every vector; 0 while not known yet (a provider's model answers it with its
    /// first vectors).
    fn dim(&self) -> usize;
    /// Whether every call goes over the network to a provider (time, and often money): memory
    /// then embeds only what it is asked to (new memories, queries, `zocalo memory reindex`),
    /// never a whole store by itself.
    fn remote(&self) -> bool {
        false
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}
