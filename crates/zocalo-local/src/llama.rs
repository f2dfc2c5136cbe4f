//! A llama-architecture decoder (SmolLM2) read from GGUF, with the weights expanded out of
//! their 4/8-bit blocks at load.
//!
//! Why not candle's `quantized_llama`: its quantized matmuls quantize the *activations* to
//! 8-bit blocks too, and with a model this small that is enough to answer "What is the capital
//! of France?" wrongly. Expanding only the weights keeps activations in f32 and answers
//! correctly; see [`WeightDtype`] for the memory/speed trade.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Module, Tensor};

use crate::LocalError;

/// How expanded weights are stored. Generation at batch 1 is memory bound, so f16 (half the
/// bytes) is faster than f32 while computing in f32 precision inside the matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
}

impl WeightDtype {
    fn dtype(self) -> DType {
        match self {
            WeightDtype::F32 => DType::F32,
            WeightDtype::F16 => DType::F16,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub dim: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub context_length: usize,
    pub vocab_size: usize,
}

impl LlamaConfig {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, LocalError> {
        let md = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| LocalError::Model(format!("GGUF metadata lacks `{k}`")))
        };
        let u = |k: &str| -> Result<usize, LocalError> { Ok(md(k)?.to_u32()? as usize) };
        let arch = md("general.architecture")?.to_string()?;
        if arch != "llama" {
            return Err(LocalError::Model(format!(
                "GGUF architecture `{arch}` is not llama"
            )));
        }
        let dim = u("llama.embedding_length")?;
        let n_head = u("llama.attention.head_count")?;
        let vocab_size = match ct.metadata.get("llama.vocab_size") {
            Some(v) => v.to_u32()? as usize,
            None => md("tokenizer.ggml.tokens")?.to_vec()?.len(),
        };
        Ok(Self {
            n_layer: u("llama.block_count")?,
            n_head,
            n_kv_head: u("llama.attention.head_count_kv")?,
            head_dim: dim / n_head,
            dim,
            rms_eps: md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?,
            rope_theta: match ct.metadata.get("llama.rope.freq_base") {
                Some(v) => v.to_f32()?,
                None => 10_000.0,
            },
            context_length: u("llama.context_length")?,
            vocab_size,
        })
    }
}

/// A linear layer over an expanded weight `(out, in)`; the input is cast to the weight's dtype
/// for the matmul and the result back to f32.
struct Linear {
    w_t: Tensor,
}

