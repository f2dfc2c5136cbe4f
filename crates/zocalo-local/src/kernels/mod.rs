//! Matrix × activations for the chat model, with the weights kept in their GGUF blocks and the
//! activations in f32.
//!
//! Why our own kernel: candle's quantized matmul (like llama.cpp's) first quantizes the
//! activations to 8-bit blocks, and with a 135M model that is enough to answer "What is the
//! capital of France?" wrongly; expanding the weights instead (f16/f32) answers correctly but
//! reads 3-6× the bytes and runs at less than half llama.cpp's speed. Here each weight block is
//! expanded to f32 in registers (`d * q + m` for Q4_1, `d * q` for Q8_0) and multiplied with the
//! unquantized activations, so the arithmetic is the f32 reference's up to summation order.
//!
//! - [`QMatrix`]: a `(rows, cols)` weight, repacked at load into a kernel-friendly layout
//!   (per-block scales as f32 beside the packed quants); [`QMatrix::dequantize_row`] is the
//!   plain reference the tests compare against.
//! - [`QMatrix::matmul`]: `out = x · Wᵀ` for `t` tokens, rows split across rayon's pool.
//! - [`simd`]: the only unsafe code in the crate: AVX-512 and AVX2/FMA kernels picked at run
//!   time by CPU feature detection, with a scalar fallback ([`Simd`]); and the bounds-checked
//!   wrapper of the `gemm` crate's f32 product that the MiniLM encoder uses.

mod simd;

pub use simd::matmul_f32;
pub(crate) use simd::{gelu_slice, softmax_rows};

use std::sync::OnceLock;

use half::f16;
use rayon::prelude::*;

/// Elements per quantization block (both Q4_1 and Q8_0).
pub const BLOCK: usize = 32;

/// The instruction set a kernel call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Scalar,
    Avx2,
    Avx512,
}

impl Simd {
    /// The best level this CPU supports (detected once). `ZOCALO_SIMD=scalar|avx2` caps it, to
    /// measure the kernels against each other.
    pub fn detected() -> Simd {
        static LEVEL: OnceLock<Simd> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = simd::best();
            match std::env::var("ZOCALO_SIMD").as_deref() {
                Ok("scalar") => Simd::Scalar,
                Ok("avx2") if best != Simd::Scalar => Simd::Avx2,
                _ => best,
            }
        })
    }

    /// Every level this CPU can run, for tests that compare them.
    pub fn available() -> Vec<Simd> {
        let best = simd::best();
        [Simd::Scalar, Simd::Avx2, Simd::Avx512]
            .into_iter()
            .filter(|l| match l {
                Simd::Scalar => true,
                Simd::Avx2 => best != Simd::Scalar,
                Simd::Avx512 => best == Simd::Avx512,
            })
            .collect()
    }
}

/// How a [`QMatrix`] stores its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain f32 (any GGUF type we have no kernel for is expanded to this at load).
    F32,
    /// 4-bit quants with a scale and a minimum per block of 32: `d * q + m`, q in 0..16.
    Q4_1,
    /// 8-bit quants with a scale per block of 32: `d * q`, q in -128..128.
    Q8_0,
}

/// A weight matrix `(rows, cols)`; rows are output features.
///
/// Layout: `scales[r * nb + b]` and `mins[r * nb + b]` are block b of row r's `d` and `m`
/// (f32, so the kernel broadcasts them straight from memory); `quants` holds the blocks' packed
/// values row after row (16 bytes per Q4_1 block in GGUF's nibble order: byte j holds element
/// j in its low nibble and element j + 16 in its high one; 32 signed bytes per Q8_0 block).
#[derive(Clone, Debug)]
pub struct QMatrix {
    kind: Kind,
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    mins: Vec<f32>,
    quants: Vec<u8>,
    values: Vec<f32>,
}

/// Why a weight could not be taken as given.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

