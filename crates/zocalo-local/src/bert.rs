//! The all-MiniLM-L6-v2 encoder (a 6-layer BERT), run on packed tokens.
//!
//! Why not candle's `BertModel`: it pads every batch to its longest text and runs each step as
//! a separate single-threaded pass over the whole tensor (bias add, scaling, mask add, softmax,
//! and an exact erf GELU that alone took about a third of the time). Here the texts of a batch
//! are packed back to back with no padding: the dense layers are one matrix product over all
//! tokens of the batch (the `gemm` crate candle itself uses, on both cores, with the bias
//! written into the output first so the product accumulates onto it), attention runs per
//! (text, head) across rayon's pool over just that text's tokens, and the elementwise steps
//! (GELU, softmax, residual + LayerNorm) are single fused loops, parallel over rows.
//!
//! The arithmetic is BERT's: `gelu(x) = x/2 · (1 + erf(x/√2))` with an erf accurate to 5e-7,
//! softmax with the row maximum subtracted, LayerNorm eps from the config.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::kernels::{gelu_slice, matmul_f32 as matmul, softmax_rows};
use crate::LocalError;

pub struct Layer {
    /// (hidden, 3·hidden): query, key and value side by side, stored k × n (input-major).
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ln2_g: Vec<f32>,
    ln2_b: Vec<f32>,
}

pub struct Bert {
    hidden: usize,
    inter: usize,
    heads: usize,
    eps: f32,
    max_pos: usize,
    word: Vec<f32>,
    pos: Vec<f32>,
    types: Vec<f32>,
    emb_ln_g: Vec<f32>,
    emb_ln_b: Vec<f32>,
    layers: Vec<Layer>,
}

/// The parts of config.json the encoder needs.
#[derive(serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

