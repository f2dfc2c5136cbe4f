//! The kernels: scalar, AVX2/FMA and AVX-512, chosen at run time.
//!
//! This is the crate's one module with `unsafe` code (DESIGN §5): `std::arch` intrinsics are
//! unsafe to call, and the loads take raw pointers (so does the `gemm` crate, wrapped by
//! [`matmul_f32`] with its own bounds checks). Soundness rests on two things, checked in
//! the safe entry points before any kernel runs: (1) a `#[target_feature]` function is only
//! called at a [`Simd`] level that [`best`] detected on this CPU, and (2) every slice length
//! matches the shape the kernel walks (`check`), so each pointer offset stays in bounds.
#![allow(unsafe_code)]

use super::{Simd, BLOCK};

/// A run of `n` weight rows in one of the layouts of [`super::QMatrix`].
pub(super) enum Weights<'a> {
    F32 {
        values: &'a [f32],
        cols: usize,
    },
    Q4_1 {
        d: &'a [f32],
        m: &'a [f32],
        qs: &'a [u8],
        nb: usize,
    },
    Q8_0 {
        d: &'a [f32],
        qs: &'a [u8],
        nb: usize,
    },
}

/// The best level this CPU supports.
pub(super) fn best() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Simd::Avx2;
        }
    }
    Simd::Scalar
}

/// `level`, or the best supported level below it.
pub(super) fn clamp(level: Simd) -> Simd {
    match (level, best()) {
        (Simd::Scalar, _) | (_, Simd::Scalar) => Simd::Scalar,
        (Simd::Avx2, _) | (_, Simd::Avx2) => Simd::Avx2,
        (Simd::Avx512, Simd::Avx512) => Simd::Avx512,
    }
}

/// Panics (a bug in the caller, never user input) unless the slices hold exactly `n` rows of
/// `cols` columns, `t` tokens of activations and an `n × t` output: the bounds the unsafe
/// kernels rely on.
fn check(w: &Weights, n: usize, x: &[f32], cols: usize, t: usize, dst: &[f32]) {
    let ok = match *w {
        Weights::F32 { values, cols: c } => c == cols && values.len() == n * cols,
        Weights::Q4_1 { d, m, qs, nb } => {
            nb * BLOCK == cols && d.len() == n * nb && m.len() == n * nb && qs.len() == n * nb * 16
        }
        Weights::Q8_0 { d, qs, nb } => {
            nb * BLOCK == cols && d.len() == n * nb && qs.len() == n * nb * 32
        }
    };
    assert!(
        ok && x.len() == t * cols && dst.len() == n * t,
        "kernel called with inconsistent shapes"
    );
}

