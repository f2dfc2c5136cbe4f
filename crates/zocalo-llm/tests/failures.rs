//! How failures surface, for both vendors: HTTP statuses, retries, cut streams, refused
//! connections and silent servers, all over real HTTP on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use zocalo_core::StreamEvent;
use zocalo_llm::anthropic::AnthropicProvider;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::{LlmError, Provider, RetryPolicy};
use zocalo_testkit::fake::{anthropic_text_sse, fixture, openai_text_sse, FakeServer, Reply};

#[derive(Clone, Copy, Debug)]
enum Vendor {
    OpenAi,
    Anthropic,
}

const BOTH: [Vendor; 2] = [Vendor::OpenAi, Vendor::Anthropic];

impl Vendor {
    fn provider(
        self,
        server: &FakeServer,
        tweak: impl FnOnce(&mut zocalo_llm::registry::Endpoint),
    ) -> Box<dyn Provider> {
        match self {
            Vendor::OpenAi => {
                let mut ep = openai_endpoint(server);
                tweak(&mut ep);
                Box::new(OpenAiProvider::new(ep))
            }
            Vendor::Anthropic => {
                let mut ep = anthropic_endpoint(server);
                tweak(&mut ep);
                Box::new(AnthropicProvider::new(ep))
            }
        }
    }

    fn key(self) -> &'static str {
        match self {
            Vendor::OpenAi => OPENAI_KEY,
            Vendor::Anthropic => ANTHROPIC_KEY,
        }
    }

    fn text_sse(self, pieces: &[&str]) -> String {
        match self {
            Vendor::OpenAi => openai_text_sse("m", pieces),
            Vendor::Anthropic => anthropic_text_sse("m", pieces),
        }
    }

    /// The vendor's documented error body.
    fn error_body(self, kind: &str, message: &str) -> serde_json::Value {
        match self {
            Vendor::OpenAi => {
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            }
            Vendor::Anthropic => {
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
        }
    }
}

#[tokio::test]
async fn unauthorized_is_auth_not_retried_and_never_shows_the_key() {
    for v in BOTH {
        let server = FakeServer::start().await;
        // Some servers echo the key they got; it must still not reach the user.
        let message = format!("Incorrect API key provided: {}", v.key());
        server.push(Reply::json(
            401,
            v.error_body("authentication_error", &message),
        ));
        let p = v.provider(&server, |_| {});
        let e = p.stream(ask("hi")).await.err().unwrap();
        assert!(
            matches!(e, LlmError::Auth { status: 401, .. }),
            "{v:?}: {e:?}"
        );
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(shown.contains("Incorrect API key provided"), "{shown}");
        assert!(
            !shown.contains(v.key()) && !debug.contains(v.key()),
            "{shown} / {debug}"
        );
        assert!(
            shown.contains("_API_KEY"),
            "says which variable to fix: {shown}"
        );
        assert!(!e.is_retryable());
        assert_eq!(server.requests().len(), 1, "{v:?}: 401 must not be retried");
    }
}

#[tokio::test]
async fn forbidden_is_auth_too() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        403,
        Vendor::OpenAi.error_body("permission_error", "not allowed"),
    ));
    let e = Vendor::OpenAi
        .provider(&server, |_| {})
        .stream(ask("hi"))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, LlmError::Auth { status: 403, .. }), "{e:?}");
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    for v in BOTH {
        let server = FakeServer::start().await;
        server.push(
            Reply::json(429, v.error_body("rate_limit_error", "slow down"))
                .header("retry-after", "1"),
        );
        server.push(Reply::sse(v.text_sse(&["after ", "the wait"])));
        // A backoff this small would retry at once: only Retry-After explains a 1 s wait.
        let p = v.provider(&server, |ep| {
            ep.retry = RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_secs(5),
            }
        });
        let started = Instant::now();
        let r = complete(p.as_ref(), ask("hi")).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(r.message.content, "after the wait");
        assert!(
            waited >= Duration::from_millis(950),
            "{v:?}: waited only {waited:?}"
        );
        assert!(waited < Duration::from_secs(4), "{v:?}: waited {waited:?}");
        assert_eq!(server.requests().len(), 2);
    }
}

