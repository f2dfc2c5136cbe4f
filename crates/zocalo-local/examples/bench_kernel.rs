//! Time of one matrix × vector product per weight layout and instruction set, on the shapes of
//! SmolLM2-135M (synthetic weights). The best of several repetitions is reported, so a loaded
//! machine shows the kernel's own speed.
//!
//! `cargo run --release -p zocalo-local --example bench_kernel`

use std::time::Instant;

use zocalo_local::kernels::{QMatrix, Simd};

fn q4_1(rows: usize, cols: usize) -> QMatrix {
    let mut raw = Vec::with_capacity(rows * cols / 32 * 20);
    for k in 0..rows * cols / 32 {
        raw.extend_from_slice(&half_bits(0.01 + (k % 7) as f32 * 1e-3));
        raw.extend_from_slice(&half_bits(-0.05));
        raw.extend((0..16).map(|j| ((k * 31 + j * 7) % 256) as u8));
    }
    QMatrix::from_q4_1_blocks(rows, cols, &raw).unwrap_or_else(|e| panic!("{e}"))
}

fn q8_0(rows: usize, cols: usize) -> QMatrix {
    let mut raw = Vec::with_capacity(rows * cols / 32 * 34);
    for k in 0..rows * cols / 32 {
        raw.extend_from_slice(&half_bits(0.01));
        raw.extend((0..32).map(|j| ((k * 13 + j * 5) % 256) as u8));
    }
    QMatrix::from_q8_0_blocks(rows, cols, &raw).unwrap_or_else(|e| panic!("{e}"))
}

/// f32 -> IEEE half bits for the few exact values used here (normal range only).
fn half_bits(v: f32) -> [u8; 2] {
    let b = v.to_bits();
    let sign = (b >> 16) & 0x8000;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let man = (b >> 13) & 0x3ff;
    ((sign | ((exp as u32) << 10) | man) as u16).to_le_bytes()
}

fn main() {
    let shapes: [(&str, QMatrix); 4] = [
        ("q4_1 qkv 960x576", q4_1(960, 576)),
        ("q4_1 gate_up 3072x576", q4_1(3072, 576)),
        ("q4_1 down 576x1536", q4_1(576, 1536)),
        ("q8_0 lm_head 49152x576", q8_0(49152, 576)),
    ];
    for (name, w) in &shapes {
        for t in [1usize, 40] {
            let x: Vec<f32> = (0..t * w.cols()).map(|i| (i as f32 * 0.1).sin()).collect();
            let mut out = vec![0.0; t * w.rows()];
            for level in Simd::available() {
                let reps = if level == Simd::Scalar { 3 } else { 20 };
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let s = Instant::now();
                    w.matmul_with(level, &x, &mut out);
                    best = best.min(s.elapsed().as_secs_f64());
                }
                let blocks = (w.rows() * w.cols() / 32 * t) as f64;
                println!(
                    "{name:24} t={t:<3} {level:?}: {:8.1} us, {:.2} ns/block",
                    best * 1e6,
                    best * 1e9 / blocks
                );
            }
        }
    }
}
