//! LoCoMo for the retrieval benchmarks (shared by `bench_locomo` and `bench_alternatives`):
//! loading `locomo10.json`, turning turns into memories, and recall@k per question category.

#![allow(dead_code)] // each example uses its part

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;
use zocalo_memory::NewMemory;

pub struct Turn {
    pub dia_id: String,
    pub speaker: String,
    pub text: String,
    pub date: String,
}

pub struct Question {
    pub sample: String,
    pub query: String,
    pub category: u64,
    pub evidence: Vec<String>,
}

/// The conversations in file order (the split: the first five tune, the last five are held
/// out), their turns, and the questions.
pub fn load(path: &str) -> (Vec<String>, BTreeMap<String, Vec<Turn>>, Vec<Question>) {
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
pub enum Shape {
    /// "Speaker: text", nothing else indexed.
    Plain,
    /// Plus date and the neighbouring turns as keyword-only metadata.
    Context,
}

pub fn memories(scope: &str, turns: &[Turn], shape: Shape) -> Vec<NewMemory> {
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
pub type Scores = BTreeMap<(u8, u64), (f64, f64, usize)>;

pub fn add(scores: &mut Scores, set: u8, cat: u64, evidence: &[String], ranked: &[String]) {
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
pub fn set_of(order: &[String], sample: &str) -> u8 {
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

pub fn table(results: &[(String, Scores)], set: u8) {
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
