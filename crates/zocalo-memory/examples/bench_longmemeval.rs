//! Memory at scale (issue 24, goal 2): LongMemEval-S questions, each with its own haystack of
//! ~500 user/assistant turns, imported and searched through the real CLI by
//! `bench/longmemeval.sh`; this example writes the CLI's input files and scores its output,
//! with BM25 alone and the seed's hashed TF-IDF computed here, in the same run, beside it.
//!
//! Also scores LoCoMo the same way (the shared `turns.jsonl`/`qa.jsonl`, categories 1-4), so
//! that an import or ranking change can be checked against it through the same path.
//!
//! ```text
//! bench_longmemeval prepare LME120.json PER_TYPE OUT_DIR   # OUT_DIR/{import,queries}.jsonl
//! bench_longmemeval score LME120.json PER_TYPE RESULTS.json
//! bench_longmemeval locomo-queries QA.jsonl OUT.jsonl
//! bench_longmemeval locomo-score TURNS.jsonl QA.jsonl RESULTS.json
//! ```
//!
//! A memory is one non-empty turn, text `"role: content"`, scope = the question id, metadata
//! `s` (the session's position in the haystack) and `t` (the turn's index in its session) as
//! numbers, and the session `date` as a string. Session ids are not stored in the metadata:
//! metadata strings are indexed as keywords, and the evidence sessions' ids begin with
//! "answer_". Evidence = the turns marked `has_answer`; turn recall@10 = the share of a
//! question's evidence turns among its top 10 memories; session recall_any@5 = 1 when any
//! answer session has a turn in the top 5.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use serde_json::{json, Value};
use zocalo_memory::seed::HashedTfIdf;
use zocalo_memory::{Memory, MemoryConfig, NewMemory, Retrieval};
use zocalo_store::Store;

struct Turn {
    text: String,
    /// (session position in the haystack, turn index in the session)
    key: (usize, usize),
    evidence: bool,
    date: String,
}

struct Question {
    qid: String,
    kind: String,
    query: String,
    answer_sessions: HashSet<usize>,
    turns: Vec<Turn>,
}

impl Question {
    fn evidence(&self) -> HashSet<(usize, usize)> {
        self.turns
            .iter()
            .filter(|t| t.evidence)
            .map(|t| t.key)
            .collect()
    }

    fn memories(&self) -> Vec<NewMemory> {
        self.turns
            .iter()
            .map(|t| {
                NewMemory::new(&self.qid, &t.text)
                    .with_meta("s", t.key.0 as i64)
                    .with_meta("t", t.key.1 as i64)
                    .with_meta("date", t.date.as_str())
            })
            .collect()
    }
}

/// The first `per_type` questions of each type, in file order (the file ranks them by a
/// seeded hash of the question id).
fn load(path: &str, per_type: usize) -> Vec<Question> {
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sessions = data["sessions"].as_object().unwrap();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for q in data["questions"].as_array().unwrap() {
        let kind = q["type"].as_str().unwrap().to_owned();
        let n = taken.entry(kind.clone()).or_default();
        if *n >= per_type {
            continue;
        }
        *n += 1;
        let answer: HashSet<&str> = q["answer_session_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut turns = Vec::new();
        let mut answer_sessions = HashSet::new();
        for (si, h) in q["haystack"].as_array().unwrap().iter().enumerate() {
            let sid = h[0].as_str().unwrap();
            let date = h[1].as_str().unwrap_or("").to_owned();
            if answer.contains(sid) {
                answer_sessions.insert(si);
            }
            for (ti, t) in sessions[sid].as_array().unwrap().iter().enumerate() {
                let content = t[1].as_str().unwrap_or("");
                if content.trim().is_empty() {
                    continue;
                }
                turns.push(Turn {
                    text: format!("{}: {content}", t[0].as_str().unwrap_or("")),
                    key: (si, ti),
                    evidence: t[2].as_i64().unwrap_or(0) == 1,
                    date: date.clone(),
                });
            }
        }
        out.push(Question {
            qid: q["qid"].as_str().unwrap().to_owned(),
            kind,
            query: q["question"].as_str().unwrap().to_owned(),
            answer_sessions,
            turns,
        });
    }
    out
}

fn write_jsonl(path: &std::path::Path, lines: impl Iterator<Item = Value>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for v in lines {
        writeln!(f, "{v}").unwrap();
    }
    f.flush().unwrap();
}

fn prepare(path: &str, per_type: usize, out: &str) {
    let qs = load(path, per_type);
    let dir = std::path::Path::new(out);
    std::fs::create_dir_all(dir).unwrap();
    let memories: usize = qs.iter().map(|q| q.turns.len()).sum();
    let chars: usize = qs
        .iter()
        .flat_map(|q| &q.turns)
        .map(|t| t.text.chars().count())
        .sum();
    write_jsonl(
        &dir.join("import.jsonl"),
        qs.iter().flat_map(|q| {
            q.memories()
                .into_iter()
                .map(|m| json!({"text": m.text, "scope": m.scope, "metadata": m.metadata}))
        }),
    );
    write_jsonl(
        &dir.join("queries.jsonl"),
        qs.iter().map(|q| json!({"query": q.query, "scope": q.qid})),
    );
    // Read by the script for its rates.
    println!(
        "{}",
        json!({"questions": qs.len(), "memories": memories, "chars": chars})
    );
}

/// Per question type: sums of turn recall@10, session recall_any@5, and the count.
type Scores = BTreeMap<String, (f64, f64, usize)>;

/// `ranked`: the (session, turn) keys of the top hits, best first.
fn add(scores: &mut Scores, q: &Question, ranked: &[(usize, usize)]) {
    let ev = q.evidence();
    let r10 = ranked.iter().take(10).filter(|k| ev.contains(k)).count() as f64 / ev.len() as f64;
    let s5 = f64::from(u8::from(
        ranked
            .iter()
            .take(5)
            .any(|(s, _)| q.answer_sessions.contains(s)),
    ));
    for kind in [q.kind.as_str(), "all"] {
        let e = scores.entry(kind.to_owned()).or_insert((0.0, 0.0, 0));
        e.0 += r10;
        e.1 += s5;
        e.2 += 1;
    }
}

fn key_of(metadata: &Value) -> (usize, usize) {
    let n = |k: &str| metadata[k].as_u64().unwrap_or(u64::MAX) as usize;
    (n("s"), n("t"))
}

/// BM25 alone: the keyword half of the same index (default config, no embedder).
async fn bm25<'a>(
    items: impl Iterator<Item = (&'a str, &'a str, Vec<NewMemory>)>,
) -> BTreeMap<String, Vec<Value>> {
    let store = Store::open_sqlite_memory().await.unwrap();
    let memory = Memory::open(store, None, MemoryConfig::default())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    let mut queries = Vec::new();
    for (id, query, memories) in items {
        memory.memorize_many(memories, &|_| {}).await.unwrap();
        queries.push((id.to_owned(), query.to_owned()));
    }
    for (id, query) in queries {
        let hits = memory
            .recall_with(&query, &[id.as_str()], 10, Retrieval::Keyword)
            .await
            .unwrap();
        out.insert(
            id,
            hits.into_iter()
                .map(|h| Value::Object(h.metadata))
                .collect(),
        );
    }
    out
}

