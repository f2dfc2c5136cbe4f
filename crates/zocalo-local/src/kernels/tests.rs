#![allow(clippy::unwrap_used, clippy::expect_used)]

use half::f16;
use proptest::prelude::*;

use super::*;

/// GGUF bytes for `rows × nb` Q4_1 blocks from (d, m, 16 packed bytes) triples.
fn q4_1_bytes(blocks: &[(f32, f32, [u8; 16])]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (d, m, qs) in blocks {
        raw.extend_from_slice(&f16::from_f32(*d).to_le_bytes());
        raw.extend_from_slice(&f16::from_f32(*m).to_le_bytes());
        raw.extend_from_slice(qs);
    }
    raw
}

fn q8_0_bytes(blocks: &[(f32, [i8; 32])]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (d, qs) in blocks {
        raw.extend_from_slice(&f16::from_f32(*d).to_le_bytes());
        raw.extend(qs.iter().map(|&q| q as u8));
    }
    raw
}

/// `x · Wᵀ` in f64 from the dequantized rows, with the magnitude Σ|w·x| per output for a
/// tolerance that scales with the sum's size.
fn reference(w: &QMatrix, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (rows, cols) = (w.rows(), w.cols());
    let t = x.len() / cols;
    let dense = w.dequantize();
    let (mut out, mut mag) = (vec![0.0; t * rows], vec![0.0; t * rows]);
    for i in 0..t {
        for r in 0..rows {
            for c in 0..cols {
                let p = f64::from(dense[r * cols + c]) * f64::from(x[i * cols + c]);
                out[i * rows + r] += p;
                mag[i * rows + r] += p.abs();
            }
        }
    }
    (out, mag)
}

fn assert_close(w: &QMatrix, x: &[f32]) {
    let (want, mag) = reference(w, x);
    for level in Simd::available() {
        let mut got = vec![f32::NAN; want.len()];
        w.matmul_with(level, x, &mut got);
        for (k, (g, (r, m))) in got.iter().zip(want.iter().zip(&mag)).enumerate() {
            let err = (f64::from(*g) - r).abs();
            assert!(
                err <= 1e-5 * m + 1e-6,
                "{level:?} {:?} output {k}: got {g}, want {r} (magnitude {m})",
                w.kind()
            );
        }
    }
}

#[test]
fn q4_1_blocks_read_in_gguf_nibble_order() {
    // Byte j: low nibble = element j, high nibble = element j + 16.
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | ((15 - j as u8) << 4);
    }
    let w = QMatrix::from_q4_1_blocks(1, 32, &q4_1_bytes(&[(0.5, -2.0, qs)])).unwrap();
    let mut row = vec![0.0; 32];
    w.dequantize_row(0, &mut row);
    for j in 0..16 {
        assert_eq!(row[j], 0.5 * j as f32 - 2.0);
        assert_eq!(row[j + 16], 0.5 * (15 - j) as f32 - 2.0);
    }
}

#[test]
fn q8_0_blocks_are_signed() {
    let mut qs = [0i8; 32];
    qs[0] = -128;
    qs[1] = 127;
    qs[2] = -1;
    let w = QMatrix::from_q8_0_blocks(1, 32, &q8_0_bytes(&[(0.25, qs)])).unwrap();
    let mut row = vec![9.0; 32];
    w.dequantize_row(0, &mut row);
    assert_eq!(&row[..4], &[-32.0, 31.75, -0.25, 0.0]);
}

#[test]
fn malformed_blocks_are_errors_not_panics() {
    assert!(QMatrix::from_q4_1_blocks(2, 32, &[0u8; 39]).is_err());
    assert!(QMatrix::from_q4_1_blocks(1, 33, &[0u8; 20]).is_err());
    assert!(QMatrix::from_q8_0_blocks(1, 64, &[0u8; 34]).is_err());
    assert!(QMatrix::from_f32(2, 2, vec![0.0; 3]).is_err());
    let a = QMatrix::from_f32(1, 32, vec![0.0; 32]).unwrap();
    let b = QMatrix::from_q8_0_blocks(1, 32, &[0u8; 34]).unwrap();
    assert!(QMatrix::concat_rows(&[&a, &b]).is_err());
    assert!(QMatrix::concat_rows(&[]).is_err());
}

#[test]
fn concatenated_rows_compute_the_parts() {
    let mk = |rows: usize, seed: u8| {
        let blocks: Vec<_> = (0..rows * 2)
            .map(|k| {
                let qs =
                    std::array::from_fn(|j| (j as u8).wrapping_mul(seed).wrapping_add(k as u8));
                (0.01 * (k + 1) as f32, -0.05, qs)
            })
            .collect();
        QMatrix::from_q4_1_blocks(rows, 64, &q4_1_bytes(&blocks)).unwrap()
    };
    let (a, b) = (mk(3, 7), mk(5, 13));
    let ab = QMatrix::concat_rows(&[&a, &b]).unwrap();
    assert_eq!((ab.rows(), ab.cols()), (8, 64));
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let (mut oa, mut ob, mut oab) = (vec![0.0; 3], vec![0.0; 5], vec![0.0; 8]);
    a.matmul(&x, &mut oa);
    b.matmul(&x, &mut ob);
    ab.matmul(&x, &mut oab);
    assert_eq!(&oab[..3], &oa[..]);
    assert_eq!(&oab[3..], &ob[..]);
}

