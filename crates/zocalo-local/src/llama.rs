//! A llama-architecture decoder (SmolLM2) read from GGUF, run on plain f32 slices.
//!
//! The weights stay in their GGUF blocks (Q4_1 layers, Q8_0 tied embedding/output) and
//! [`crate::kernels`] multiplies them with f32 activations. Why not candle's
//! `quantized_llama`: its quantized matmuls quantize the *activations* to 8-bit blocks too, and
//! with a model this small that is enough to answer "What is the capital of France?" wrongly.
//! Why not candle tensors for the rest of the forward pass: at batch 1 each of the ~900 small
//! ops per token costs an allocation and a dispatch, as much time as the matmuls themselves.

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Device;
use rayon::prelude::*;

use crate::kernels::{self, QMatrix};
use crate::LocalError;

/// How the weights are held in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// As stored in the GGUF (Q4_1 / Q8_0 blocks), expanded in registers by the kernel: the
    /// fewest bytes per token.
    #[default]
    Quantized,
    /// Every weight expanded to f32 at load (4-6× the memory): the plain reference the
    /// quantized path is checked against.
    F32,
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

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked, so one kernel call computes all three.
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// gate and up stacked.
    gate_up: QMatrix,
    down: QMatrix,
    /// Keys and values of the positions seen so far, `(pos, n_kv_head * head_dim)`.
    k: Vec<f32>,
    v: Vec<f32>,
}

