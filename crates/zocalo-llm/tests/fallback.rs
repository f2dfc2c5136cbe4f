//! The fallback chain over real HTTP: which errors move on to the next provider, which are
//! reported, and that the caller learns who answered.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use zocalo_core::Secret;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::{collect_stream, FallbackProvider, LlmError, Provider};
use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};

fn second_endpoint(server: &FakeServer) -> Endpoint {
    let mut ep = Endpoint::new(
        "groq",
        &format!("{}/v1", server.url()),
        Some(Secret::new("gsk-test-0123456789abcdef")),
        "GROQ_API_KEY",
        "llama-second",
    );
    ep.retry = fast_retry();
    ep
}

fn chain(first: &FakeServer, second: &FakeServer) -> FallbackProvider {
    FallbackProvider::new(vec![
        Arc::new(OpenAiProvider::new(openai_endpoint(first))) as Arc<dyn Provider>,
        Arc::new(OpenAiProvider::new(second_endpoint(second))),
    ])
    .unwrap()
}

fn rate_limited() -> Reply {
    Reply::json(
        429,
        json!({"error": {"message": "slow down", "type": "rate_limit"}}),
    )
    .header("retry-after", "0")
}

#[tokio::test]
async fn rate_limited_first_provider_hands_over_to_the_second() {
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    for _ in 0..fast_retry().max_attempts {
        a.push(rate_limited());
    }
    b.push(Reply::sse(openai_text_sse(
        "llama-second",
        &["from ", "groq"],
    )));
    let mut req = ask("hi");
    req.model = "gpt-test".into();
    let named = chain(&a, &b).stream_named(req).await.unwrap();
    assert_eq!(named.provider, "groq");
    let r = collect_stream(named.stream, |_| {}).await.unwrap();
    assert_eq!(r.message.content, "from groq");
    assert_eq!(
        a.requests().len() as u32,
        fast_retry().max_attempts,
        "retried first"
    );
    let sent = b.requests();
    assert_eq!(sent.len(), 1);
    // The first choice's model means nothing to the next vendor: it gets its default.
    assert_eq!(sent[0].body["model"], "llama-second");
}

#[tokio::test]
async fn server_errors_and_refused_connections_fail_over() {
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    for _ in 0..fast_retry().max_attempts {
        a.push(Reply::json(503, json!({"error": {"message": "down"}})));
    }
    b.push(Reply::sse(openai_text_sse("m", &["ok"])));
    let named = chain(&a, &b).stream_named(ask("hi")).await.unwrap();
    assert_eq!(named.provider, "groq");

    // Nothing listens on the first address.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut ep = openai_endpoint(&a);
    ep.base_url = format!("http://{dead}/v1");
    b.push(Reply::sse(openai_text_sse("m", &["ok"])));
    let c = FallbackProvider::new(vec![
        Arc::new(OpenAiProvider::new(ep)) as Arc<dyn Provider>,
        Arc::new(OpenAiProvider::new(second_endpoint(&b))),
    ])
    .unwrap();
    let named = c.stream_named(ask("hi")).await.unwrap();
    assert_eq!(named.provider, "groq");
}

#[tokio::test]
async fn in_stream_overload_before_any_text_fails_over() {
    // Anthropic reports overload as an `error` event inside a 200 stream.
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    a.push(Reply::sse(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    ));
    b.push(Reply::sse(openai_text_sse("m", &["second"])));
    let c = FallbackProvider::new(vec![
        Arc::new(zocalo_llm::anthropic::AnthropicProvider::new(
            anthropic_endpoint(&a),
        )) as Arc<dyn Provider>,
        Arc::new(OpenAiProvider::new(second_endpoint(&b))),
    ])
    .unwrap();
    let named = c.stream_named(ask("hi")).await.unwrap();
    assert_eq!(named.provider, "groq");
    let r = collect_stream(named.stream, |_| {}).await.unwrap();
    assert_eq!(r.message.content, "second");
}

#[tokio::test]
async fn auth_and_bad_requests_are_reported_not_failed_over() {
    for (status, kind) in [(401, "auth"), (400, "bad")] {
        let (a, b) = (FakeServer::start().await, FakeServer::start().await);
        a.push(Reply::json(status, json!({"error": {"message": "no"}})));
        b.push(Reply::sse(openai_text_sse("m", &["never"])));
        let e = chain(&a, &b).stream_named(ask("hi")).await.err().unwrap();
        match kind {
            "auth" => assert!(matches!(e, LlmError::Auth { .. }), "{e:?}"),
            _ => assert!(matches!(e, LlmError::BadRequest { .. }), "{e:?}"),
        }
        assert!(
            b.requests().is_empty(),
            "{status} must not reach the next provider"
        );
    }
}

#[tokio::test]
async fn a_stream_cut_after_text_is_not_replayed_elsewhere() {
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    let body = openai_text_sse("m", &["partial answer that is long enough", " and more"]);
    let cut = body.find("and more").unwrap();
    a.push(Reply::sse(body).cut_after(cut));
    b.push(Reply::sse(openai_text_sse("m", &["never"])));
    let named = chain(&a, &b).stream_named(ask("hi")).await.unwrap();
    assert_eq!(named.provider, "openai");
    let e = collect_stream(named.stream, |_| {}).await.unwrap_err();
    assert!(matches!(e, LlmError::StreamCut { .. }), "{e:?}");
    assert!(b.requests().is_empty());
}

#[tokio::test]
async fn when_every_member_fails_each_error_is_reported() {
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    for _ in 0..fast_retry().max_attempts {
        a.push(rate_limited());
    }
    b.push(Reply::json(401, json!({"error": {"message": "bad key"}})));
    let e = chain(&a, &b).stream_named(ask("hi")).await.err().unwrap();
    let text = e.to_string();
    assert!(matches!(e, LlmError::AllFailed { .. }), "{e:?}");
    assert!(text.contains("openai") && text.contains("429"), "{text}");
    assert!(text.contains("groq") && text.contains("401"), "{text}");
    assert!(
        !text.contains("0123456789abcdef"),
        "no key in errors: {text}"
    );
}