/// Big enough to take the threaded path with many row chunks and ragged tails.
#[test]
fn threaded_matmul_matches_the_reference() {
    let (rows, cols) = (1031, 96);
    let blocks: Vec<_> = (0..rows * cols / 32)
        .map(|k| {
            let qs = std::array::from_fn(|j| ((k * 31 + j * 7) % 256) as u8);
            (0.002 + 0.001 * (k % 13) as f32, -0.01 * (k % 5) as f32, qs)
        })
        .collect();
    let w = QMatrix::from_q4_1_blocks(rows, cols, &q4_1_bytes(&blocks)).unwrap();
    for t in [1, 3, 13] {
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 17 % 29) as f32 - 14.0) * 0.1)
            .collect();
        assert_close(&w, &x);
    }
}

fn q4_1_matrix() -> impl Strategy<Value = (QMatrix, Vec<f32>)> {
    (1usize..10, 1usize..7, 1usize..12).prop_flat_map(|(rows, nb, t)| {
        let block = (
            -1.0f32..1.0,
            -1.0f32..1.0,
            proptest::array::uniform16(any::<u8>()),
        );
        (
            proptest::collection::vec(block, rows * nb),
            proptest::collection::vec(-4.0f32..4.0, t * nb * 32),
        )
            .prop_map(move |(blocks, x)| {
                let w = QMatrix::from_q4_1_blocks(rows, nb * 32, &q4_1_bytes(&blocks)).unwrap();
                (w, x)
            })
    })
}

fn q8_0_matrix() -> impl Strategy<Value = (QMatrix, Vec<f32>)> {
    (1usize..10, 1usize..7, 1usize..12).prop_flat_map(|(rows, nb, t)| {
        let block = (-0.1f32..0.1, proptest::array::uniform32(any::<i8>()));
        (
            proptest::collection::vec(block, rows * nb),
            proptest::collection::vec(-4.0f32..4.0, t * nb * 32),
        )
            .prop_map(move |(blocks, x)| {
                let w = QMatrix::from_q8_0_blocks(rows, nb * 32, &q8_0_bytes(&blocks)).unwrap();
                (w, x)
            })
    })
}

fn f32_matrix() -> impl Strategy<Value = (QMatrix, Vec<f32>)> {
    // Columns need not be whole blocks here: those take the scalar path.
    (1usize..10, 1usize..100, 1usize..12).prop_flat_map(|(rows, cols, t)| {
        (
            proptest::collection::vec(-2.0f32..2.0, rows * cols),
            proptest::collection::vec(-4.0f32..4.0, t * cols),
        )
            .prop_map(move |(v, x)| (QMatrix::from_f32(rows, cols, v).unwrap(), x))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn q4_1_kernels_match_the_dequantized_matmul((w, x) in q4_1_matrix()) {
        assert_close(&w, &x);
    }

    #[test]
    fn q8_0_kernels_match_the_dequantized_matmul((w, x) in q8_0_matrix()) {
        assert_close(&w, &x);
    }

    #[test]
    fn f32_kernels_match_the_plain_matmul((w, x) in f32_matrix()) {
        assert_close(&w, &x);
    }

    #[test]
    fn dot_and_axpy_match_plain_loops(
        a in proptest::collection::vec(-3.0f32..3.0, 0..90),
        s in -2.0f32..2.0,
    ) {
        let b: Vec<f32> = a.iter().rev().map(|v| v * 0.5 + 0.1).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let mag: f64 = a.iter().zip(&b).map(|(x, y)| (f64::from(*x) * f64::from(*y)).abs()).sum();
        prop_assert!((f64::from(dot(&a, &b)) - want).abs() <= 1e-5 * mag + 1e-6);
        let mut y = b.clone();
        axpy(s, &a, &mut y);
        for k in 0..a.len() {
            prop_assert!((y[k] - (b[k] + s * a[k])).abs() <= 1e-5 * (1.0 + y[k].abs()));
        }
    }
}

proptest! {
    /// The lane-split softmax against an f64 softmax of the same rows: row lengths below,
    /// at and past the 16 lanes (remainders), scores as spread as attention's.
    #[test]
    fn softmax_rows_matches_f64(
        (row, x) in (1usize..70, 1usize..4).prop_flat_map(|(row, rows)| {
            (Just(row), proptest::collection::vec(-40.0f32..40.0, row * rows))
        })
    ) {
        let mut got = x.clone();
        softmax_rows(&mut got, row);
        for (g, r) in got.chunks(row).zip(x.chunks(row)) {
            let max = r.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let e: Vec<f64> = r.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (gv, ev) in g.iter().zip(&e) {
                let want = ev / sum;
                prop_assert!((f64::from(*gv) - want).abs() <= 1e-6 * want.max(1e-30) + 1e-7,
                    "{gv} vs {want}");
            }
        }
    }
}