pub struct Llama {
    pub config: LlamaConfig,
    /// `(vocab, dim)`; rows are looked up per token, and it is the output projection too when
    /// the GGUF ties them (SmolLM2 does).
    tok_embd: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None`: tied to `tok_embd`.
    lm_head: Option<QMatrix>,
    ffn_dim: usize,
    /// `(context_length, head_dim / 2)` rotary tables.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Number of positions in the KV cache.
    pos: usize,
    /// The tokens behind the KV cache, so a new prompt sharing a prefix reuses it.
    cached_tokens: Vec<u32>,
}

const PREFILL_CHUNK: usize = 256;

fn shape_err(name: &str) -> impl FnOnce(kernels::ShapeError) -> LocalError + '_ {
    move |e| LocalError::Model(format!("GGUF tensor `{name}`: {e}"))
}

/// A 2-D weight, kept in its blocks when the kernel has them and `weights` says so.
fn load_matrix<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    weights: WeightDtype,
) -> Result<QMatrix, LocalError> {
    let qt = ct.tensor(reader, name, &Device::Cpu)?;
    let (rows, cols) = qt.shape().dims2()?;
    let m = match (weights, qt.dtype()) {
        (WeightDtype::Quantized, GgmlDType::Q4_1) => {
            QMatrix::from_q4_1_blocks(rows, cols, &qt.data()?)
        }
        (WeightDtype::Quantized, GgmlDType::Q8_0) => {
            QMatrix::from_q8_0_blocks(rows, cols, &qt.data()?)
        }
        _ => {
            let values = qt
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            QMatrix::from_f32(rows, cols, values)
        }
    };
    m.map_err(shape_err(name))
}

fn load_vector<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, LocalError> {
    let v = ct
        .tensor(reader, name, &Device::Cpu)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if v.len() != len {
        return Err(LocalError::Model(format!(
            "GGUF tensor `{name}` has {} values, expected {len}",
            v.len()
        )));
    }
    Ok(v)
}

/// Stack weights that share an input, in one layout: as they are when their kinds agree,
/// else all expanded to f32.
fn stack(parts: &[&QMatrix], name: &str) -> Result<QMatrix, LocalError> {
    QMatrix::concat_rows(parts).or_else(|_| {
        let expanded = parts
            .iter()
            .map(|p| QMatrix::from_f32(p.rows(), p.cols(), p.dequantize()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(shape_err(name))?;
        QMatrix::concat_rows(&expanded.iter().collect::<Vec<_>>()).map_err(shape_err(name))
    })
}

impl Llama {
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        weights: WeightDtype,
    ) -> Result<Self, LocalError> {
        let config = LlamaConfig::from_gguf(ct)?;
        let (dim, kv_dim) = (config.dim, config.n_kv_head * config.head_dim);
        if config.n_head == 0
            || config.n_kv_head == 0
            || config.n_head % config.n_kv_head != 0
            || config.head_dim % 2 != 0
            || config.head_dim * config.n_head != dim
        {
            return Err(LocalError::Model(format!(
                "unsupported attention shape: {} heads, {} kv heads, dim {dim}",
                config.n_head, config.n_kv_head
            )));
        }
        let tok_embd = load_matrix(ct, reader, "token_embd.weight", weights)?;
        if tok_embd.cols() != dim || tok_embd.rows() < config.vocab_size {
            return Err(LocalError::Model(format!(
                "token_embd is ({}, {}), expected ({}, {dim})",
                tok_embd.rows(),
                tok_embd.cols(),
                config.vocab_size
            )));
        }
        let mut layers = Vec::with_capacity(config.n_layer);
        let mut ffn_dim = 0;
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            let mut m = |n: &str| load_matrix(ct, reader, &format!("{p}.{n}.weight"), weights);
            let (q, k, v, o) = (m("attn_q")?, m("attn_k")?, m("attn_v")?, m("attn_output")?);
            let (gate, up, down) = (m("ffn_gate")?, m("ffn_up")?, m("ffn_down")?);
            ffn_dim = gate.rows();
            let shapes_ok = [&q, &k, &v, &o, &gate, &up].iter().all(|w| w.cols() == dim)
                && (q.rows(), k.rows(), v.rows(), o.rows()) == (dim, kv_dim, kv_dim, dim)
                && up.rows() == ffn_dim
                && (down.rows(), down.cols()) == (dim, ffn_dim);
            if !shapes_ok {
                return Err(LocalError::Model(format!(
                    "layer {i}: weight shapes do not match the metadata"
                )));
            }
            layers.push(Layer {
                attn_norm: load_vector(ct, reader, &format!("{p}.attn_norm.weight"), dim)?,
                qkv: stack(&[&q, &k, &v], &p)?,
                wo: o,
                ffn_norm: load_vector(ct, reader, &format!("{p}.ffn_norm.weight"), dim)?,
                gate_up: stack(&[&gate, &up], &p)?,
                down,
                k: Vec::new(),
                v: Vec::new(),
            });
        }
        let norm = load_vector(ct, reader, "output_norm.weight", dim)?;
        // SmolLM2 ties the output projection to the token embedding.
        let lm_head = match ct.tensor_infos.contains_key("output.weight") {
            true => Some(load_matrix(ct, reader, "output.weight", weights)?),
            false => None,
        };
        if let Some(h) = &lm_head {
            if h.cols() != dim {
                return Err(LocalError::Model(
                    "output.weight has the wrong width".into(),
                ));
            }
        }

        let half = config.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_theta
                    .powf(2.0 * i as f32 / config.head_dim as f32)
            })
            .collect();
        let mut cos = Vec::with_capacity(config.context_length * half);
        let mut sin = Vec::with_capacity(config.context_length * half);
        for p in 0..config.context_length {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            tok_embd,
            layers,
            norm,
            lm_head,
            ffn_dim,
            cos,
            sin,
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
        self.truncate_cache(shared);
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

    fn truncate_cache(&mut self, keep: usize) {
        let keep = keep.min(self.pos);
        let kv_dim = self.config.n_kv_head * self.config.head_dim;
        for l in &mut self.layers {
            l.k.truncate(keep * kv_dim);
            l.v.truncate(keep * kv_dim);
        }
        self.pos = keep;
        self.cached_tokens.truncate(keep);
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, LocalError> {
        if self.pos + tokens.len() > self.config.context_length {
            return Err(LocalError::Model("context window is full".into()));
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(LocalError::Model(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        // Run inside rayon's pool, so the kernels' parallel loops split work between this
        // worker and the others instead of handing every matmul over to them and waiting.
        let logits = rayon::scope(|_| self.forward_in_pool(tokens));
        self.pos += tokens.len();
        self.cached_tokens.extend_from_slice(tokens);
        Ok(logits)
    }

    fn forward_in_pool(&mut self, tokens: &[u32]) -> Vec<f32> {
        let cfg = &self.config;
        let (t, offset) = (tokens.len(), self.pos);
        let (dim, hd) = (cfg.dim, cfg.head_dim);
        let kv_dim = cfg.n_kv_head * hd;
        let qkv_dim = dim + 2 * kv_dim;
        let ffn = self.ffn_dim;
        let half = hd / 2;

        let mut x = vec![0.0f32; t * dim];
        for (row, &id) in x.chunks_exact_mut(dim).zip(tokens) {
            self.tok_embd.dequantize_row(id as usize, row);
        }
        let mut h = vec![0.0f32; t * dim];
        let mut qkv = vec![0.0f32; t * qkv_dim];
        let mut q = vec![0.0f32; t * dim];
        let mut att = vec![0.0f32; t * dim];
        let mut proj = vec![0.0f32; t * dim];
        let mut gu = vec![0.0f32; t * 2 * ffn];
        let mut act = vec![0.0f32; t * ffn];
        let rope = |v: &mut [f32], p: usize| {
            let (cos, sin) = (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
            for head in v.chunks_exact_mut(hd) {
                for (j, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * cos[j] - b * sin[j];
                    pair[1] = a * sin[j] + b * cos[j];
                }
            }
        };
        for layer in &mut self.layers {
            rms_norm(&x, &layer.attn_norm, cfg.rms_eps, &mut h);
            layer.qkv.matmul(&h, &mut qkv);
            for (i, row) in qkv.chunks_exact_mut(qkv_dim).enumerate() {
                let (qi, kv) = row.split_at_mut(dim);
                rope(qi, offset + i);
                rope(&mut kv[..kv_dim], offset + i);
                q[i * dim..][..dim].copy_from_slice(qi);
                layer.k.extend_from_slice(&kv[..kv_dim]);
                layer.v.extend_from_slice(&kv[kv_dim..]);
            }
            attention(cfg, &q, &layer.k, &layer.v, offset, &mut att);
            layer.wo.matmul(&att, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);

            rms_norm(&x, &layer.ffn_norm, cfg.rms_eps, &mut h);
            layer.gate_up.matmul(&h, &mut gu);
            for (a, g_u) in act.chunks_exact_mut(ffn).zip(gu.chunks_exact(2 * ffn)) {
                let (g, u) = g_u.split_at(ffn);
                for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            layer.down.matmul(&act, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);
        }
        let mut last = vec![0.0f32; dim];
        rms_norm(&x[(t - 1) * dim..], &self.norm, cfg.rms_eps, &mut last);
        let head = self.lm_head.as_ref().unwrap_or(&self.tok_embd);
        let mut logits = vec![0.0f32; head.rows()];
        head.matmul(&last, &mut logits);
        logits.truncate(cfg.vocab_size);
        logits
    }
}

/// Row-wise RMS norm of `(t, dim)` activations, scaled by `weight`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * s * w;
        }
    }
}

/// Causal grouped-query attention of `t` new queries (at positions `offset..offset + t`) over
/// the cached keys and values `0..offset + t`; one task per (query, head).
fn attention(cfg: &LlamaConfig, q: &[f32], k: &[f32], v: &[f32], offset: usize, out: &mut [f32]) {
    let (hd, n_head) = (cfg.head_dim, cfg.n_head);
    let (dim, kv_dim) = (cfg.dim, cfg.n_kv_head * hd);
    let n_rep = n_head / cfg.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    let t = q.len() / dim;
    let one = |(idx, o): (usize, &mut [f32])| {
        let (i, head) = (idx / n_head, idx % n_head);
        let g = head / n_rep;
        let qh = &q[i * dim + head * hd..][..hd];
        let seen = offset + i + 1;
        let mut w: Vec<f32> = (0..seen)
            .map(|p| kernels::dot(qh, &k[p * kv_dim + g * hd..][..hd]) * scale)
            .collect();
        let max = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in &mut w {
            *s = (*s - max).exp();
            sum += *s;
        }
        o.fill(0.0);
        for (p, s) in w.iter().enumerate() {
            kernels::axpy(s / sum, &v[p * kv_dim + g * hd..][..hd], o);
        }
    };
    let work = t * n_head * (offset + t) * hd;
    if work < 1 << 16 {
        out.chunks_exact_mut(hd).enumerate().for_each(one);
    } else {
        out.par_chunks_exact_mut(hd).enumerate().for_each(one);
    }
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
