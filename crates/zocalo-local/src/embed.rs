//! [`LocalEmbedder`]: all-MiniLM-L6-v2 sentence embeddings in process (candle BERT).
//!
//! Same recipe as sentence-transformers for this model: WordPiece from the shipped
//! tokenizer.json, at most 256 tokens, mean pooling over the text's tokens, L2 normalisation.
//! The encoder is [`crate::bert`]: texts are packed back to back without padding, up to
//! [`BATCH_TOKENS`] tokens per pass.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};
use zocalo_core::embed::{EmbedError, Embedder};

use crate::bert::{Bert, BertConfig};
use crate::fetch::{ensure_verified, MINILM};
use crate::LocalError;

pub const EMBED_MODEL_ID: &str = "all-minilm-l6-v2";
/// sentence-transformers' `max_seq_length` for this model.
const MAX_TOKENS: usize = 256;
/// Tokens per encoder pass: large enough that the dense layers are big matrix products, small
/// enough that a pass's activations (~10 KB per token) stay a few MB.
const BATCH_TOKENS: usize = 2048;

pub struct LocalEmbedder {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dim", &self.dim)
            .finish()
    }
}

impl LocalEmbedder {
    /// Load from the models dir after checking checksums; missing files: "run `zocalo models
    /// fetch`".
    pub fn load(models_dir: &Path) -> Result<Self, LocalError> {
        ensure_verified(&MINILM, models_dir)?;
        let file = |name: &str| MINILM.file_path(models_dir, name);
        let read = |name: &str| {
            let p = file(name);
            std::fs::read(&p).map_err(LocalError::io(&p))
        };
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| LocalError::Model(format!("all-MiniLM config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let model = Bert::load(&read("model.safetensors")?, &config)?;
        tracing::info!("zocalo-local: loaded the all-MiniLM-L6-v2 embedder");
        Ok(Self {
            model,
            tokenizer,
            dim: config.hidden_size,
        })
    }
}

/// The one [`Embedder`] trait is zocalo-core's; this is its in-process MiniLM.
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        EMBED_MODEL_ID
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_texts(texts)
            .map_err(|e| EmbedError::Failed(e.to_string()))
    }
}

impl LocalEmbedder {
    /// [`Embedder::embed`] with this crate's error (which tells a missing file apart).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LocalError> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        let mut out = Vec::with_capacity(texts.len());
        let mut batch: Vec<(&[u32], &[u32])> = Vec::new();
        let mut tokens = 0;
        for e in &enc {
            if tokens + e.len() > BATCH_TOKENS && !batch.is_empty() {
                out.extend(self.model.embed_packed(&batch)?);
                batch.clear();
                tokens = 0;
            }
            batch.push((e.get_ids(), e.get_type_ids()));
            tokens += e.len();
        }
        if !batch.is_empty() {
            out.extend(self.model.embed_packed(&batch)?);
        }
        Ok(out)
    }
}
