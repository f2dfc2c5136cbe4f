//! GFLOP/s of the encoder's f32 matrix product on MiniLM's four layer shapes (m tokens × k ->
//! n), best of several repetitions, 2 threads.
//!
//! `cargo run --release -p zocalo-local --example bench_gemm [M]`

use std::time::Instant;

fn main() {
    let m: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048);
    for (name, k, n) in [
        ("qkv", 384, 1152),
        ("out", 384, 384),
        ("up", 384, 1536),
        ("down", 1536, 384),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.01).collect();
        let mut c = vec![0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            zocalo_local::kernels::matmul_f32(
                &mut c,
                (n, 1),
                true,
                &a,
                (k, 1),
                &b,
                (n, 1),
                (m, n, k),
                1.0,
                true,
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (m * n * k) as f64 / best / 1e9;
        println!(
            "{name:5} m={m} k={k} n={n}: {:.3} ms, {gflops:.1} GFLOP/s",
            best * 1e3
        );
    }
}
