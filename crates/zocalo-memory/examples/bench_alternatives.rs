//! The alternatives issue 6 names for our two indexes, measured against them:
//! - keyword half: tantivy (BM25, its English analyzer: stop words + Snowball stemmer) against
//!   our in-process BM25, for quality on LoCoMo and for latency at N memories in one scope;
//! - dense half: an HNSW graph (instant-distance) against our brute-force i8 scan with exact
//!   rescoring, for build time, query latency and recall against the exact top 10.
//!
//! Not built by default (tantivy and instant-distance are benchmark-only, optional):
//! cargo run --release -p zocalo-memory --features bench-alternatives --example bench_alternatives -- \
//!     keyword LOCOMO10.json | keyword-latency [--n 100000] | ann [--n 100000] [--clusters 1000] [--spread 0.06]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
    WhitespaceTokenizer,
};
use tantivy::{doc, Term};
use zocalo_core::embed::{EmbedError, Embedder};
use zocalo_memory::text::terms;
use zocalo_memory::{Memory, MemoryConfig, NewMemory, Retrieval};
use zocalo_store::Store;

#[path = "support/locomo.rs"]
mod locomo;
#[path = "support/synthetic.rs"]
mod synthetic;

use locomo::{add, load, memories, set_of, table, Scores, Shape};
use synthetic::{flag, pct, rss_mib, vocab, words};

/// How tantivy turns text into terms.
#[derive(Clone, Copy, PartialEq)]
enum Analyzer {
    /// tantivy's own English pipeline: split on non-alphanumerics, drop tokens over 40 bytes,
    /// lowercase, its English stop words, Snowball English stemmer.
    English,
    /// Our terms (`zocalo_memory::text::terms`), given to tantivy pre-split on spaces: the
    /// same terms as our index, so only the scoring differs.
    Ours,
}

/// One tantivy index in RAM over (scope, id, text) documents; a search is BM25 over the text
/// restricted to one scope (a zero-score filter clause).
struct Tantivy {
    reader: tantivy::IndexReader,
    body: Field,
    scope: Field,
    analyzer: Analyzer,
    tokenizer: TextAnalyzer,
}

impl Tantivy {
    fn build(docs: impl Iterator<Item = (u64, u64, String)>, analyzer: Analyzer) -> Self {
        let mut sb = Schema::builder();
        let body = sb.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("zocalo")
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        );
        let scope = sb.add_u64_field("scope", INDEXED);
        let id = sb.add_u64_field("id", FAST);
        let index = tantivy::Index::create_in_ram(sb.build());
        let tokenizer = match analyzer {
            Analyzer::English => TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(StopWordFilter::new(Language::English).unwrap())
                .filter(Stemmer::new(Language::English))
                .build(),
            Analyzer::Ours => TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        };
        index.tokenizers().register("zocalo", tokenizer.clone());
        let mut writer: tantivy::IndexWriter = index.writer(200_000_000).unwrap();
        for (s, i, text) in docs {
            let text = match analyzer {
                Analyzer::English => text,
                Analyzer::Ours => terms(&text).join(" "),
            };
            writer
                .add_document(doc!(scope => s, id => i, body => text))
                .unwrap();
        }
        writer.commit().unwrap();
        writer.wait_merging_threads().unwrap();
        let reader = index.reader().unwrap();
        Self {
            reader,
            body,
            scope,
            analyzer,
            tokenizer,
        }
    }

    /// The ids of the best `k` documents of `scope` that match at least one query term.
    fn search(&mut self, query: &str, scope: u64, k: usize) -> Vec<u64> {
        let text = match self.analyzer {
            Analyzer::English => query.to_owned(),
            Analyzer::Ours => terms(query).join(" "),
        };
        let mut qterms = Vec::new();
        let mut stream = self.tokenizer.token_stream(&text);
        while let Some(t) = stream.next() {
            qterms.push(t.text.clone());
        }
        drop(stream);
        qterms.sort();
        qterms.dedup();
        if qterms.is_empty() {
            return Vec::new();
        }
        let should: Vec<(Occur, Box<dyn Query>)> = qterms
            .iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.body, t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        let filter = ConstScoreQuery::new(
            Box::new(TermQuery::new(
                Term::from_field_u64(self.scope, scope),
                IndexRecordOption::Basic,
            )),
            0.0,
        );
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(filter) as Box<dyn Query>),
            (Occur::Must, Box::new(BooleanQuery::new(should))),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(k).order_by_score())
            .unwrap();
        top.into_iter()
            .map(|(_, addr)| {
                let col = searcher
                    .segment_reader(addr.segment_ord)
                    .fast_fields()
                    .u64("id")
                    .unwrap();
                col.first(addr.doc_id).unwrap()
            })
            .collect()
    }
}

