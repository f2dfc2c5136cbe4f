//! [`LocalEmbedder`]: all-MiniLM-L6-v2 sentence embeddings in process (candle BERT).
//!
//! Same recipe as sentence-transformers for this model: WordPiece from the shipped
//! tokenizer.json, at most 256 tokens, mean pooling over real (unpadded) tokens, L2
//! normalisation. Texts are batched by length so short ones do not pay for long ones' padding.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::fetch::{ensure_verified, MINILM};
use crate::LocalError;

/// Text to vectors. Implementations return one unit-length vector of [`Embedder::dim`] floats
/// per input, in input order.
pub trait Embedder: Send + Sync {
    /// A stable id of the model, stored beside vectors so a model change forces a rebuild.
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LocalError>;
}

pub const EMBED_MODEL_ID: &str = "all-minilm-l6-v2";
/// sentence-transformers' `max_seq_length` for this model.
const MAX_TOKENS: usize = 256;
const BATCH: usize = 32;

pub struct LocalEmbedder {
    model: BertModel,
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
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| LocalError::Model(format!("all-MiniLM config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            dim: config.hidden_size,
        })
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LocalError> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        let (n, len) = (enc.len(), enc.first().map(|e| e.len()).unwrap_or(0));
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).iter().copied()).collect()
        };
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(flat(|e| e.get_ids()), (n, len), &dev)?;
        let types = Tensor::from_vec(flat(|e| e.get_type_ids()), (n, len), &dev)?;
        let mask = Tensor::from_vec(flat(|e| e.get_attention_mask()), (n, len), &dev)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
        let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        EMBED_MODEL_ID
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LocalError> {
        // Sort by length (bytes approximate tokens well enough) so each batch pads little,
        // then put the vectors back in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
