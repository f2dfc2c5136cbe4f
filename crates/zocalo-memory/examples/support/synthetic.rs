//! Synthetic memories for the latency benchmarks (shared by `bench_latency` and
//! `bench_alternatives`): a 5,000-word made-up vocabulary, texts drawn from it, percentiles,
//! the process's RSS and `--flag VALUE` arguments.

#![allow(dead_code)] // each example uses its part

use std::time::Duration;

use rand::Rng;

pub fn words(rng: &mut rand::rngs::StdRng, vocab: &[String], n: usize) -> String {
    (0..n)
        .map(|_| vocab[rng.gen_range(0..vocab.len())].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn vocab() -> Vec<String> {
    let syl = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "en", "dar", "bel", "qu",
    ];
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    (0..5000)
        .map(|_| {
            (0..rng.gen_range(2..4))
                .map(|_| syl[rng.gen_range(0..syl.len())])
                .collect()
        })
        .collect()
}

pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The value after `--name` in `args`, if any.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
