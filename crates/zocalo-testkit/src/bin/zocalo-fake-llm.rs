//! A canned OpenAI-compatible model for `./x demo` until the local model lands.
//!
//! `zocalo-fake-llm [--port N]` serves `POST /v1/chat/completions` on 127.0.0.1 (port 0 picks
//! a free one) and prints `listening http://127.0.0.1:PORT` as its first stdout line. Answers
//! stream in the recorded OpenAI wire format (see `zocalo_testkit::fake`):
//! - a request offering a `current_time` tool, with no tool result yet, gets a call to it
//!   for `{"timezone":"Europe/Paris"}`;
//! - a request ending with a tool result gets "It is now <result> in Paris.";
//! - anything else gets "Hello from the zocalo fake provider: you said: <last user text>".
//!
//! Directives in the last user message script failures for callers' tests (the Python
//! package's, which have no in-process `FakeServer`):
//! - `[fake:status=NNN]` answers HTTP NNN with an OpenAI-style JSON error;
//! - `[fake:slow]` streams the greeting one word a second (an ask that waits long enough to
//!   be interrupted).

use std::io::Write;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use zocalo_testkit::fake::{openai_text_sse, openai_tool_call_sse, Reply};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = match parse_port(std::env::args().skip(1).collect()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zocalo-fake-llm: {e}\nusage: zocalo-fake-llm [--port N]");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("zocalo-fake-llm: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zocalo-fake-llm: {e}");
            std::process::exit(1);
        }
    };
    println!("listening http://{addr}");
    let _ = std::io::stdout().flush();
    let app = Router::new()
        .route("/v1/chat/completions", post(complete))
        .route("/chat/completions", post(complete));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("zocalo-fake-llm: {e}");
        std::process::exit(1);
    }
}

fn parse_port(args: Vec<String>) -> Result<u16, String> {
    match args.as_slice() {
        [] => Ok(0),
        [flag, n] if flag == "--port" => n.parse().map_err(|_| format!("bad port {n:?}")),
        [arg] if arg.starts_with("--port=") => {
            let n = &arg["--port=".len()..];
            n.parse().map_err(|_| format!("bad port {n:?}"))
        }
        other => Err(format!("unexpected arguments {other:?}")),
    }
}

async fn complete(body: Bytes) -> Reply {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Reply::json(
            400,
            serde_json::json!({"error": {"message": "the body is not JSON", "type": "invalid_request_error"}}),
        );
    };
    let model = request["model"]
        .as_str()
        .unwrap_or("zocalo-fake")
        .to_owned();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let offers_clock = request["tools"].as_array().is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t["function"]["name"].as_str() == Some("current_time"))
    });
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    if let Some(status) = directive_status(&last_user) {
        return Reply::json(
            status,
            serde_json::json!({"error": {
                "message": format!("zocalo-fake-llm: scripted HTTP {status}"),
                "type": "invalid_request_error",
                "code": status,
            }}),
        );
    }
    if last_user.contains("[fake:slow]") {
        let text = format!("Hello from the zocalo fake provider: you said: {last_user}");
        let pieces: Vec<&str> = text.split_inclusive(' ').collect();
        let body = openai_text_sse(&model, &pieces);
        // One SSE event per chunk: split at each event boundary.
        let cuts: Vec<usize> = body.match_indices("\n\n").map(|(i, _)| i + 2).collect();
        return Reply::sse(body)
            .split_at(&cuts)
            .chunk_delay(std::time::Duration::from_secs(1));
    }
    let has_tool_result = messages.iter().any(|m| m["role"] == "tool");
    // Quote a tool result only when it answers this turn (it is the last message), so a
    // follow-up question in the same conversation gets a fresh reply.
    let fresh_tool_result = messages
        .last()
        .filter(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str());
    let body = match fresh_tool_result {
        None if offers_clock && !has_tool_result => openai_tool_call_sse(
            &model,
            "call_zocalo_fake_0001",
            "current_time",
            r#"{"timezone":"Europe/Paris"}"#,
        ),
        Some(result) => answer(&model, &format!("It is now {result} in Paris.")),
        None => answer(
            &model,
            &format!("Hello from the zocalo fake provider: you said: {last_user}"),
        ),
    };
    Reply::sse(body)
}

/// `[fake:status=NNN]` in `text`: the HTTP status to answer with.
fn directive_status(text: &str) -> Option<u16> {
    let rest = &text[text.find("[fake:status=")? + "[fake:status=".len()..];
    let end = rest.find(']')?;
    rest[..end].parse().ok().filter(|s| (100..600).contains(s))
}

/// Stream `text` word by word, as a model would.
fn answer(model: &str, text: &str) -> String {
    let pieces: Vec<&str> = text.split_inclusive(' ').collect();
    openai_text_sse(model, &pieces)
}