impl QMatrix {
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the kernel reads per full pass over the matrix.
    pub fn size_bytes(&self) -> usize {
        4 * (self.scales.len() + self.mins.len() + self.values.len()) + self.quants.len()
    }

    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self, ShapeError> {
        if values.len() != rows * cols {
            return Err(ShapeError(format!(
                "{} values for a ({rows}, {cols}) matrix",
                values.len()
            )));
        }
        Ok(Self {
            kind: Kind::F32,
            rows,
            cols,
            scales: Vec::new(),
            mins: Vec::new(),
            quants: Vec::new(),
            values,
        })
    }

    /// From GGUF `block_q4_1` bytes (`f16 d, f16 m, u8 qs[16]` per block, rows back to back).
    pub fn from_q4_1_blocks(rows: usize, cols: usize, raw: &[u8]) -> Result<Self, ShapeError> {
        let nb = Self::check_blocks(rows, cols, raw.len(), 20)?;
        let mut m = Self::empty(Kind::Q4_1, rows, cols, nb, 16);
        for blk in raw.chunks_exact(20) {
            m.scales.push(half_at(blk, 0));
            m.mins.push(half_at(blk, 2));
            m.quants.extend_from_slice(&blk[4..20]);
        }
        Ok(m)
    }

    /// From GGUF `block_q8_0` bytes (`f16 d, i8 qs[32]` per block, rows back to back).
    pub fn from_q8_0_blocks(rows: usize, cols: usize, raw: &[u8]) -> Result<Self, ShapeError> {
        let nb = Self::check_blocks(rows, cols, raw.len(), 34)?;
        let mut m = Self::empty(Kind::Q8_0, rows, cols, nb, 32);
        for blk in raw.chunks_exact(34) {
            m.scales.push(half_at(blk, 0));
            m.quants.extend_from_slice(&blk[2..34]);
        }
        Ok(m)
    }

