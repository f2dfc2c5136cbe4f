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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use zocalo_core::embed::{EmbedError, Embedder};
use zocalo_memory::seed::HashedTfIdf;
use zocalo_memory::{Fusion, Memory, MemoryConfig, NewMemory, Retrieval};
use zocalo_store::Store;

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
            let v = zocalo_local::Embedder::embed(&self.inner, &missing)
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

struct Turn {
    dia_id: String,
    speaker: String,
    text: String,
    date: String,
}

struct Question {
    sample: String,
    query: String,
    category: u64,
    evidence: Vec<String>,
}

/// The conversations in file order (the split: the first five tune, the last five are held
/// out), their turns, and the questions.
fn load(path: &str) -> (Vec<String>, BTreeMap<String, Vec<Turn>>, Vec<Question>) {
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut order = Vec::new();
    let mut convs = BTreeMap::new();
    let mut questions = Vec::new();
    for sample in data.as_array().unwrap() {
        let id = sample["sample_id"].as_str().unwrap().to_owned();
        let conv = sample["conversation"].as_object().unwrap();
        let mut turns = Vec::new();
        for n in 1..100 {
            let Some(session) = conv.get(&format!("session_{n}")).and_then(Value::as_array) else {
                continue;
            };
            let date = conv
                .get(&format!("session_{n}_date_time"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            for t in session {
                let mut text = t["text"].as_str().unwrap_or("").to_owned();
                if let Some(c) = t.get("blip_caption").and_then(Value::as_str) {
                    text = format!("{text} [shares a photo: {c}]");
                }
                turns.push(Turn {
                    dia_id: t["dia_id"].as_str().unwrap_or("").to_owned(),
                    speaker: t["speaker"].as_str().unwrap_or("").to_owned(),
                    text,
                    date: date.clone(),
                });
            }
        }
        for q in sample["qa"].as_array().unwrap() {
            let evidence: Vec<String> = q["evidence"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .flat_map(|s| s.split(|c: char| c == ';' || c.is_whitespace()))
                        .filter(|s| s.starts_with('D') && s.contains(':'))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if evidence.is_empty() {
                continue;
            }
            questions.push(Question {
                sample: id.clone(),
                query: q["question"].as_str().unwrap_or("").to_owned(),
                category: q["category"].as_u64().unwrap_or(0),
                evidence,
            });
        }
        order.push(id.clone());
        convs.insert(id, turns);
    }
    (order, convs, questions)
}

/// How a turn becomes a memory.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// "Speaker: text", nothing else indexed.
    Plain,
    /// Plus date and the neighbouring turns as keyword-only metadata.
    Context,
}

fn memories(scope: &str, turns: &[Turn], shape: Shape) -> Vec<NewMemory> {
    turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut m = NewMemory::new(scope, format!("{}: {}", t.speaker, t.text))
                .with_meta("dia_id", t.dia_id.as_str());
            if shape == Shape::Context {
                m = m.with_meta("date", t.date.as_str());
                let prev = i.checked_sub(1).and_then(|j| turns.get(j));
                let next = turns.get(i + 1);
                let ctx: Vec<&str> = prev
                    .into_iter()
                    .chain(next)
                    .map(|t| t.text.as_str())
                    .collect();
                m = m.with_meta("context", ctx.join(" "));
            }
            m
        })
        .collect()
}

/// Sums of recall@5 and recall@10 and the number of questions, per (set, category): set 0 =
/// all conversations, 1 = the tuning half (conversations 0-4), 2 = held out (5-9); category 0
/// = all categories.
type Scores = BTreeMap<(u8, u64), (f64, f64, usize)>;

fn add(scores: &mut Scores, set: u8, cat: u64, evidence: &[String], ranked: &[String]) {
    let ev: HashSet<&str> = evidence.iter().map(String::as_str).collect();
    let at = |k: usize| {
        ranked
            .iter()
            .take(k)
            .filter(|d| ev.contains(d.as_str()))
            .count() as f64
            / ev.len() as f64
    };
    for key in [(set, cat), (set, 0), (0, cat), (0, 0)] {
        let e = scores.entry(key).or_insert((0.0, 0.0, 0));
        e.0 += at(5);
        e.1 += at(10);
        e.2 += 1;
    }
}

/// The set a conversation's questions count in: 1 for the first five in file order, else 2.
fn set_of(order: &[String], sample: &str) -> u8 {
    if order
        .iter()
        .position(|o| o == sample)
        .is_some_and(|i| i < 5)
    {
        1
    } else {
        2
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

fn table(results: &[(String, Scores)], set: u8) {
    let cats = [
        (1, "multi-hop"),
        (2, "temporal"),
        (3, "open-domain"),
        (4, "single-hop"),
        (5, "adversarial"),
        (0, "all"),
    ];
    println!(
        "| retriever | {} |",
        cats.iter()
            .map(|(_, n)| format!("{n} R@5 / R@10"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(cats.len()));
    for (name, s) in results {
        let cells: Vec<String> = cats
            .iter()
            .map(|(c, _)| match s.get(&(set, *c)) {
                Some((a, b, n)) => format!("{:.3} / {:.3}", a / *n as f64, b / *n as f64),
                None => "-".into(),
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    let n: BTreeMap<u64, usize> = results[0]
        .1
        .iter()
        .filter(|((s, _), _)| *s == set)
        .map(|((_, c), (_, _, n))| (*c, *n))
        .collect();
    println!("\nquestions per category: {n:?}\n");
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