struct Weights {
    map: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LocalError> {
        let key = format!("{}{name}", self.prefix);
        let t = self
            .map
            .get(&key)
            .ok_or_else(|| LocalError::Model(format!("all-MiniLM weights: no tensor {key}")))?;
        if t.dims() != shape {
            return Err(LocalError::Model(format!(
                "all-MiniLM weights: {key} has shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// A PyTorch `Linear` weight (out, in) transposed to (in, out), the layout the products
    /// read row by row.
    fn linear_t(&self, name: &str, out: usize, inp: usize) -> Result<Vec<f32>, LocalError> {
        let w = self.get(name, &[out, inp])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..out {
            for i in 0..inp {
                t[i * out + o] = w[o * inp + i];
            }
        }
        Ok(t)
    }
}

impl Bert {
    pub fn load(safetensors: &[u8], cfg: &BertConfig) -> Result<Self, LocalError> {
        if cfg.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            return Err(LocalError::Model(format!(
                "all-MiniLM config: unsupported hidden_act {:?}",
                cfg.hidden_act
            )));
        }
        let (h, inter, heads) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
        );
        if heads == 0 || h % heads != 0 {
            return Err(LocalError::Model(format!(
                "all-MiniLM config: hidden_size {h} does not split into {heads} heads"
            )));
        }
        let map = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)?;
        let prefix = if map.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let w = Weights { map, prefix };
        let word_t = w
            .map
            .get(&format!("{prefix}embeddings.word_embeddings.weight"))
            .ok_or_else(|| LocalError::Model("all-MiniLM weights: no word embeddings".into()))?;
        let vocab = word_t.dims().first().copied().unwrap_or(0);
        let type_vocab = w
            .map
            .get(&format!("{prefix}embeddings.token_type_embeddings.weight"))
            .and_then(|t| t.dims().first().copied())
            .unwrap_or(2);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let q = w.linear_t(&format!("{p}attention.self.query.weight"), h, h)?;
            let k = w.linear_t(&format!("{p}attention.self.key.weight"), h, h)?;
            let v = w.linear_t(&format!("{p}attention.self.value.weight"), h, h)?;
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            for i in 0..h {
                for m in [&q, &k, &v] {
                    qkv_w.extend_from_slice(&m[i * h..(i + 1) * h]);
                }
            }
            let mut qkv_b = w.get(&format!("{p}attention.self.query.bias"), &[h])?;
            qkv_b.extend(w.get(&format!("{p}attention.self.key.bias"), &[h])?);
            qkv_b.extend(w.get(&format!("{p}attention.self.value.bias"), &[h])?);
            layers.push(Layer {
                qkv_w,
                qkv_b,
                out_w: w.linear_t(&format!("{p}attention.output.dense.weight"), h, h)?,
                out_b: w.get(&format!("{p}attention.output.dense.bias"), &[h])?,
                ln1_g: w.get(&format!("{p}attention.output.LayerNorm.weight"), &[h])?,
                ln1_b: w.get(&format!("{p}attention.output.LayerNorm.bias"), &[h])?,
                up_w: w.linear_t(&format!("{p}intermediate.dense.weight"), inter, h)?,
                up_b: w.get(&format!("{p}intermediate.dense.bias"), &[inter])?,
                down_w: w.linear_t(&format!("{p}output.dense.weight"), h, inter)?,
                down_b: w.get(&format!("{p}output.dense.bias"), &[h])?,
                ln2_g: w.get(&format!("{p}output.LayerNorm.weight"), &[h])?,
                ln2_b: w.get(&format!("{p}output.LayerNorm.bias"), &[h])?,
            });
        }
        Ok(Self {
            hidden: h,
            inter,
            heads,
            eps: cfg.layer_norm_eps as f32,
            max_pos: cfg.max_position_embeddings,
            word: w.get("embeddings.word_embeddings.weight", &[vocab, h])?,
            pos: w.get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position_embeddings, h],
            )?,
            types: w.get("embeddings.token_type_embeddings.weight", &[type_vocab, h])?,
            emb_ln_g: w.get("embeddings.LayerNorm.weight", &[h])?,
            emb_ln_b: w.get("embeddings.LayerNorm.bias", &[h])?,
            layers,
        })
    }

    /// Mean-pooled, L2-normalised vectors for texts given as (token ids, type ids), all
    /// encoded in one packed pass.
    pub fn embed_packed(&self, texts: &[(&[u32], &[u32])]) -> Result<Vec<Vec<f32>>, LocalError> {
        let h = self.hidden;
        let lens: Vec<usize> = texts.iter().map(|(ids, _)| ids.len()).collect();
        let total: usize = lens.iter().sum();
        let vocab = self.word.len() / h;
        let type_vocab = self.types.len() / h;
        for (ids, types) in texts {
            if ids.len() > self.max_pos || types.len() != ids.len() {
                return Err(LocalError::Model(format!(
                    "all-MiniLM: {} tokens (at most {})",
                    ids.len(),
                    self.max_pos
                )));
            }
            if ids.iter().any(|&t| t as usize >= vocab)
                || types.iter().any(|&t| t as usize >= type_vocab)
            {
                return Err(LocalError::Model(
                    "all-MiniLM: token id out of range".into(),
                ));
            }
        }
        let mut starts = Vec::with_capacity(texts.len());
        let mut acc = 0;
        for &l in &lens {
            starts.push(acc);
            acc += l;
        }

        // Embeddings: word + position + type, then LayerNorm.
        let mut x = vec![0f32; total * h];
        let mut rows = x.chunks_mut(h);
        for (ids, types) in texts {
            for (p, (&id, &ty)) in ids.iter().zip(types.iter()).enumerate() {
                let Some(row) = rows.next() else { break };
                let (w, ps, t) = (id as usize * h, p * h, ty as usize * h);
                for (j, r) in row.iter_mut().enumerate() {
                    *r = self.word[w + j] + self.pos[ps + j] + self.types[t + j];
                }
            }
        }
        layer_norm_rows(&mut x, None, &self.emb_ln_g, &self.emb_ln_b, self.eps);

        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut tmp = vec![0f32; total * h];
        let mut up = vec![0f32; total * self.inter];
        let scale = 1.0 / ((h / self.heads) as f32).sqrt();
        for layer in &self.layers {
            linear(&mut qkv, &x, &layer.qkv_w, &layer.qkv_b, total, h, 3 * h);
            self.attention(&qkv, &mut ctx, &starts, &lens, scale);
            linear(&mut tmp, &ctx, &layer.out_w, &layer.out_b, total, h, h);
            layer_norm_rows(&mut x, Some(&tmp), &layer.ln1_g, &layer.ln1_b, self.eps);
            linear(&mut up, &x, &layer.up_w, &layer.up_b, total, h, self.inter);
            gelu_in_place(&mut up);
            linear(
                &mut tmp,
                &up,
                &layer.down_w,
                &layer.down_b,
                total,
                self.inter,
                h,
            );
            layer_norm_rows(&mut x, Some(&tmp), &layer.ln2_g, &layer.ln2_b, self.eps);
        }

        // Mean over each text's tokens, then unit length (sentence-transformers' recipe).
        Ok(starts
            .iter()
            .zip(&lens)
            .map(|(&s, &l)| {
                let mut v = vec![0f32; h];
                for row in x[s * h..(s + l) * h].chunks_exact(h) {
                    for (a, b) in v.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                let n = l.max(1) as f32;
                v.iter_mut().for_each(|a| *a /= n);
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect())
    }

    /// Self-attention of every text over its own tokens only; writes the heads' outputs side by
    /// side into `ctx` (total × hidden).
    fn attention(
        &self,
        qkv: &[f32],
        ctx: &mut [f32],
        starts: &[usize],
        lens: &[usize],
        scale: f32,
    ) {
        let h = self.hidden;
        let hd_dim = h / self.heads;
        let jobs: Vec<(usize, usize)> = (0..starts.len())
            .flat_map(|t| (0..self.heads).map(move |hd| (t, hd)))
            .filter(|&(t, _)| lens[t] > 0)
            .collect();
        let outs: Vec<Vec<f32>> = jobs
            .par_iter()
            .map(|&(t, hd)| {
                let (s, l) = (starts[t], lens[t]);
                let base = s * 3 * h + hd * hd_dim;
                let q = &qkv[base..];
                let k = &qkv[base + h..];
                let v = &qkv[base + 2 * h..];
                let mut scores = vec![0f32; l * l];
                // scores = scale · Q Kᵀ
                matmul(
                    &mut scores,
                    (l, 1),
                    false,
                    q,
                    (3 * h, 1),
                    k,
                    (1, 3 * h),
                    (l, l, hd_dim),
                    scale,
                    false,
                );
                softmax_rows(&mut scores, l);
                let mut out = vec![0f32; l * hd_dim];
                matmul(
                    &mut out,
                    (hd_dim, 1),
                    false,
                    &scores,
                    (l, 1),
                    v,
                    (3 * h, 1),
                    (l, hd_dim, l),
                    1.0,
                    false,
                );
                out
            })
            .collect();
        for (&(t, hd), out) in jobs.iter().zip(outs) {
            let s = starts[t];
            for (i, o) in out.chunks_exact(hd_dim).enumerate() {
                let at = (s + i) * h + hd * hd_dim;
                ctx[at..at + hd_dim].copy_from_slice(o);
            }
        }
    }
}

/// `out (m × n) = x (m × k) · w (k × n) + b`, on rayon's pool.
fn linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    let out = &mut out[..m * n];
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    matmul(
        out,
        (n, 1),
        true,
        x,
        (k, 1),
        w,
        (n, 1),
        (m, n, k),
        1.0,
        true,
    );
}

/// `x = LayerNorm(x + add)` row by row (rows of `g.len()`), parallel over rows.
fn layer_norm_rows(x: &mut [f32], add: Option<&[f32]>, g: &[f32], b: &[f32], eps: f32) {
    let h = g.len();
    let norm = |row: &mut [f32]| {
        let n = h as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(g).zip(b) {
            *v = (*v - mean) * inv * g + b;
        }
    };
    const ROWS: usize = 16;
    match add {
        Some(add) => x
            .par_chunks_mut(h * ROWS)
            .zip(add.par_chunks(h * ROWS))
            .for_each(|(xs, ys)| {
                for (row, y) in xs.chunks_exact_mut(h).zip(ys.chunks_exact(h)) {
                    row.iter_mut().zip(y).for_each(|(a, b)| *a += b);
                    norm(row);
                }
            }),
        None => x.par_chunks_mut(h * ROWS).for_each(|xs| {
            xs.chunks_exact_mut(h).for_each(norm);
        }),
    }
}

fn gelu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|c| {
        gelu_slice(c);
    });
}