/// The memory text of a LoCoMo turn plus what `Shape::Context` adds as keyword metadata, as
/// one string (our index appends metadata terms to the chunk's terms the same way).
fn keyword_text(m: &NewMemory) -> String {
    let mut s = m.text.clone();
    for key in ["date", "context"] {
        if let Some(v) = m.metadata.get(key).and_then(|v| v.as_str()) {
            s.push(' ');
            s.push_str(v);
        }
    }
    s
}

async fn keyword_quality(path: &str) {
    let (order, convs, questions) = load(path);
    let mut results: Vec<(String, Scores)> = Vec::new();
    let mut timing = Vec::new();
    for shape in [Shape::Plain, Shape::Context] {
        let label = if shape == Shape::Plain {
            "turn text"
        } else {
            "turn text + date/neighbour keywords"
        };
        // Ours, through the product's API (no embedder: keywords only).
        let store = Store::open_sqlite_memory().await.unwrap();
        let config = MemoryConfig {
            index_metadata: shape == Shape::Context,
            ..MemoryConfig::default()
        };
        let memory = Memory::open(store, None, config).await.unwrap();
        let mut scope_of: HashMap<&str, u64> = HashMap::new();
        let mut dia: Vec<String> = Vec::new();
        let mut docs = Vec::new();
        let t = Instant::now();
        for (n, (id, turns)) in convs.iter().enumerate() {
            scope_of.insert(id.as_str(), n as u64);
            let ms = memories(id, turns, shape);
            for m in &ms {
                docs.push((n as u64, dia.len() as u64, keyword_text(m)));
                dia.push(m.metadata["dia_id"].as_str().unwrap().to_owned());
            }
            memory.memorize_many(ms, &|_| {}).await.unwrap();
        }
        let ours_build = t.elapsed();
        let mut ours = Scores::new();
        let mut ours_t = Vec::new();
        for q in &questions {
            let t = Instant::now();
            let hits = memory.search(&q.query, None, &[q.sample.as_str()], 10, Retrieval::Keyword);
            ours_t.push(t.elapsed());
            let ranked: Vec<String> = hits
                .iter()
                .map(|h| h.metadata["dia_id"].as_str().unwrap_or("").to_owned())
                .collect();
            add(
                &mut ours,
                set_of(&order, &q.sample),
                q.category,
                &q.evidence,
                &ranked,
            );
        }
        results.push((format!("ours BM25, {label}"), ours));
        ours_t.sort();
        timing.push((format!("ours BM25, {label}"), ours_build, pct(&ours_t, 0.5)));
        for (analyzer, name) in [
            (Analyzer::English, "tantivy, its English analyzer"),
            (Analyzer::Ours, "tantivy on our terms"),
        ] {
            let t = Instant::now();
            let mut tv = Tantivy::build(docs.iter().cloned(), analyzer);
            let build = t.elapsed();
            let mut scores = Scores::new();
            let mut times = Vec::new();
            for q in &questions {
                let t = Instant::now();
                let ids = tv.search(&q.query, scope_of[q.sample.as_str()], 10);
                times.push(t.elapsed());
                let ranked: Vec<String> = ids.iter().map(|i| dia[*i as usize].clone()).collect();
                add(
                    &mut scores,
                    set_of(&order, &q.sample),
                    q.category,
                    &q.evidence,
                    &ranked,
                );
            }
            times.sort();
            results.push((format!("{name}, {label}"), scores));
            timing.push((format!("{name}, {label}"), build, pct(&times, 0.5)));
        }
    }
    println!("## all conversations\n");
    table(&results, 0);
    println!("## held out (conversations 5-9)\n");
    table(&results, 2);
    println!(
        "| keyword index | build ({} turns) | query p50 |",
        convs.values().map(Vec::len).sum::<usize>()
    );
    println!("|---|---:|---:|");
    for (name, build, p50) in timing {
        println!(
            "| {name} | {:.0} ms | {p50:.3} ms |",
            build.as_secs_f64() * 1000.0
        );
    }
}