/// `dst[r * t + i] = Σ_c W[r, c] · x[i * cols + c]` for the `n` rows of `w` and `t` tokens.
pub(super) fn rows(
    level: Simd,
    w: &Weights,
    n: usize,
    x: &[f32],
    cols: usize,
    t: usize,
    dst: &mut [f32],
) {
    check(w, n, x, cols, t, dst);
    let level = if cols.is_multiple_of(BLOCK) {
        clamp(level)
    } else {
        Simd::Scalar
    };
    match level {
        Simd::Scalar => scalar::rows(w, n, x, cols, t, dst),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` returned Avx512 only because `best()` detected avx512f on this CPU;
        // `check` above validated every length the kernel indexes with.
        Simd::Avx512 => unsafe { x86::rows_avx512(w, n, x, cols, t, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for avx2 + fma.
        Simd::Avx2 => unsafe { x86::rows_avx2(w, n, x, cols, t, dst) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar::rows(w, n, x, cols, t, dst),
    }
}

pub(super) fn dot(level: Simd, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match clamp(level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f detected (clamp); both slices have exactly `n` elements.
        Simd::Avx512 => unsafe { x86::dot_avx512(a, b) },
        _ => a.iter().zip(b).map(|(x, y)| x * y).sum(),
    }
}

pub(super) fn axpy(level: Simd, s: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    match clamp(level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f detected (clamp); both slices have exactly `n` elements.
        Simd::Avx512 => unsafe { x86::axpy_avx512(s, x, y) },
        _ => y.iter_mut().zip(x).for_each(|(y, x)| *y += s * x),
    }
}

mod scalar {
    use super::{Weights, BLOCK};

    /// Expand each row with plain arithmetic (the same expression as
    /// `QMatrix::dequantize_row`) and dot it with every token.
    pub(super) fn rows(w: &Weights, n: usize, x: &[f32], cols: usize, t: usize, dst: &mut [f32]) {
        let mut row = vec![0.0f32; cols];
        for r in 0..n {
            match *w {
                Weights::F32 { values, .. } => row.copy_from_slice(&values[r * cols..][..cols]),
                Weights::Q4_1 { d, m, qs, nb } => {
                    for b in 0..nb {
                        let (d, m) = (d[r * nb + b], m[r * nb + b]);
                        let q = &qs[(r * nb + b) * 16..][..16];
                        let o = &mut row[b * BLOCK..][..BLOCK];
                        for j in 0..16 {
                            o[j] = d * f32::from(q[j] & 0x0F) + m;
                            o[j + 16] = d * f32::from(q[j] >> 4) + m;
                        }
                    }
                }
                Weights::Q8_0 { d, qs, nb } => {
                    for b in 0..nb {
                        let d = d[r * nb + b];
                        let q = &qs[(r * nb + b) * 32..][..32];
                        for (o, &q) in row[b * BLOCK..][..BLOCK].iter_mut().zip(q) {
                            *o = d * f32::from(q as i8);
                        }
                    }
                }
            }
            for i in 0..t {
                dst[r * t + i] = row
                    .iter()
                    .zip(&x[i * cols..][..cols])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gelu_avx512(x: &mut [f32]) {
        super::gelu_plain(x)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu_avx2(x: &mut [f32]) {
        super::gelu_plain(x)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_avx512(x: &mut [f32], row: usize) {
        super::softmax_plain(x, row)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_avx2(x: &mut [f32], row: usize) {
        super::softmax_plain(x, row)
    }

    use std::arch::x86_64::*;

    use super::{Weights, BLOCK};

    /// Tiles of `R` rows × `T` tokens: at batch 1 four rows share each activation load and
    /// give four independent accumulator chains; for a prompt one expanded weight block is
    /// reused for eight tokens.
    macro_rules! tiled {
        ($w:expr, $n:expr, $x:expr, $cols:expr, $t:expr, $dst:expr, $tile:ident) => {{
            let (w, n, x, cols, t, dst) = ($w, $n, $x, $cols, $t, $dst);
            if t == 1 {
                let mut r = 0;
                while r + 4 <= n {
                    let o = $tile::<4, 1>(w, r, x, cols, 0);
                    for k in 0..4 {
                        dst[r + k] = o[k][0];
                    }
                    r += 4;
                }
                while r < n {
                    dst[r] = $tile::<1, 1>(w, r, x, cols, 0)[0][0];
                    r += 1;
                }
            } else {
                for r in 0..n {
                    let mut i = 0;
                    while i + 8 <= t {
                        let o = $tile::<1, 8>(w, r, x, cols, i);
                        dst[r * t + i..r * t + i + 8].copy_from_slice(&o[0]);
                        i += 8;
                    }
                    while i + 4 <= t {
                        let o = $tile::<1, 4>(w, r, x, cols, i);
                        dst[r * t + i..r * t + i + 4].copy_from_slice(&o[0]);
                        i += 4;
                    }
                    while i < t {
                        dst[r * t + i] = $tile::<1, 1>(w, r, x, cols, i)[0][0];
                        i += 1;
                    }
                }
            }
        }};
    }

    /// # Safety
    /// avx512f is available, and the shapes passed `super::check`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_avx512(
        w: &Weights,
        n: usize,
        x: &[f32],
        cols: usize,
        t: usize,
        dst: &mut [f32],
    ) {
        tiled!(w, n, x, cols, t, dst, tile512)
    }

    /// # Safety
    /// avx2 and fma are available, and the shapes passed `super::check`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2(
        w: &Weights,
        n: usize,
        x: &[f32],
        cols: usize,
        t: usize,
        dst: &mut [f32],
    ) {
        tiled!(w, n, x, cols, t, dst, tile256)
    }

    /// Rows `r..r + R` × tokens `i..i + T`. Each weight block is expanded to two vectors of 16
    /// f32 (`d * q + m` or `d * q`) and multiplied into two accumulators per (row, token). The
    /// kind is matched once, outside the loops, so each loop body is straight-line code with
    /// the accumulators in registers.
    ///
    /// # Safety
    /// avx512f is available; `r + R <= n` and `i + T <= t` for the shapes `super::check`
    /// validated, so every offset below is inside its slice.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile512<const R: usize, const T: usize>(
        w: &Weights,
        r: usize,
        x: &[f32],
        cols: usize,
        i: usize,
    ) -> [[f32; T]; R] {
        match *w {
            Weights::F32 { values, .. } => {
                let vp = values.as_ptr().add(r * cols);
                tile512_with::<R, T>(x, cols, i, |k, b| {
                    let p = vp.add(k * cols + b * BLOCK);
                    (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
                })
            }
            Weights::Q4_1 { d, m, qs, nb } => {
                let (dp, mp, qp) = (d.as_ptr().add(r * nb), m.as_ptr().add(r * nb), qs.as_ptr());
                let qp = qp.add(r * nb * 16);
                tile512_with::<R, T>(x, cols, i, |k, b| {
                    let q = _mm_loadu_si128(qp.add((k * nb + b) * 16).cast());
                    let q = _mm512_cvtepu8_epi32(q);
                    // Low nibbles are elements 0..16, high nibbles 16..32; the bytes were
                    // zero-extended, so a shift alone isolates the high nibble.
                    let q0 = _mm512_and_si512(q, _mm512_set1_epi32(0x0F));
                    let q1 = _mm512_srli_epi32::<4>(q);
                    let dv = _mm512_set1_ps(*dp.add(k * nb + b));
                    let mv = _mm512_set1_ps(*mp.add(k * nb + b));
                    (
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(q0), dv, mv),
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(q1), dv, mv),
                    )
                })
            }
            Weights::Q8_0 { d, qs, nb } => {
                let (dp, qp) = (d.as_ptr().add(r * nb), qs.as_ptr().add(r * nb * 32));
                tile512_with::<R, T>(x, cols, i, |k, b| {
                    let p = qp.add((k * nb + b) * 32);
                    let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()));
                    let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(16).cast()));
                    let dv = _mm512_set1_ps(*dp.add(k * nb + b));
                    (
                        _mm512_mul_ps(_mm512_cvtepi32_ps(q0), dv),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(q1), dv),
                    )
                })
            }
        }
    }

    /// The loops of [`tile512`]; `block(k, b)` expands block b of row r + k.
    ///
    /// # Safety
    /// As [`tile512`]; `block` reads only inside the rows' slices.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile512_with<const R: usize, const T: usize>(
        x: &[f32],
        cols: usize,
        i: usize,
        block: impl Fn(usize, usize) -> (__m512, __m512),
    ) -> [[f32; T]; R] {
        let nb = cols / BLOCK;
        let mut lo = [[_mm512_setzero_ps(); T]; R];
        let mut hi = [[_mm512_setzero_ps(); T]; R];
        let xp = x.as_ptr().add(i * cols);
        for b in 0..nb {
            for k in 0..R {
                let (w0, w1) = block(k, b);
                for j in 0..T {
                    let p = xp.add(j * cols + b * BLOCK);
                    lo[k][j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(p), lo[k][j]);
                    hi[k][j] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(p.add(16)), hi[k][j]);
                }
            }
        }
        let mut out = [[0.0f32; T]; R];
        for k in 0..R {
            for j in 0..T {
                out[k][j] = _mm512_reduce_add_ps(_mm512_add_ps(lo[k][j], hi[k][j]));
            }
        }
        out
    }

    /// The AVX2 twin of [`tile512`]: each block is four vectors of 8.
    ///
    /// # Safety
    /// avx2 and fma are available; bounds as for [`tile512`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // k, j index the weight and accumulator arrays alike
    unsafe fn tile256<const R: usize, const T: usize>(
        w: &Weights,
        r: usize,
        x: &[f32],
        cols: usize,
        i: usize,
    ) -> [[f32; T]; R] {
        let nb = cols / BLOCK;
        let mut acc = [[[_mm256_setzero_ps(); 2]; T]; R];
        let xp = x.as_ptr().add(i * cols);
        for b in 0..nb {
            for k in 0..R {
                let row = r + k;
                let wv: [__m256; 4] = match *w {
                    Weights::F32 { values, .. } => {
                        let p = values.as_ptr().add(row * cols + b * BLOCK);
                        [
                            _mm256_loadu_ps(p),
                            _mm256_loadu_ps(p.add(8)),
                            _mm256_loadu_ps(p.add(16)),
                            _mm256_loadu_ps(p.add(24)),
                        ]
                    }
                    Weights::Q4_1 { d, m, qs, nb } => {
                        let q = _mm_loadu_si128(qs.as_ptr().add((row * nb + b) * 16).cast());
                        let a = _mm256_cvtepu8_epi32(q);
                        let c = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(q));
                        let f = _mm256_set1_epi32(0x0F);
                        let dv = _mm256_set1_ps(*d.get_unchecked(row * nb + b));
                        let mv = _mm256_set1_ps(*m.get_unchecked(row * nb + b));
                        let e = |v: __m256i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), dv, mv);
                        [
                            e(_mm256_and_si256(a, f)),
                            e(_mm256_and_si256(c, f)),
                            e(_mm256_srli_epi32::<4>(a)),
                            e(_mm256_srli_epi32::<4>(c)),
                        ]
                    }
                    Weights::Q8_0 { d, qs, nb } => {
                        let p = qs.as_ptr().add((row * nb + b) * 32);
                        let dv = _mm256_set1_ps(*d.get_unchecked(row * nb + b));
                        let e = |o: usize| {
                            let q = _mm_loadl_epi64(p.add(o).cast());
                            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), dv)
                        };
                        [e(0), e(8), e(16), e(24)]
                    }
                };
                for j in 0..T {
                    let p = xp.add(j * cols + b * BLOCK);
                    let a = &mut acc[k][j];
                    a[0] = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(p), a[0]);
                    a[1] = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(p.add(8)), a[1]);
                    a[0] = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(p.add(16)), a[0]);
                    a[1] = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(p.add(24)), a[1]);
                }
            }
        }
        let mut out = [[0.0f32; T]; R];
        for k in 0..R {
            for j in 0..T {
                out[k][j] = hsum256(_mm256_add_ps(acc[k][j][0], acc[k][j][1]));
            }
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// avx512f is available and `a.len() == b.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm512_setzero_ps();
        let mut k = 0;
        while k + 16 <= n {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(k)), _mm512_loadu_ps(pb.add(k)), acc);
            k += 16;
        }
        if k < n {
            let mask: __mmask16 = (1u16 << (n - k)) - 1;
            let va = _mm512_maskz_loadu_ps(mask, pa.add(k));
            let vb = _mm512_maskz_loadu_ps(mask, pb.add(k));
            acc = _mm512_fmadd_ps(va, vb, acc);
        }
        _mm512_reduce_add_ps(acc)
    }

    /// # Safety
    /// avx512f is available and `x.len() == y.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn axpy_avx512(s: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len();
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let sv = _mm512_set1_ps(s);
        let mut k = 0;
        while k + 16 <= n {
            let v = _mm512_fmadd_ps(sv, _mm512_loadu_ps(px.add(k)), _mm512_loadu_ps(py.add(k)));
            _mm512_storeu_ps(py.add(k), v);
            k += 16;
        }
        if k < n {
            let mask: __mmask16 = (1u16 << (n - k)) - 1;
            let v = _mm512_fmadd_ps(
                sv,
                _mm512_maskz_loadu_ps(mask, px.add(k)),
                _mm512_maskz_loadu_ps(mask, py.add(k)),
            );
            _mm512_mask_storeu_ps(py.add(k), mask, v);
        }
    }
}

