//! Retrieval quality on LoCoMo (Maharana et al., 2024): 10 long conversations, ~5.9k turns,
//! ~2k questions whose evidence turns are annotated. Every turn is a memory in its
//! conversation's scope; a question is searched in that scope and recall@k is the share of its
//! evidence turns in the top k. Compared: our hybrid, BM25 alone, MiniLM alone, a plain RRF of
//! the two, and the seed's hashed TF-IDF (512 dims, cosine); rank and score fusion at several
//! dense weights, with and without the turn's neighbours in its embedding. Each table is
//! printed for all conversations, the tuning half (the first five in file order, where the
//! default was chosen) and the held-out half (the last five).
//!
//! The data set is not vendored (CC BY-NC 4.0): `bench/fetch_locomo.sh` puts it in a cache.
//! cargo run --release -p zocalo-memory --example bench_locomo -- LOCOMO10.json MODELS_DIR [ONLY]
//! (ONLY: run just the variants whose name contains it.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use zocalo_core::embed::{EmbedError, Embedder};
use zocalo_memory::seed::HashedTfIdf;
use zocalo_memory::{Fusion, Memory, MemoryConfig, Retrieval};
use zocalo_store::Store;

#[path = "support/locomo.rs"]
mod locomo;

use locomo::{add, load, memories, set_of, table, Question, Scores, Shape, Turn};

/// MiniLM with a cache, so each variant reuses the same vectors.
struct Cached {
    inner: zocalo_local::LocalEmbedder,
    cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl Embedder for Cached {
    fn model_id(&self) -> &str {
        zocalo_local::Embedder::model_id(&self.inner)
    }
    fn dim(&self) -> usize {
        zocalo_local::Embedder::dim(&self.inner)
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let missing: Vec<&str> = {
            let c = self.cache.lock().unwrap();
            texts
                .iter()
                .copied()
                .filter(|t| !c.contains_key(*t))
                .collect()
        };
        if !missing.is_empty() {
            let v = self
                .inner
                .embed_texts(&missing)
                .map_err(|e| EmbedError::Failed(e.to_string()))?;
            let mut c = self.cache.lock().unwrap();
            for (t, v) in missing.into_iter().zip(v) {
                c.insert(t.to_owned(), v);
            }
        }
        let c = self.cache.lock().unwrap();
        Ok(texts.iter().map(|t| c[*t].clone()).collect())
    }
}

#[allow(clippy::too_many_arguments)] // one benchmark variant: the data and its settings
async fn run_memory(
    name: &str,
    order: &[String],
    convs: &BTreeMap<String, Vec<Turn>>,
    questions: &[Question],
    embedder: Arc<dyn Embedder>,
    config: MemoryConfig,
    shape: Shape,
    mode: Retrieval,
) -> (String, Scores) {
    let store = Store::open_sqlite_memory().await.unwrap();
    let memory = Memory::open(store, Some(embedder), config).await.unwrap();
    for (id, turns) in convs {
        memory
            .memorize_many(memories(id, turns, shape), &|_| {})
            .await
            .unwrap();
    }
    let mut scores = Scores::new();
    for q in questions {
        let hits = memory
            .recall_with(&q.query, &[q.sample.as_str()], 10, mode)
            .await
            .unwrap();
        let ranked: Vec<String> = hits
            .iter()
            .map(|h| h.metadata["dia_id"].as_str().unwrap_or("").to_owned())
            .collect();
        let set = set_of(order, &q.sample);
        add(&mut scores, set, q.category, &q.evidence, &ranked);
    }
    (name.to_owned(), scores)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Optional third argument: run only the variants whose name contains it.
    let only = args.get(2).cloned().unwrap_or_default();
    let (order, convs, questions) = load(&args[0]);
    // Fetches the weights into MODELS_DIR when they are not there yet (verified either way).
    zocalo_local::fetch_all(std::path::Path::new(&args[1]), &|_| {})
        .await
        .unwrap();
    let inner = zocalo_local::LocalEmbedder::load(std::path::Path::new(&args[1])).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(Cached {
        inner,
        cache: Mutex::new(HashMap::new()),
    });
    eprintln!(
        "{} conversations, {} turns, {} questions",
        convs.len(),
        convs.values().map(Vec::len).sum::<usize>(),
        questions.len()
    );
    let mut results = Vec::new();
    // The seed baseline: hashed TF-IDF per conversation.
    let mut seed = Scores::new();
    for (id, turns) in &convs {
        let texts: Vec<String> = turns
            .iter()
            .map(|t| format!("{}: {}", t.speaker, t.text))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ix = HashedTfIdf::fit(&refs);
        for q in questions.iter().filter(|q| &q.sample == id) {
            let ranked: Vec<String> = ix
                .search(&q.query, 10)
                .iter()
                .map(|(i, _)| turns[*i].dia_id.clone())
                .collect();
            add(
                &mut seed,
                set_of(&order, id),
                q.category,
                &q.evidence,
                &ranked,
            );
        }
    }
    results.push(("seed hashed TF-IDF (512-d)".to_owned(), seed));
    let plain = MemoryConfig {
        index_metadata: false,
        dense_weight: 0.2,
        embed_context: false,
        fusion: Fusion::Rrf,
        ..MemoryConfig::default()
    };
    let rrf_ctx = |w: f64| MemoryConfig {
        dense_weight: w,
        embed_context: false,
        fusion: Fusion::Rrf,
        ..MemoryConfig::default()
    };
    let scores = |w: f64, embed_context: bool| MemoryConfig {
        dense_weight: w,
        embed_context,
        fusion: Fusion::Scores,
        ..MemoryConfig::default()
    };
    let mut variants: Vec<(String, MemoryConfig, Shape, Retrieval)> = vec![
        (
            "BM25 alone".into(),
            plain.clone(),
            Shape::Plain,
            Retrieval::Keyword,
        ),
        (
            "MiniLM alone".into(),
            plain.clone(),
            Shape::Plain,
            Retrieval::Dense,
        ),
        (
            "plain RRF (BM25 + MiniLM, dense weight 0.2)".into(),
            plain.clone(),
            Shape::Plain,
            Retrieval::Hybrid,
        ),
        (
            "BM25 + date/neighbour keywords".into(),
            rrf_ctx(0.2),
            Shape::Context,
            Retrieval::Keyword,
        ),
        (
            "MiniLM, turn embedded with its neighbours".into(),
            scores(1.0, true),
            Shape::Context,
            Retrieval::Dense,
        ),
    ];
    for w in [1.0, 0.2] {
        variants.push((
            format!("RRF + date/neighbour keywords, dense weight {w}"),
            rrf_ctx(w),
            Shape::Context,
            Retrieval::Hybrid,
        ));
    }
    for embed_context in [false, true] {
        for w in [0.1, 0.2, 0.3, 0.5, 1.0] {
            let what = if embed_context {
                "turn embedded with neighbours"
            } else {
                "turn embedded alone"
            };
            variants.push((
                format!("score fusion, {what}, dense weight {w}"),
                scores(w, embed_context),
                Shape::Context,
                Retrieval::Hybrid,
            ));
        }
    }
    for (name, config, shape, mode) in variants {
        if !name.contains(&only) {
            continue;
        }
        eprintln!("running {name}");
        results.push(
            run_memory(
                &name,
                &order,
                &convs,
                &questions,
                embedder.clone(),
                config,
                shape,
                mode,
            )
            .await,
        );
    }
    println!("## all conversations\n");
    table(&results, 0);
    println!("## tuning half (conversations 0-4)\n");
    table(&results, 1);
    println!("## held out (conversations 5-9)\n");
    table(&results, 2);
}