async fn keyword_latency(n: usize) {
    let vocab = vocab();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let texts: Vec<String> = (0..n).map(|_| words(&mut rng, &vocab, 12)).collect();
    let queries: Vec<String> = (0..1000).map(|_| words(&mut rng, &vocab, 5)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite_file(&dir.path().join("kw.db"))
        .await
        .unwrap();
    let memory = Memory::open(store.clone(), None, MemoryConfig::default())
        .await
        .unwrap();
    let t = Instant::now();
    for chunk in texts.chunks(10_000) {
        let items = chunk
            .iter()
            .map(|t| NewMemory::new("user:bench", t.as_str()))
            .collect();
        memory.memorize_many(items, &|_| {}).await.unwrap();
    }
    let ours_import = t.elapsed();
    drop(memory);
    // What a process pays at start-up: the index built from the rows.
    let rss0 = rss_mib();
    let t = Instant::now();
    let memory = Memory::open(store, None, MemoryConfig::default())
        .await
        .unwrap();
    let ours_build = t.elapsed();
    let rss1 = rss_mib();
    let t = Instant::now();
    let mut tv = Tantivy::build(
        texts
            .iter()
            .enumerate()
            .map(|(i, s)| (0, i as u64, s.clone())),
        Analyzer::English,
    );
    let tv_build = t.elapsed();
    let rss2 = rss_mib();
    // Turns per query, so that load from other processes falls on both alike.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for q in &queries {
        let t = Instant::now();
        let hits = memory.search(q, None, &["user:bench"], 10, Retrieval::Keyword);
        a.push(t.elapsed());
        assert!(!hits.is_empty());
        let t = Instant::now();
        let ids = tv.search(q, 0, 10);
        b.push(t.elapsed());
        assert!(!ids.is_empty());
    }
    a.sort();
    b.sort();
    println!("| keyword index, n={n} | build | search p50 / p99 | RSS added |");
    println!("|---|---:|---:|---:|");
    println!(
        "| ours BM25, built from the SQLite rows at start-up (memorize_many of all rows: {:.1} s) | {:.1} s | {:.2} / {:.2} ms | {:.0} MiB |",
        ours_import.as_secs_f64(),
        ours_build.as_secs_f64(),
        pct(&a, 0.5),
        pct(&a, 0.99),
        rss1 - rss0
    );
    println!(
        "| tantivy, English analyzer, in RAM | {:.1} s | {:.2} / {:.2} ms | {:.0} MiB |",
        tv_build.as_secs_f64(),
        pct(&b, 0.5),
        pct(&b, 0.99),
        rss2 - rss1
    );
}

const DIM: usize = 384;

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Unit vectors in `clusters` clumps (centre + Gaussian-ish noise), closer to what sentence
/// embeddings look like than uniform noise; `clusters == 0`: uniform on the sphere.
fn clustered(rng: &mut rand::rngs::StdRng, centres: &[Vec<f32>], spread: f32) -> Vec<f32> {
    let noise = |rng: &mut rand::rngs::StdRng| -> f32 {
        // sum of 4 uniforms: close enough to a normal for this purpose
        (0..4).map(|_| rng.gen_range(-1.0f32..1.0)).sum::<f32>() * 0.5
    };
    if centres.is_empty() {
        return normalise((0..DIM).map(|_| noise(rng)).collect());
    }
    let c = &centres[rng.gen_range(0..centres.len())];
    normalise(c.iter().map(|x| x + spread * noise(rng)).collect())
}

/// Vectors looked up by the memory's text ("v{i}"), so `Memory` stores exactly our vectors.
struct Table(HashMap<String, Vec<f32>>);

impl Embedder for Table {
    fn model_id(&self) -> &str {
        "bench-table"
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.0[*t].clone()).collect())
    }
}

#[derive(Clone)]
struct P(Vec<f32>);

impl instant_distance::Point for P {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot8(&self.0, &other.0)
    }
}

/// Dot product in 8 independent lanes, so the compiler vectorises it (a plain `sum` of f32
/// must keep its order and stays scalar): the graph build is millions of these.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

fn exact_top(vectors: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let mut s: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (dot8(v, q), i))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.into_iter().take(k).map(|(_, i)| i).collect()
}

fn overlap(a: &[usize], b: &[usize]) -> usize {
    a.iter().filter(|x| b.contains(x)).count()
}

