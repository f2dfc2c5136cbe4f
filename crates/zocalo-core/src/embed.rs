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
    /// A stable id of the model, stored beside every vector, so that a change of model is
    /// noticed and the vectors are rebuilt instead of being compared across spaces.
    fn model_id(&self) -> &str;
    /// Length of every vector.
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}