#[tokio::test]
async fn rate_limit_that_persists_reports_the_wait() {
    let server = FakeServer::start().await;
    for _ in 0..3 {
        server.push(
            Reply::json(
                429,
                Vendor::OpenAi.error_body("requests", "Rate limit reached"),
            )
            .header("retry-after", "0"),
        );
    }
    let p = Vendor::OpenAi.provider(&server, |_| {});
    let e = p.stream(ask("hi")).await.err().unwrap();
    assert!(
        matches!(e, LlmError::RateLimited { retry_after: Some(d), .. } if d.is_zero()),
        "{e:?}"
    );
    assert!(e.to_string().contains("Rate limit reached"));
    assert_eq!(server.requests().len(), 3, "bounded by max_attempts");
}

#[tokio::test]
async fn server_error_then_success() {
    for v in BOTH {
        let server = FakeServer::start().await;
        server.push(Reply::json(
            500,
            v.error_body("api_error", "Internal server error"),
        ));
        server.push(Reply::sse(v.text_sse(&["fine ", "now"])));
        let r = complete(v.provider(&server, |_| {}).as_ref(), ask("hi"))
            .await
            .unwrap();
        assert_eq!(r.message.content, "fine now");
        assert_eq!(server.requests().len(), 2);
    }
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retried() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        529,
        Vendor::Anthropic.error_body("overloaded_error", "Overloaded"),
    ));
    server.push(Reply::sse(fixture("anthropic/text.sse")));
    let r = complete(
        Vendor::Anthropic.provider(&server, |_| {}).as_ref(),
        ask("hi"),
    )
    .await
    .unwrap();
    assert_eq!(r.message.content, "Hello there!");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_give_up_after_max_attempts() {
    let server = FakeServer::start().await;
    for _ in 0..5 {
        server.push(Reply::json(
            503,
            json!({"error": {"message": "unavailable"}}),
        ));
    }
    let e = Vendor::OpenAi
        .provider(&server, |_| {})
        .stream(ask("hi"))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, LlmError::Server { status: 503, .. }), "{e:?}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn bad_request_shows_the_providers_message() {
    for v in BOTH {
        let server = FakeServer::start().await;
        let message = "max_tokens: 100000 > 8192, which is the maximum allowed";
        server.push(Reply::json(
            400,
            v.error_body("invalid_request_error", message),
        ));
        let e = v
            .provider(&server, |_| {})
            .stream(ask("hi"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&e, LlmError::BadRequest { status: 400, message: m, .. } if m == message),
            "{v:?}: {e:?}"
        );
        assert!(e.to_string().contains(message));
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn stream_cut_mid_answer_is_an_error_after_the_partial_text() {
    for v in BOTH {
        let server = FakeServer::start().await;
        let body = v.text_sse(&["This answer ", "will be cut ", "before the end."]);
        // Inside the second piece: its event never completes.
        let cut = body.find("will be cut").unwrap() + 5;
        server.push(Reply::sse(body).cut_after(cut));
        let items = events(v.provider(&server, |_| {}).as_ref(), ask("hi"))
            .await
            .unwrap();
        let text: String = items
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "This answer ", "{v:?}");
        assert!(
            matches!(
                items.last(),
                Some(Err(LlmError::StreamCut { received: 12 }))
            ),
            "{v:?}: {items:?}"
        );
        assert!(!items
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::Done { .. }))));
        assert_eq!(
            server.requests().len(),
            1,
            "a started stream is not replayed"
        );
    }
}

