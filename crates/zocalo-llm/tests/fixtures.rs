//! Recorded vendor responses (see `crates/zocalo-testkit/fixtures/README.md`) served over
//! real HTTP, whole and split at arbitrary byte offsets. The expected values below were read
//! off the fixture files by hand, not produced by the code under test.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use zocalo_core::{CompletionResponse, StopReason, ToolCall, Usage};
use zocalo_testkit::fake::{fixture, FakeServer, Reply};

const OPENAI_TEXT: &str = "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app.";

fn call(id: &str, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

fn check_openai_text(r: &CompletionResponse) {
    assert_eq!(r.message.content, OPENAI_TEXT);
    assert!(r.message.tool_calls.is_empty());
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 14,
            output_tokens: 30
        }
    );
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.model, "gpt-4o-2024-08-06");
}

fn check_openai_tool_call(r: &CompletionResponse) {
    assert_eq!(r.message.content, "");
    assert_eq!(
        r.message.tool_calls,
        vec![call(
            "call_CTf1nWJLqSeRgDqaCG27xZ74",
            "get_weather",
            json!({"city": "San Francisco", "state": "CA"})
        )]
    );
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 48,
            output_tokens: 19
        }
    );
    assert_eq!(r.stop_reason, StopReason::ToolUse);
}

fn check_openai_parallel(r: &CompletionResponse) {
    assert_eq!(
        r.message.tool_calls,
        vec![
            call(
                "call_JMW1whyEaYG438VE1OIflxA2",
                "GetWeatherArgs",
                json!({"city": "Edinburgh", "country": "GB", "units": "c"})
            ),
            call(
                "call_DNYTawLBoN8fj3KN6qU9N1Ou",
                "get_stock_price",
                json!({"ticker": "AAPL", "exchange": "NASDAQ"})
            ),
        ]
    );
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 149,
            output_tokens: 60
        }
    );
    assert_eq!(r.stop_reason, StopReason::ToolUse);
}

fn check_anthropic_text(r: &CompletionResponse) {
    assert_eq!(r.message.content, "Hello there!");
    assert!(r.message.tool_calls.is_empty());
    // input from message_start; output from message_delta (replacing message_start's 1).
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 11,
            output_tokens: 6
        }
    );
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.model, "claude-3-opus-latest");
}

fn check_anthropic_tool_use(r: &CompletionResponse) {
    assert_eq!(
        r.message.content,
        "I'll check the current weather in Paris for you."
    );
    assert_eq!(
        r.message.tool_calls,
        vec![call(
            "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "get_weather",
            json!({"location": "Paris"})
        )]
    );
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 377,
            output_tokens: 65
        }
    );
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(r.model, "claude-sonnet-4-20250514");
}

#[derive(Clone, Copy, Debug)]
enum Vendor {
    OpenAi,
    Anthropic,
}

/// A fixture: who sent it, its path, and the hand-checked expectations.
type Case = (Vendor, &'static str, fn(&CompletionResponse));

const CASES: &[Case] = &[
    (Vendor::OpenAi, "openai/text.sse", check_openai_text),
    (
        Vendor::OpenAi,
        "openai/tool_call.sse",
        check_openai_tool_call,
    ),
    (
        Vendor::OpenAi,
        "openai/parallel_tool_calls.sse",
        check_openai_parallel,
    ),
    (
        Vendor::Anthropic,
        "anthropic/text.sse",
        check_anthropic_text,
    ),
    (
        Vendor::Anthropic,
        "anthropic/tool_use.sse",
        check_anthropic_tool_use,
    ),
];

async fn run(vendor: Vendor, reply: Reply) -> CompletionResponse {
    let server = FakeServer::start().await;
    server.push(reply);
    let r = match vendor {
        Vendor::OpenAi => complete(&openai(&server), ask("hi")).await,
        Vendor::Anthropic => complete(&anthropic(&server), ask("hi")).await,
    };
    r.unwrap_or_else(|e| panic!("{vendor:?}: {e}"))
}

#[tokio::test]
async fn each_fixture_parses_to_its_hand_checked_values() {
    for (vendor, name, check) in CASES {
        let r = run(*vendor, Reply::sse(fixture(name))).await;
        check(&r);
    }
}

#[tokio::test]
async fn text_arrives_as_deltas_in_order() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(fixture("anthropic/text.sse")));
    let items = events(&anthropic(&server), ask("hi")).await.unwrap();
    let texts: Vec<String> = items
        .iter()
        .filter_map(|e| match e {
            Ok(zocalo_core::StreamEvent::TextDelta(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["Hello", " there", "!"]);
    assert!(matches!(
        items.last(),
        Some(Ok(zocalo_core::StreamEvent::Done { .. }))
    ));
}

#[tokio::test]
async fn fixtures_one_byte_per_chunk() {
    for (vendor, name, check) in CASES {
        let body = fixture(name);
        let every: Vec<usize> = (1..body.len()).collect();
        check(&run(*vendor, Reply::sse(body).split_at(&every)).await);
    }
}

fn split_case() -> impl Strategy<Value = (usize, Vec<usize>)> {
    (0..CASES.len()).prop_flat_map(|i| {
        let len = fixture(CASES[i].1).len();
        (Just(i), proptest::collection::vec(0..len, 0..40))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any chunking of a recorded body (including inside JSON strings, between `\n\n`, and
    /// inside multi-byte characters) decodes to the same answer.
    #[test]
    fn fixtures_split_anywhere_give_the_same_result((case, offsets) in split_case()) {
        let (vendor, name, check) = CASES[case];
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt.block_on(run(vendor, Reply::sse(fixture(name)).split_at(&offsets)));
        check(&r);
    }
}