/// `dst = [dst +] scale · a · b` for row-major-or-strided views: `(rows, cols)` strides of
/// each operand, `(m, n, k)` the product's shape. Bounds are checked here so the one unsafe
/// call below stays within the slices. Used by the MiniLM encoder (`crate::bert`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32(
    dst: &mut [f32],
    (d_rs, d_cs): (usize, usize),
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    (m, n, k): (usize, usize, usize),
    scale: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, d_rs, d_cs) < dst.len(), "matmul: dst too small");
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|d| *d = 0.0);
        }
        return;
    }
    assert!(last(m, k, a_rs, a_cs) < a.len(), "matmul: lhs too small");
    assert!(last(k, n, b_rs, b_cs) < b.len(), "matmul: rhs too small");
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 && m * n * k >= 1 << 16 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every element the product reads or writes: dst (i, j) at
    // i*d_rs + j*d_cs for i < m, j < n, lhs (i, p) for p < k and rhs (p, j) likewise, all
    // inside their slices; dst is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            d_cs as isize,
            d_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        )
    }
}

/// GELU over a slice, and softmax over each `row`-long row of a slice: the MiniLM encoder's
/// elementwise loops. Their bodies (`crate::bert`'s branch-free `gelu`, `exp`) are inlined into
/// a copy compiled for the detected level, where LLVM vectorises them 16 or 8 lanes wide
/// instead of the baseline's 4. No pointers: the unsafe part is only the feature guarantee.
pub fn gelu_slice(x: &mut [f32]) {
    match Simd::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx512 is only ever detected on a CPU with avx512f.
        Simd::Avx512 => unsafe { x86::gelu_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only ever detected on a CPU with avx2 and fma.
        Simd::Avx2 => unsafe { x86::gelu_avx2(x) },
        _ => gelu_plain(x),
    }
}