impl Linear {
    fn new(w: Tensor) -> Result<Self, LocalError> {
        // Store transposed-contiguous once rather than transposing per call.
        Ok(Self {
            w_t: w.t()?.contiguous()?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dt = self.w_t.dtype();
        if dt == DType::F32 {
            x.matmul(&self.w_t)
        } else {
            x.to_dtype(dt)?.matmul(&self.w_t)?.to_dtype(DType::F32)
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
    /// Keys and values of the positions seen so far, `(n_kv_head, t, head_dim)`.
    cache: Option<(Tensor, Tensor)>,
}

pub struct Llama {
    pub config: LlamaConfig,
    embed: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    /// Number of positions in the KV cache.
    pos: usize,
    /// The tokens behind the KV cache, so a new prompt sharing a prefix reuses it.
    cached_tokens: Vec<u32>,
}

const PREFILL_CHUNK: usize = 256;

impl Llama {
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        weights: WeightDtype,
    ) -> Result<Self, LocalError> {
        let device = Device::Cpu;
        let config = LlamaConfig::from_gguf(ct)?;
        let mut get = |name: &str| -> Result<Tensor, LocalError> {
            Ok(ct.tensor(reader, name, &device)?.dequantize(&device)?)
        };
        let linear =
            |t: Tensor| -> Result<Linear, LocalError> { Linear::new(t.to_dtype(weights.dtype())?) };
        let tok = get("token_embd.weight")?;
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: get(&format!("{p}.attn_norm.weight"))?,
                wq: linear(get(&format!("{p}.attn_q.weight"))?)?,
                wk: linear(get(&format!("{p}.attn_k.weight"))?)?,
                wv: linear(get(&format!("{p}.attn_v.weight"))?)?,
                wo: linear(get(&format!("{p}.attn_output.weight"))?)?,
                ffn_norm: get(&format!("{p}.ffn_norm.weight"))?,
                w_gate: linear(get(&format!("{p}.ffn_gate.weight"))?)?,
                w_up: linear(get(&format!("{p}.ffn_up.weight"))?)?,
                w_down: linear(get(&format!("{p}.ffn_down.weight"))?)?,
                cache: None,
            });
        }
        let norm = get("output_norm.weight")?;
        // SmolLM2 ties the output projection to the token embedding.
        let lm_head = match ct.tensor_infos.contains_key("output.weight") {
            true => get("output.weight")?,
            false => tok.clone(),
        };
        let lm_head = linear(lm_head)?;
        let embed = candle_nn::Embedding::new(tok, config.dim);

        let half = config.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_theta
                    .powf(2.0 * i as f32 / config.head_dim as f32)
            })
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), &device)?;
        let t = Tensor::arange(0u32, config.context_length as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((config.context_length, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Self {
            embed,
            layers,
            norm,
            lm_head,
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            pos: 0,
            cached_tokens: Vec::new(),
            config,
        })
    }

    pub fn context_length(&self) -> usize {
        self.config.context_length
    }

    /// Positions currently held in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Start a new sequence from `prompt`, reusing the cached prefix it shares with the last
    /// one, and return the logits for the token after it. The caller keeps
    /// `prompt.len() < context_length`.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, LocalError> {
        if prompt.is_empty() || prompt.len() > self.config.context_length {
            return Err(LocalError::Model(format!(
                "prompt of {} tokens does not fit the context of {}",
                prompt.len(),
                self.config.context_length
            )));
        }
        // Keep at least the last prompt token to compute, so there are logits to return.
        let shared = self
            .cached_tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.truncate_cache(shared)?;
        let mut logits = Vec::new();
        for chunk in prompt[shared..].chunks(PREFILL_CHUNK) {
            logits = self.forward(chunk)?;
        }
        Ok(logits)
    }

    /// Feed one generated token; logits for the next.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>, LocalError> {
        if self.pos >= self.config.context_length {
            return Err(LocalError::Model("context window is full".into()));
        }
        self.forward(&[token])
    }

    fn truncate_cache(&mut self, keep: usize) -> Result<(), LocalError> {
        if keep == 0 {
            for l in &mut self.layers {
                l.cache = None;
            }
        } else if keep < self.pos {
            for l in &mut self.layers {
                if let Some((k, v)) = &l.cache {
                    l.cache = Some((k.narrow(1, 0, keep)?, v.narrow(1, 0, keep)?));
                }
            }
        }
        self.pos = keep.min(self.pos);
        self.cached_tokens.truncate(self.pos);
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, LocalError> {
        let cfg = &self.config;
        let (t, offset) = (tokens.len(), self.pos);
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self.embed.forward(&ids)?.to_dtype(DType::F32)?; // (t, dim)
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        let mask = if t > 1 {
            Some(causal_mask(t, offset)?)
        } else {
            None
        };
        let n_rep = cfg.n_head / cfg.n_kv_head;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        for layer in &mut self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps)?;
            let q = layer.wq.forward(&h)?;
            let k = layer.wk.forward(&h)?;
            let v = layer.wv.forward(&h)?;
            // (heads, t, head_dim); rope_i wants a batch dim.
            let heads = |x: Tensor, n: usize| -> candle_core::Result<Tensor> {
                x.reshape((t, n, cfg.head_dim))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .unsqueeze(0)
            };
            let q = candle_nn::rotary_emb::rope_i(&heads(q, cfg.n_head)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&heads(k, cfg.n_kv_head)?, &cos, &sin)?;
            let (q, k, v) = (
                q.squeeze(0)?,
                k.squeeze(0)?,
                heads(v, cfg.n_kv_head)?.squeeze(0)?,
            );
            let (k, v) = match &layer.cache {
                Some((ck, cv)) => (Tensor::cat(&[ck, &k], 1)?, Tensor::cat(&[cv, &v], 1)?),
                None => (k, v),
            };
            layer.cache = Some((k.clone(), v.clone()));
            let total = k.dim(1)?;
            // Grouped-query attention without copying K/V: the n_rep query heads that share a
            // KV head are stacked along the row axis, (n_kv, n_rep * t, head_dim).
            let q = q.reshape((cfg.n_kv_head, n_rep * t, cfg.head_dim))?;
            let mut att = (q.matmul(&k.t()?)? * scale)?; // (n_kv, n_rep * t, total)
            if let Some(mask) = &mask {
                att = att
                    .reshape((cfg.n_kv_head, n_rep, t, total))?
                    .broadcast_add(mask)?
                    .reshape((cfg.n_kv_head, n_rep * t, total))?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)? // (n_kv, n_rep * t, head_dim)
                .reshape((cfg.n_head, t, cfg.head_dim))?
                .transpose(0, 1)?
                .reshape((t, cfg.dim))?;
            x = (x + layer.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps)?;
            let g = layer.w_gate.forward(&h)?.silu()?;
            let u = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(g * u)?)?)?;
        }
        self.pos += t;
        self.cached_tokens.extend_from_slice(tokens);
        let last = x.narrow(0, t - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, cfg.rms_eps)?;
        let logits = self.lm_head.forward(&last)?.squeeze(0)?;
        Ok(logits.to_vec1::<f32>()?)
    }
}

/// `(t, offset + t)`: query i (absolute position offset + i) sees keys 0..=offset + i.
fn causal_mask(t: usize, offset: usize) -> candle_core::Result<Tensor> {
    let total = offset + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, total), &Device::Cpu)
}

/// Index of the largest logit (greedy decoding).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