fn print_table(rows: &[(&str, &Scores)], kinds: &[&str]) {
    println!(
        "| retriever | {} |",
        kinds
            .iter()
            .map(|k| {
                let n = rows[0].1.get(*k).map_or(0, |s| s.2);
                format!("{k} ({n})")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(kinds.len()));
    for (name, s) in rows {
        let cells: Vec<String> = kinds
            .iter()
            .map(|k| match s.get(*k) {
                Some((a, b, n)) => format!("{:.3} / {:.3}", a / *n as f64, b / *n as f64),
                None => "-".into(),
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

async fn score(path: &str, per_type: usize, results: &str) {
    let qs = load(path, per_type);
    let res: Value = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    let res = res.as_array().unwrap();
    assert_eq!(res.len(), qs.len(), "one result per question, in order");
    let mut ours = Scores::new();
    for (q, r) in qs.iter().zip(res) {
        assert_eq!(r["query"].as_str(), Some(q.query.as_str()));
        let ranked: Vec<(usize, usize)> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| key_of(&h["metadata"]))
            .collect();
        add(&mut ours, q, &ranked);
    }
    let mut seed = Scores::new();
    for q in &qs {
        let texts: Vec<&str> = q.turns.iter().map(|t| t.text.as_str()).collect();
        let ix = HashedTfIdf::fit(&texts);
        let ranked: Vec<(usize, usize)> = ix
            .search(&q.query, 10)
            .iter()
            .map(|(i, _)| q.turns[*i].key)
            .collect();
        add(&mut seed, q, &ranked);
    }
    let kw = bm25(
        qs.iter()
            .map(|q| (q.qid.as_str(), q.query.as_str(), q.memories())),
    )
    .await;
    let mut bm = Scores::new();
    for q in &qs {
        let ranked: Vec<(usize, usize)> = kw[&q.qid].iter().map(key_of).collect();
        add(&mut bm, q, &ranked);
    }
    let mut kinds: Vec<&str> = qs.iter().map(|q| q.kind.as_str()).collect();
    kinds.dedup();
    kinds.sort_unstable();
    kinds.dedup();
    kinds.push("all");
    println!(
        "turn recall@10 / session recall_any@5 ({} questions)\n",
        qs.len()
    );
    print_table(
        &[
            ("zocalo (CLI, hybrid)", &ours),
            ("BM25 alone", &bm),
            ("seed hashed TF-IDF", &seed),
        ],
        &kinds,
    );
    let o = &ours["all"];
    println!(
        "\n{}",
        json!({"turn_recall_at_10": o.0 / o.2 as f64, "session_recall_any_at_5": o.1 / o.2 as f64})
    );
}

fn read_jsonl(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn locomo_queries(qa: &str, out: &str) {
    write_jsonl(
        std::path::Path::new(out),
        read_jsonl(qa)
            .into_iter()
            .map(|q| json!({"query": q["query"], "scope": q["scope"]})),
    );
}

/// LoCoMo recall@10 of the evidence turns, per category and over categories 1-4.
async fn locomo_score(turns: &str, qa: &str, results: &str) {
    let turns = read_jsonl(turns);
    let qa = read_jsonl(qa);
    let res: Value = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    let res = res.as_array().unwrap();
    assert_eq!(res.len(), qa.len(), "one result per question, in order");
    let dia = |m: &Value| m["dia_id"].as_str().unwrap_or("").to_owned();
    let mut by_scope: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in &turns {
        by_scope
            .entry(t["scope"].as_str().unwrap().to_owned())
            .or_default()
            .push(t);
    }
    let rec = |q: &Value, ranked: &[String]| {
        let ev: HashSet<&str> = q["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        ranked
            .iter()
            .take(10)
            .filter(|d| ev.contains(d.as_str()))
            .count() as f64
            / ev.len() as f64
    };
    let mut table: BTreeMap<&str, BTreeMap<String, (f64, f64, usize)>> = BTreeMap::new();
    let mut put = |name: &'static str, cat: u64, r: f64| {
        let t = table.entry(name).or_default();
        let mut keys = vec![cat.to_string()];
        if (1..=4).contains(&cat) {
            keys.push("1-4".into());
        }
        for k in keys {
            let e = t.entry(k).or_insert((0.0, 0.0, 0));
            e.0 += r;
            e.2 += 1;
        }
    };
    for (q, r) in qa.iter().zip(res) {
        let ranked: Vec<String> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| dia(&h["metadata"]))
            .collect();
        put(
            "zocalo (CLI, hybrid)",
            q["category"].as_u64().unwrap(),
            rec(q, &ranked),
        );
    }
    // BM25 alone on the same memories.
    let memories = |scope: &str| -> Vec<NewMemory> {
        by_scope[scope]
            .iter()
            .map(|t| zocalo_memory::parse_import_line(&t.to_string()).unwrap())
            .collect()
    };
    let scopes: Vec<String> = by_scope.keys().cloned().collect();
    let store = Store::open_sqlite_memory().await.unwrap();
    let memory = Memory::open(store, None, MemoryConfig::default())
        .await
        .unwrap();
    for s in &scopes {
        memory.memorize_many(memories(s), &|_| {}).await.unwrap();
    }
    for q in &qa {
        let hits = memory
            .recall_with(
                q["query"].as_str().unwrap(),
                &[q["scope"].as_str().unwrap()],
                10,
                Retrieval::Keyword,
            )
            .await
            .unwrap();
        let ranked: Vec<String> = hits
            .iter()
            .map(|h| dia(&Value::Object(h.metadata.clone())))
            .collect();
        put(
            "BM25 alone",
            q["category"].as_u64().unwrap(),
            rec(q, &ranked),
        );
    }
    for s in &scopes {
        let texts: Vec<&str> = by_scope[s]
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect();
        let ix = HashedTfIdf::fit(&texts);
        for q in qa.iter().filter(|q| q["scope"].as_str() == Some(s)) {
            let ranked: Vec<String> = ix
                .search(q["query"].as_str().unwrap(), 10)
                .iter()
                .map(|(i, _)| dia(&by_scope[s][*i]["metadata"]))
                .collect();
            put(
                "seed hashed TF-IDF",
                q["category"].as_u64().unwrap(),
                rec(q, &ranked),
            );
        }
    }
    println!("LoCoMo recall@10 per category\n");
    let cats = ["1", "2", "3", "4", "5", "1-4"];
    println!("| retriever | {} |", cats.join(" | "));
    println!("|---|{}", "---|".repeat(cats.len()));
    for name in ["zocalo (CLI, hybrid)", "BM25 alone", "seed hashed TF-IDF"] {
        let t = &table[name];
        let cells: Vec<String> = cats
            .iter()
            .map(|c| {
                t.get(*c)
                    .map_or("-".into(), |(a, _, n)| format!("{:.3}", a / *n as f64))
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_longmemeval prepare LME.json PER_TYPE OUT_DIR | score LME.json \
                 PER_TYPE RESULTS.json | locomo-queries QA.jsonl OUT.jsonl | locomo-score \
                 TURNS.jsonl QA.jsonl RESULTS.json";
    match a.first().map(String::as_str) {
        Some("prepare") if a.len() == 4 => prepare(&a[1], a[2].parse().unwrap(), &a[3]),
        Some("score") if a.len() == 4 => score(&a[1], a[2].parse().unwrap(), &a[3]).await,
        Some("locomo-queries") if a.len() == 3 => locomo_queries(&a[1], &a[2]),
        Some("locomo-score") if a.len() == 4 => locomo_score(&a[1], &a[2], &a[3]).await,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