/// `x/2 · (1 + erf(x/√2))`, BERT's exact GELU.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7 in exact arithmetic, 5e-7
/// in f32), branch-free so loops over
/// it vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// e^x to ~2 ulp for x in f32's range, branch-free (range reduction to 2^n · e^r, |r| ≤ ln2/2,
/// and a degree-6 polynomial); underflows to 0 below -87.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer n with the 1.5·2^23 trick: t's low mantissa bits
    // then hold n itself, so 2^n is built from t's bits with no float-to-int conversion (whose
    // saturation checks would keep the loop scalar).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // r = x - n·ln2, with ln2 split in two for precision.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // bits(t) = 0x4B40_0000 + n; the exponent field of 2^n is n + 127.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_std() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = exp(x) as f64;
            let r = (x as f64).exp();
            worst_exp = worst_exp.max(((e - r) / r).abs());
            // std has no erf: check it is odd here, and against tabulated values below.
            worst_erf = worst_erf.max((erf(x) + erf(-x)).abs() as f64);
            x += 0.013;
        }
        assert!(worst_exp < 1e-6, "exp relative error {worst_exp}");
        assert!(worst_erf < 1e-7, "erf not odd: {worst_erf}");
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (-1.5, -0.966_105_146_475_310_7),
            (4.0, 0.999_999_984_582_742_1),
        ] {
            assert!(
                (erf(x) as f64 - want).abs() < 5e-7,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) < 1e-37);
    }

    #[test]
    fn matmul_matches_naive_with_strides() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.25).sin()).collect();
        // b read transposed: element (p, j) at j*k + p.
        let mut d = vec![1.0f32; m * n];
        matmul(
            &mut d,
            (n, 1),
            true,
            &a,
            (k, 1),
            &b,
            (1, k),
            (m, n, k),
            2.0,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 =
                    1.0 + 2.0 * (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>();
                assert!((d[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
