//! The i8 dot products of the dense scan: AVX2 when the CPU has it (detected at run time),
//! plain Rust otherwise. Both give the same integers (integer sums do not depend on order).
//!
//! This is the crate's one module with `unsafe` code: `std::arch` intrinsics are unsafe to
//! call and the loads take raw pointers. Soundness rests on two checks made in the safe entry
//! point [`dots`] before the kernel runs: (1) the AVX2 kernel is only called after
//! `is_x86_feature_detected!("avx2")` said yes on this CPU, and (2) `rows.len()` is exactly
//! `out.len() * q.len()`, so every load of the kernel (32 bytes at offsets below
//! `q.len() - q.len() % 32` inside one row) stays in bounds.
#![allow(unsafe_code)]

/// `out[r] = Σ_i q[i] · rows[r * q.len() + i]` for each row. Values must lie in -127..=127
/// (what [`crate::index`]'s quantiser produces): the AVX2 kernel's pairwise 16-bit sums rely
/// on it (2 · 127² < 2¹⁵).
///
/// # Panics
/// When `rows.len() != out.len() * q.len()` (a bug in the caller, never user input).
pub(crate) fn dots(q: &[i8], rows: &[i8], out: &mut [i32]) {
    assert_eq!(rows.len(), out.len() * q.len(), "dots: inconsistent shapes");
    if q.is_empty() {
        out.fill(0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if q.len() >= 32 && is_x86_feature_detected!("avx2") {
        // SAFETY: avx2 was detected on this CPU just above; the shapes were checked above.
        unsafe { x86::dots_avx2(q, rows, out) };
        return;
    }
    dots_scalar(q, rows, out);
}

/// The portable kernel (also the reference the tests hold the AVX2 one to).
pub(crate) fn dots_scalar(q: &[i8], rows: &[i8], out: &mut [i32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(q.len())) {
        *o = dot_scalar(q, row);
    }
}

/// Integer dot product in 16 lanes, so the compiler vectorises it with the baseline ISA.
fn dot_scalar(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_abs_epi8, _mm256_add_epi32, _mm256_castsi256_si128,
        _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_set1_epi16, _mm256_setzero_si256, _mm256_sign_epi8, _mm_add_epi32,
        _mm_cvtsi128_si32, _mm_shuffle_epi32,
    };

    /// Per 32 bytes: |q| (unsigned) times v with q's sign, summed in pairs to i16
    /// (`maddubs`: at most 2 · 127 · 127, no saturation), then in pairs to i32 (`madd` by 1).
    ///
    /// # Safety
    /// The CPU must support AVX2, and `rows.len() == out.len() * q.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_avx2(q: &[i8], rows: &[i8], out: &mut [i32]) {
        let dim = q.len();
        let body = dim - dim % 32;
        let ones = _mm256_set1_epi16(1);
        for (r, o) in out.iter_mut().enumerate() {
            let row = &rows[r * dim..(r + 1) * dim];
            let mut acc: __m256i = _mm256_setzero_si256();
            let mut i = 0;
            while i < body {
                // SAFETY: i + 32 <= body <= dim == q.len() == row.len(); unaligned loads.
                let (qv, rv) = unsafe {
                    (
                        _mm256_loadu_si256(q.as_ptr().add(i).cast()),
                        _mm256_loadu_si256(row.as_ptr().add(i).cast()),
                    )
                };
                let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(qv), _mm256_sign_epi8(rv, qv));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
                i += 32;
            }
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let mut sum = _mm_cvtsi128_si32(s);
            for (x, y) in q[body..].iter().zip(&row[body..]) {
                sum += i32::from(*x) * i32::from(*y);
            }
            *o = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<i8> {
        (0..n).map(|_| rng.gen_range(-127i8..=127)).collect()
    }

    #[test]
    fn simd_and_scalar_agree_on_random_data() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Dimensions below, at and off the 32-byte block, and the extremes ±127.
        for dim in [1, 7, 31, 32, 33, 64, 100, 384, 385] {
            let rows = 50;
            let q = random(&mut rng, dim);
            let mut m = random(&mut rng, dim * rows);
            m[..dim].fill(127);
            m[dim..2 * dim].fill(-127);
            let (mut got, mut want) = (vec![0; rows], vec![0; rows]);
            dots(&q, &m, &mut got);
            dots_scalar(&q, &m, &mut want);
            assert_eq!(got, want, "dim {dim}");
            // And the scalar kernel against the plain definition.
            for (r, w) in want.iter().enumerate() {
                let naive: i32 = q
                    .iter()
                    .zip(&m[r * dim..(r + 1) * dim])
                    .map(|(a, b)| i32::from(*a) * i32::from(*b))
                    .sum();
                assert_eq!(*w, naive);
            }
        }
        // Worst case for the 16-bit pair sums: every product 127 · 127 or -127 · -127.
        let q = vec![-127i8; 384];
        let m = vec![-127i8; 384];
        let mut got = [0];
        dots(&q, &m, &mut got);
        assert_eq!(got[0], 384 * 127 * 127);
    }

    #[test]
    #[should_panic(expected = "inconsistent shapes")]
    fn shapes_are_checked() {
        dots(&[1, 2], &[1, 2, 3], &mut [0, 0]);
    }
}
