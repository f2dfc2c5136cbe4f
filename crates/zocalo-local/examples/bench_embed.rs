//! Sentences/s of the local embedder on the reference sentences (the same sets
//! benches/reference_bench.py times with sentence-transformers).
//!
//! `cargo run --release -p zocalo-local --example bench_embed`

use std::path::PathBuf;
use std::time::Instant;

use zocalo_local::{Embedder, LocalEmbedder};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("ZOCALO_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/zocalo-models-test")
        });
    zocalo_local::fetch_all(&dir, &|_| {}).await?;
    let t0 = Instant::now();
    let emb = LocalEmbedder::load(&dir)?;
    eprintln!("loaded in {} ms", t0.elapsed().as_millis());
    let r: Reference =
        serde_json::from_str(include_str!("../tests/fixtures/minilm_reference.json"))?;
    let all: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let short: Vec<&str> = all.iter().copied().filter(|s| s.len() < 200).collect();
    let short10: Vec<&str> = short
        .iter()
        .copied()
        .cycle()
        .take(short.len() * 10)
        .collect();
    for (name, set) in [("fixture-100", &all), ("short-x10", &short10)] {
        emb.embed(&set[..32.min(set.len())])?;
        let t = Instant::now();
        emb.embed(set)?;
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{{\"engine\":\"zocalo-local\",\"set\":\"{name}\",\"n\":{},\"sent_s\":{:.1}}}",
            set.len(),
            set.len() as f64 / dt
        );
    }
    Ok(())
}