async fn ann(n: usize, clusters: usize, spread: f32) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| normalise((0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect()))
        .collect();
    // Per-dimension noise: 0.06 puts a point's cosine with its centre near 0.83 (tight
    // topics), 0.13 near 0.55 (as between loosely related sentences).
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| clustered(&mut rng, &centres, spread))
        .collect();
    let queries: Vec<Vec<f32>> = (0..500)
        .map(|_| clustered(&mut rng, &centres, spread))
        .collect();
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact_top(&vectors, q, 10)).collect();

    // Ours: the product's path (memorize, then dense search: i8 scan + f32 rescoring).
    let table: HashMap<String, Vec<f32>> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("v{i}"), v.clone()))
        .collect();
    let embedder: Arc<dyn Embedder> = Arc::new(Table(table));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite_file(&dir.path().join("ann.db"))
        .await
        .unwrap();
    let memory = Memory::open(
        store.clone(),
        Some(embedder.clone()),
        MemoryConfig::default(),
    )
    .await
    .unwrap();
    for start in (0..n).step_by(10_000) {
        let items = (start..(start + 10_000).min(n))
            .map(|i| NewMemory::new("user:bench", format!("v{i}")))
            .collect();
        memory.memorize_many(items, &|_| {}).await.unwrap();
    }
    drop(memory);
    // What a process pays at start-up: both indexes built from the rows and stored vectors.
    let rss0 = rss_mib();
    let t = Instant::now();
    let memory = Memory::open(store, Some(embedder), MemoryConfig::default())
        .await
        .unwrap();
    let ours_build = t.elapsed();
    let rss1 = rss_mib();
    // HNSW at two search widths (each a separate graph build with the same construction).
    let mut rows: BTreeMap<usize, (Duration, f64, Vec<Duration>)> = BTreeMap::new();
    let points: Vec<P> = vectors.iter().cloned().map(P).collect();
    let ids: Vec<usize> = (0..n).collect();
    let mut hnsw_rss = 0.0;
    let mut ours_t = Vec::new();
    let mut ours_recall = 0usize;
    for ef in [32, 128] {
        eprintln!("building HNSW, ef_search {ef}");
        let r0 = rss_mib();
        let t = Instant::now();
        let map = instant_distance::Builder::default()
            .ef_construction(100)
            .ef_search(ef)
            .seed(5)
            .build(points.clone(), ids.clone());
        let build = t.elapsed();
        hnsw_rss = f64::max(hnsw_rss, rss_mib() - r0);
        let mut search = instant_distance::Search::default();
        let mut times = Vec::new();
        let mut found = 0usize;
        for (q, want) in queries.iter().zip(&truth) {
            // Ours and HNSW take turns, so that load from other processes falls on both.
            if ef == 32 {
                let t = Instant::now();
                let hits = memory.search("q", Some(q), &["user:bench"], 10, Retrieval::Dense);
                ours_t.push(t.elapsed());
                let got: Vec<usize> = hits.iter().map(|h| h.text[1..].parse().unwrap()).collect();
                ours_recall += overlap(&got, want);
            }
            let t = Instant::now();
            let got: Vec<usize> = map
                .search(&P(q.clone()), &mut search)
                .take(10)
                .map(|m| *m.value)
                .collect();
            times.push(t.elapsed());
            found += overlap(&got, want);
        }
        times.sort();
        rows.insert(
            ef,
            (build, found as f64 / (10 * queries.len()) as f64, times),
        );
    }
    ours_t.sort();
    println!("| dense index, n={n}, {clusters} clusters, spread {spread} | build | search p50 / p99 | recall@10 vs exact | RSS added |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| ours: brute-force i8 scan + f32 rescoring, built from the SQLite rows (with BM25) | {:.1} s | {:.2} / {:.2} ms | {:.3} | {:.0} MiB |",
        ours_build.as_secs_f64(),
        pct(&ours_t, 0.5),
        pct(&ours_t, 0.99),
        ours_recall as f64 / (10 * queries.len()) as f64,
        rss1 - rss0
    );
    for (ef, (build, recall, times)) in rows {
        println!(
            "| HNSW (instant-distance, ef_construction 100, ef_search {ef}) | {:.1} s | {:.2} / {:.2} ms | {recall:.3} | {:.0} MiB |",
            build.as_secs_f64(),
            pct(&times, 0.5),
            pct(&times, 0.99),
            hnsw_rss
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| flag(&args, name);
    let n: usize = get("--n").map_or(100_000, |s| s.parse().unwrap());
    match args.first().map(String::as_str) {
        Some("keyword") => keyword_quality(&args[1]).await,
        Some("keyword-latency") => keyword_latency(n).await,
        Some("ann") => {
            let clusters = get("--clusters").map_or(1000, |s| s.parse().unwrap());
            let spread = get("--spread").map_or(0.06, |s| s.parse().unwrap());
            ann(n, clusters, spread).await;
        }
        _ => eprintln!("usage: bench_alternatives keyword LOCOMO10.json | keyword-latency [--n N] | ann [--n N] [--clusters K] [--spread S]"),
    }
}