    fn check_blocks(
        rows: usize,
        cols: usize,
        len: usize,
        block_bytes: usize,
    ) -> Result<usize, ShapeError> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(ShapeError(format!(
                "{cols} columns is not a whole number of {BLOCK}-element blocks"
            )));
        }
        let nb = cols / BLOCK;
        if len != rows * nb * block_bytes {
            return Err(ShapeError(format!(
                "{len} bytes for a ({rows}, {cols}) matrix of {block_bytes}-byte blocks"
            )));
        }
        Ok(nb)
    }

    fn empty(kind: Kind, rows: usize, cols: usize, nb: usize, qbytes: usize) -> Self {
        Self {
            kind,
            rows,
            cols,
            scales: Vec::with_capacity(rows * nb),
            mins: Vec::with_capacity(if kind == Kind::Q4_1 { rows * nb } else { 0 }),
            quants: Vec::with_capacity(rows * nb * qbytes),
            values: Vec::new(),
        }
    }

    /// Stack matrices with the same columns and kind, rows of `parts[0]` first, so that one
    /// call (one trip through the thread pool) computes all of them, e.g. q, k and v.
    pub fn concat_rows(parts: &[&QMatrix]) -> Result<Self, ShapeError> {
        let first = parts
            .first()
            .ok_or_else(|| ShapeError("nothing to concatenate".into()))?;
        if parts
            .iter()
            .any(|p| p.cols != first.cols || p.kind != first.kind)
        {
            return Err(ShapeError(
                "concatenated matrices differ in columns or kind".into(),
            ));
        }
        let mut out = Self {
            kind: first.kind,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            scales: Vec::new(),
            mins: Vec::new(),
            quants: Vec::new(),
            values: Vec::new(),
        };
        for p in parts {
            out.scales.extend_from_slice(&p.scales);
            out.mins.extend_from_slice(&p.mins);
            out.quants.extend_from_slice(&p.quants);
            out.values.extend_from_slice(&p.values);
        }
        Ok(out)
    }

    /// Row `r` expanded to f32 with plain arithmetic: the reference for the kernels, and the
    /// embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        match self.kind {
            Kind::F32 => out.copy_from_slice(&self.values[r * self.cols..(r + 1) * self.cols]),
            Kind::Q4_1 => {
                for b in 0..nb {
                    let (d, m) = (self.scales[r * nb + b], self.mins[r * nb + b]);
                    let qs = &self.quants[(r * nb + b) * 16..][..16];
                    let o = &mut out[b * BLOCK..][..BLOCK];
                    for j in 0..16 {
                        o[j] = d * f32::from(qs[j] & 0x0F) + m;
                        o[j + 16] = d * f32::from(qs[j] >> 4) + m;
                    }
                }
            }
            Kind::Q8_0 => {
                for b in 0..nb {
                    let d = self.scales[r * nb + b];
                    let qs = &self.quants[(r * nb + b) * 32..][..32];
                    for (o, &q) in out[b * BLOCK..][..BLOCK].iter_mut().zip(qs) {
                        *o = d * f32::from(q as i8);
                    }
                }
            }
        }
    }

    /// The whole matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }

    /// `out[i * rows + r] = Σ_c x[i * cols + c] · W[r, c]` for the `x.len() / cols` tokens in
    /// `x`, on the best kernel this CPU has and rayon's thread pool.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        self.matmul_with(Simd::detected(), x, out)
    }

    /// [`QMatrix::matmul`] on a given instruction set (tests compare them). A level the CPU
    /// lacks falls back to the best one it has.
    pub fn matmul_with(&self, level: Simd, x: &[f32], out: &mut [f32]) {
        let level = simd::clamp(level);
        let t = x.len() / self.cols.max(1);
        assert_eq!(x.len(), t * self.cols, "activations are not whole rows");
        assert_eq!(out.len(), t * self.rows, "output has the wrong size");
        if t == 0 || self.rows == 0 {
            return;
        }
        // Each task owns a run of rows and writes them for every token into a row-major
        // (rows, t) buffer; token-major `out` is filled from it afterwards (t = 1 needs no copy).
        let threads = rayon::current_num_threads().max(1);
        let per_task = (self.rows / (threads * 4))
            .clamp(16, 1024)
            .next_multiple_of(4);
        let mut by_row = if t == 1 {
            Vec::new()
        } else {
            vec![0.0f32; t * self.rows]
        };
        let dst: &mut [f32] = if t == 1 { &mut *out } else { &mut by_row };
        let work = self.rows * self.cols * t;
        let run = |(chunk, dst): (usize, &mut [f32])| {
            let r0 = chunk * per_task;
            let n = dst.len() / t;
            self.rows_into(level, r0, n, x, t, dst);
        };
        if work < 1 << 15 || threads == 1 {
            dst.chunks_mut(per_task * t).enumerate().for_each(run);
        } else {
            dst.par_chunks_mut(per_task * t).enumerate().for_each(run);
        }
        if t > 1 {
            for (r, row) in by_row.chunks_exact(t).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    out[i * self.rows + r] = v;
                }
            }
        }
    }

    /// Rows `r0..r0 + n` for all `t` tokens into `dst[(r - r0) * t + i]`.
    fn rows_into(&self, level: Simd, r0: usize, n: usize, x: &[f32], t: usize, dst: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let w = match self.kind {
            Kind::F32 => simd::Weights::F32 {
                values: &self.values[r0 * self.cols..(r0 + n) * self.cols],
                cols: self.cols,
            },
            Kind::Q4_1 => simd::Weights::Q4_1 {
                d: &self.scales[r0 * nb..(r0 + n) * nb],
                m: &self.mins[r0 * nb..(r0 + n) * nb],
                qs: &self.quants[r0 * nb * 16..(r0 + n) * nb * 16],
                nb,
            },
            Kind::Q8_0 => simd::Weights::Q8_0 {
                d: &self.scales[r0 * nb..(r0 + n) * nb],
                qs: &self.quants[r0 * nb * 32..(r0 + n) * nb * 32],
                nb,
            },
        };
        simd::rows(level, &w, n, x, self.cols, t, dst);
    }
}

/// `Σ a[i] · b[i]` on the best kernel this CPU has (attention scores and values).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::dot(Simd::detected(), a, b)
}

/// `y += s · x`, element-wise.
pub fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
    simd::axpy(Simd::detected(), s, x, y)
}

#[cfg(test)]
mod tests;