#[tokio::test]
async fn body_that_ends_cleanly_without_terminal_event_is_a_cut() {
    for v in BOTH {
        let server = FakeServer::start().await;
        let body = v.text_sse(&["complete ", "sentence."]);
        // Drop the terminal event but close the body properly.
        let end = match v {
            Vendor::OpenAi => body.find("data: [DONE]").unwrap(),
            Vendor::Anthropic => body.find("event: message_stop").unwrap(),
        };
        server.push(Reply::sse(body[..end].to_owned()));
        let e = complete(v.provider(&server, |_| {}).as_ref(), ask("hi"))
            .await
            .unwrap_err();
        assert!(matches!(e, LlmError::StreamCut { .. }), "{v:?}: {e:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_connect_and_names_the_url() {
    // A port that was free a moment ago and has nobody listening now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = FakeServer::start().await; // only to build the endpoint
    let p = Vendor::OpenAi.provider(&server, |ep| {
        ep.base_url = format!("http://127.0.0.1:{port}/v1");
        ep.retry = RetryPolicy {
            max_attempts: 2,
            ..fast_retry()
        };
    });
    let e = p.stream(ask("hi")).await.err().unwrap();
    match &e {
        LlmError::Connect { url, .. } => {
            assert_eq!(url, &format!("http://127.0.0.1:{port}/v1/chat/completions"))
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_retryable());
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn silent_server_mid_stream_is_a_timeout() {
    for v in BOTH {
        let server = FakeServer::start().await;
        let body = v.text_sse(&["partial ", "answer"]);
        let stall = body.find("answer").unwrap() - 10;
        server.push(Reply::sse(body).stall_after(stall));
        let p = v.provider(&server, |ep| ep.idle_timeout = Duration::from_millis(300));
        let started = Instant::now();
        let items = events(p.as_ref(), ask("hi")).await.unwrap();
        assert!(
            matches!(items.first(), Some(Ok(StreamEvent::TextDelta(t))) if t == "partial ")
                || items
                    .iter()
                    .any(|e| matches!(e, Ok(StreamEvent::TextDelta(t)) if t == "partial ")),
            "{v:?}: {items:?}"
        );
        assert!(
            matches!(items.last(), Some(Err(LlmError::Timeout { after, .. })) if *after == Duration::from_millis(300)),
            "{v:?}: {items:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn server_that_never_answers_is_a_timeout() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(fixture("openai/text.sse")).delay(Duration::from_secs(10)));
    let p = Vendor::OpenAi.provider(&server, |ep| {
        ep.idle_timeout = Duration::from_millis(200);
        ep.retry = RetryPolicy::none();
    });
    let started = Instant::now();
    let e = p.stream(ask("hi")).await.err().unwrap();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn anthropic_error_event_mid_stream() {
    let server = FakeServer::start().await;
    let body = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: error\n",
        "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    );
    server.push(Reply::sse(body));
    let items = events(
        Vendor::Anthropic.provider(&server, |_| {}).as_ref(),
        ask("hi"),
    )
    .await
    .unwrap();
    assert!(
        matches!(items.last(), Some(Err(LlmError::Server { status: 529, message, .. })) if message == "Overloaded"),
        "{items:?}"
    );
}

#[tokio::test]
async fn openai_error_object_mid_stream() {
    let server = FakeServer::start().await;
    let mut body = openai_text_sse("m", &["Hel"]);
    body.truncate(body.find("data: {\"id\":\"chatcmpl-zocalofake0000000000000001\",\"object\":\"chat.completion.chunk\",\"created\":1727346168,\"model\":\"m\",\"system_fingerprint\":\"fp_zocalofake\",\"choices\":[{\"index\":0,\"delta\":{},").unwrap());
    body.push_str("data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n");
    server.push(Reply::sse(body));
    let items = events(Vendor::OpenAi.provider(&server, |_| {}).as_ref(), ask("hi"))
        .await
        .unwrap();
    assert!(
        matches!(&items[0], Ok(StreamEvent::TextDelta(t)) if t == "Hel"),
        "{items:?}"
    );
    assert!(
        matches!(items.last(), Some(Err(LlmError::Server { message, .. })) if message.contains("had an error")),
        "{items:?}"
    );
}
