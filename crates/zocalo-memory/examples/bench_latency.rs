//! Memory latency at scale: N memories in one scope, synthetic unit vectors (dim 384), on
//! SQLite and/or Postgres. Reports import throughput, index rebuild time, search p50/p99
//! (hybrid, excluding query embedding), RSS; with `--local` also the local MiniLM's query
//! embedding latency and import throughput.
//!
//! cargo run --release -p zocalo-memory --example bench_latency -- \
//!     [--n 100000] [--sqlite] [--postgres URL] [--local MODELS_DIR]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use zocalo_core::embed::{EmbedError, Embedder};
use zocalo_memory::{Memory, MemoryConfig, NewMemory, Retrieval};
use zocalo_store::{Pool, Store};

#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{flag, pct, rss_mib, vocab, words};

const DIM: usize = 384;

/// Deterministic pseudo-random unit vectors from the text (synthetic: no meaning).
struct Synthetic;

impl Embedder for Synthetic {
    fn model_id(&self) -> &str {
        "synthetic-384"
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| unit_vector(seed_of(t))).collect())
    }
}

fn seed_of(t: &str) -> u64 {
    t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn unit_vector(seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

struct MiniLm(zocalo_local::LocalEmbedder);

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        zocalo_local::Embedder::model_id(&self.0)
    }
    fn dim(&self) -> usize {
        zocalo_local::Embedder::dim(&self.0)
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.0
            .embed_texts(texts)
            .map_err(|e| EmbedError::Failed(e.to_string()))
    }
}

async fn run(name: &str, store: Store, n: usize) {
    let vocab = vocab();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let embedder: Arc<dyn Embedder> = Arc::new(Synthetic);
    let memory = Memory::open(
        store.clone(),
        Some(embedder.clone()),
        MemoryConfig::default(),
    )
    .await
    .unwrap();
    let rss0 = rss_mib();
    let t = Instant::now();
    let batch = 10_000;
    let mut done = 0;
    while done < n {
        let k = batch.min(n - done);
        let items: Vec<NewMemory> = (0..k)
            .map(|_| NewMemory::new("user:bench", words(&mut rng, &vocab, 12)))
            .collect();
        memory.memorize_many(items, &|_| {}).await.unwrap();
        done += k;
    }
    let import = t.elapsed();
    drop(memory);
    let t = Instant::now();
    let memory = Memory::open(
        store.clone(),
        Some(embedder.clone()),
        MemoryConfig::default(),
    )
    .await
    .unwrap();
    let rebuild = t.elapsed();
    let rss = rss_mib();
    let queries: Vec<(String, Vec<f32>)> = (0..1000)
        .map(|i| (words(&mut rng, &vocab, 5), unit_vector(1_000_000 + i)))
        .collect();
    // The three modes take turns on each query, so that load from other processes falls on
    // all three alike.
    let modes = [Retrieval::Hybrid, Retrieval::Keyword, Retrieval::Dense];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(queries.len()); modes.len()];
    for (q, v) in &queries {
        for (mode, times) in modes.iter().zip(&mut times) {
            let t = Instant::now();
            let hits = memory.search(q, Some(v), &["user:bench"], 10, *mode);
            times.push(t.elapsed());
            assert!(!hits.is_empty());
        }
    }
    for (mode, mut times) in modes.into_iter().zip(times) {
        times.sort();
        println!(
            "{name}: n={n} {mode:?} search p50 {:.2} ms, p99 {:.2} ms (excluding query embedding)",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }
    println!(
        "{name}: import {:.0} memories/s (synthetic vectors; {:.1} s), rebuild at start-up {:.1} s, RSS {:.0} MiB (before import {:.0} MiB)",
        n as f64 / import.as_secs_f64(),
        import.as_secs_f64(),
        rebuild.as_secs_f64(),
        rss,
        rss0
    );
}

async fn local(dir: &str, store: Store) {
    // Fetches the weights into `dir` when they are not there yet (verified either way).
    zocalo_local::fetch_all(std::path::Path::new(dir), &|_| {})
        .await
        .unwrap();
    let e = zocalo_local::LocalEmbedder::load(std::path::Path::new(dir)).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(MiniLm(e));
    let vocab = vocab();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let memory = Memory::open(store, Some(embedder.clone()), MemoryConfig::default())
        .await
        .unwrap();
    let n = 2000;
    let items: Vec<NewMemory> = (0..n)
        .map(|_| NewMemory::new("user:bench", words(&mut rng, &vocab, 12)))
        .collect();
    let t = Instant::now();
    memory.memorize_many(items, &|_| {}).await.unwrap();
    let import = t.elapsed();
    let mut embed_times = Vec::new();
    let mut e2e = Vec::new();
    for i in 0..200 {
        let q = format!("{} {}", words(&mut rng, &vocab, 5), i);
        let t = Instant::now();
        let _ = embedder.embed(&[q.as_str()]).unwrap();
        embed_times.push(t.elapsed());
        let t = Instant::now();
        let _ = memory.recall(&q, &["user:bench"], 10).await.unwrap();
        e2e.push(t.elapsed());
    }
    embed_times.sort();
    e2e.sort();
    println!(
        "local MiniLM: import {:.0} memories/s ({n} memories of 12 words), query embedding p50 {:.1} ms p99 {:.1} ms, recall end to end (embed + search, {n} memories) p50 {:.1} ms p99 {:.1} ms",
        n as f64 / import.as_secs_f64(),
        pct(&embed_times, 0.5),
        pct(&embed_times, 0.99),
        pct(&e2e, 0.5),
        pct(&e2e, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| flag(&args, name);
    let n: usize = get("--n").map_or(100_000, |s| s.parse().unwrap());
    if args.iter().any(|a| a == "--sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite_file(&dir.path().join("bench.db"))
            .await
            .unwrap();
        run("sqlite", store.clone(), n).await;
        store.close().await;
    }
    if let Some(url) = get("--postgres") {
        let schema = format!("bench_mem_{}", std::process::id());
        let store = Store::connect_postgres_schema(&url, &schema).await.unwrap();
        run("postgres", store.clone(), n).await;
        if let Pool::Postgres(p) = store.pool() {
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(p)
                .await
                .unwrap();
        }
        store.close().await;
    }
    if let Some(dir) = get("--local") {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite_file(&tmp.path().join("local.db"))
            .await
            .unwrap();
        local(&dir, store).await;
    }
}