pub fn softmax_rows(x: &mut [f32], row: usize) {
    match Simd::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in gelu_slice.
        Simd::Avx512 => unsafe { x86::softmax_avx512(x, row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in gelu_slice.
        Simd::Avx2 => unsafe { x86::softmax_avx2(x, row) },
        _ => softmax_plain(x, row),
    }
}

#[inline(always)]
fn gelu_plain(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = crate::bert::gelu(*v);
    }
}

/// Row-wise softmax. The maximum and the sum are kept in `LANES` partial lanes so that the
/// compiler vectorises both loops: a plain `fold(f32::max)` and a running `sum +=` are
/// ordered scalar reductions it must not reorder, and they kept the whole row (exp included)
/// scalar; that was a quarter of the embedder's time on 150-token chunks (perf, issue 24).
#[inline(always)]
fn softmax_plain(x: &mut [f32], row: usize) {
    const LANES: usize = 16;
    for r in x.chunks_exact_mut(row.max(1)) {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut blocks = r.chunks_exact(LANES);
        for b in &mut blocks {
            for (m, &v) in lanes.iter_mut().zip(b) {
                // `if` rather than f32::max: the NaN rule of max() blocks vectorising.
                *m = if v > *m { v } else { *m };
            }
        }
        let mut max = f32::NEG_INFINITY;
        for &v in lanes.iter().chain(blocks.remainder()) {
            max = if v > max { v } else { max };
        }
        let mut sums = [0f32; LANES];
        let mut blocks = r.chunks_exact_mut(LANES);
        for b in &mut blocks {
            for (s, v) in sums.iter_mut().zip(b.iter_mut()) {
                *v = crate::bert::exp(*v - max);
                *s += *v;
            }
        }
        let mut sum: f32 = sums.iter().sum();
        for v in blocks.into_remainder() {
            *v = crate::bert::exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        r.iter_mut().for_each(|v| *v *= inv);
    }
}
