//! `cargo bench -p zocalo-agent --bench ask`: the cost zocalo adds around a model call.
//!
//! The model is the testkit's local server replaying OpenAI/Anthropic SSE bodies over real
//! HTTP on loopback, so what is measured is our side: request building, HTTP, SSE parsing,
//! tool-call assembly, history loading and budgeting, and the one-transaction commit, on
//! SQLite and on PostgreSQL. Prints a Markdown table for docs/BENCHMARKS.md.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: failing loudly is right

use std::sync::Arc;
use std::time::{Duration, Instant};

use zocalo_agent::{AskRequest, AskSettings, Asker, ToolRegistry};
use zocalo_core::{CompletionRequest, ConversationId, Message, Secret};
use zocalo_llm::anthropic::AnthropicProvider;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::{collect_stream, Provider};
use zocalo_store::Store;
use zocalo_testkit::fake::{
    anthropic_text_sse, openai_text_sse, openai_tool_call_sse, FakeServer, Reply,
};

fn endpoint(name: &str, base: String) -> Endpoint {
    Endpoint::new(
        name,
        &base,
        Some(Secret::new("sk-bench")),
        "KEY",
        "bench-model",
    )
}

struct Stats {
    n: usize,
    total: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        n,
        total: samples.iter().sum(),
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
    }
}

fn row(name: &str, s: &Stats) {
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} |",
        s.n,
        s.n as f64 / s.total.as_secs_f64(),
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

async fn bench_ask(store: &Store, label: &str, n: usize, with_tool: bool, history_turns: usize) {
    let server = FakeServer::start().await;
    let provider = Arc::new(OpenAiProvider::new(endpoint(
        "openai",
        format!("{}/v1", server.url()),
    )));
    let asker = Asker::new(
        store.clone(),
        provider,
        ToolRegistry::builtin(),
        AskSettings::default(),
    );
    let mut conv: Option<ConversationId> = None;
    for i in 0..history_turns {
        server.push(Reply::sse(openai_text_sse(
            "bench-model",
            &["earlier answer ", "with some words"],
        )));
        let out = asker
            .ask(
                AskRequest {
                    conversation: conv.clone(),
                    message: format!("earlier question {i}"),
                    model: None,
                },
                &mut |_| {},
            )
            .await
            .expect("warm-up ask");
        conv = Some(out.conversation_id);
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 5 {
        if with_tool {
            server.push(Reply::sse(openai_tool_call_sse(
                "bench-model",
                "call_1",
                "current_time",
                r#"{"timezone":"Europe/Paris"}"#,
            )));
        }
        server.push(Reply::sse(openai_text_sse(
            "bench-model",
            &[
                "The answer ",
                "is a short ",
                "sentence of ",
                "about twenty ",
                "tokens, streamed ",
                "in pieces.",
            ],
        )));
        let started = Instant::now();
        asker
            .ask(
                AskRequest {
                    conversation: conv.clone(),
                    message: format!("question {i}"),
                    model: None,
                },
                &mut |_| {},
            )
            .await
            .expect("ask");
        if i >= 5 {
            samples.push(started.elapsed());
        }
    }
    row(label, &stats(samples));
}

async fn bench_stream(
    provider: &dyn Provider,
    server: &FakeServer,
    body: String,
    label: &str,
    deltas: usize,
) {
    let n = 20;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        server.push(Reply::sse(body.clone()));
        let req = CompletionRequest {
            model: "bench-model".into(),
            system: Some("sys".into()),
            messages: vec![Message::user("go")],
            tools: vec![],
            max_tokens: 100,
            temperature: None,
        };
        let started = Instant::now();
        let stream = provider.stream(req).await.expect("stream");
        let mut count = 0usize;
        collect_stream(stream, |_| count += 1)
            .await
            .expect("collect");
        assert_eq!(count, deltas);
        samples.push(started.elapsed());
    }
    let s = stats(samples);
    let per = s.p50.as_secs_f64();
    println!(
        "| {label} | {deltas} deltas, {:.0} KiB | {:.0} deltas/s | {:.1} MiB/s | {:.2} ms |",
        body.len() as f64 / 1024.0,
        deltas as f64 / per,
        body.len() as f64 / per / (1024.0 * 1024.0),
        per * 1e3
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 30 } else { 200 };
    println!("\n### Ask loop overhead (fake model on loopback), n per row as shown\n");
    println!("| case | n | asks/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let sqlite = zocalo_testkit::db::sqlite().await;
    let pg = zocalo_testkit::db::postgres().await;
    for (backend, db) in [("sqlite", &sqlite), ("postgres", &pg)] {
        bench_ask(
            &db.store,
            &format!("{backend}: new conversation, text answer"),
            n,
            false,
            0,
        )
        .await;
        bench_ask(
            &db.store,
            &format!("{backend}: new conversation, one tool round"),
            n,
            true,
            0,
        )
        .await;
        bench_ask(
            &db.store,
            &format!("{backend}: continue a 100-message conversation"),
            n,
            false,
            50,
        )
        .await;
    }

    println!("\n### Streaming parse throughput (median of 20 runs)\n");
    println!("| provider | body | rate | bytes | p50 |");
    println!("|---|---|---|---|---|");
    let deltas = 5000;
    let words: Vec<String> = (0..deltas).map(|i| format!("tok{i} ")).collect();
    let pieces: Vec<&str> = words.iter().map(String::as_str).collect();
    let server = FakeServer::start().await;
    let openai = OpenAiProvider::new(endpoint("openai", format!("{}/v1", server.url())));
    bench_stream(
        &openai,
        &server,
        openai_text_sse("bench-model", &pieces),
        "openai",
        deltas,
    )
    .await;
    let anthropic = AnthropicProvider::new(endpoint("anthropic", server.url()));
    bench_stream(
        &anthropic,
        &server,
        anthropic_text_sse("bench-model", &pieces),
        "anthropic",
        deltas,
    )
    .await;
    sqlite.cleanup().await;
    pg.cleanup().await;
}
