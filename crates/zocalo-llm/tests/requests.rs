//! What the providers put on the wire, checked on the requests the fake server recorded.

mod common;

use common::*;
use serde_json::json;
use zocalo_core::{CompletionRequest, Message, Role, StopReason, ToolCall, ToolSpec};
use zocalo_llm::openai::OpenAiProvider;
use zocalo_testkit::fake::{
    anthropic_text_sse, anthropic_tool_use_sse, openai_text_sse, openai_tool_call_sse, FakeServer,
    Reply,
};

fn clock_tool() -> ToolSpec {
    ToolSpec {
        name: "current_time".into(),
        description: "The current local time in an IANA time zone.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        }),
    }
}

/// A conversation after one tool round: user, assistant calling a tool, the tool's result.
fn round_trip_request(call_id: &str) -> CompletionRequest {
    CompletionRequest {
        model: String::new(),
        system: Some("You are zocalo.".into()),
        messages: vec![
            Message::user("What time is it in Paris?"),
            Message {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: call_id.into(),
                    name: "current_time".into(),
                    arguments: json!({"timezone": "Europe/Paris"}),
                }],
                tool_call_id: None,
                is_error: false,
            },
            Message::tool_result(call_id, "2026-03-08T08:30:00+01:00", false),
        ],
        tools: vec![clock_tool()],
        max_tokens: 512,
        temperature: Some(0.2),
    }
}

#[tokio::test]
async fn openai_tool_call_round_trip_on_the_wire() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_abc",
        "current_time",
        r#"{"timezone":"Europe/Paris"}"#,
    )));
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["It is 08:30", " in Paris."],
    )));
    let p = openai(&server);
    assert!(
        !format!("{p:?}").contains(OPENAI_KEY),
        "Debug must redact the key"
    );

    // Turn 1: the model asks for the tool; the call comes back whole.
    let mut first = round_trip_request("call_abc");
    first.messages.truncate(1);
    let r = complete(&p, first).await.unwrap();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(
        r.message.tool_calls,
        vec![ToolCall {
            id: "call_abc".into(),
            name: "current_time".into(),
            arguments: json!({"timezone": "Europe/Paris"}),
        }]
    );

    // Turn 2: the call and its result go back with matching ids.
    let r = complete(&p, round_trip_request("call_abc")).await.unwrap();
    assert_eq!(r.message.content, "It is 08:30 in Paris.");
    assert_eq!(r.stop_reason, StopReason::EndTurn);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/chat/completions");
        assert_eq!(req.headers["authorization"], format!("Bearer {OPENAI_KEY}"));
        assert_eq!(req.headers["content-type"], "application/json");
        assert!(!req.headers.contains_key("x-api-key"));
        assert_eq!(
            req.body["model"], "gpt-test",
            "the endpoint's default model"
        );
        assert_eq!(req.body["stream"], true);
        assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
        assert_eq!(req.body["max_tokens"], 512);
        assert_eq!(req.body["temperature"], json!(0.2f32));
        assert_eq!(
            req.body["tools"],
            json!([{"type": "function", "function": {
                "name": "current_time",
                "description": "The current local time in an IANA time zone.",
                "parameters": clock_tool().parameters,
            }}])
        );
    }
    assert_eq!(
        reqs[1].body["messages"],
        json!([
            {"role": "system", "content": "You are zocalo."},
            {"role": "user", "content": "What time is it in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_abc",
                "type": "function",
                "function": {"name": "current_time", "arguments": "{\"timezone\":\"Europe/Paris\"}"},
            }]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "2026-03-08T08:30:00+01:00"},
        ])
    );
}

#[tokio::test]
async fn openai_without_key_sends_no_authorization_and_omits_empty_tools() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse("llama3.2", &["hi"])));
    let mut ep = openai_endpoint(&server);
    ep.api_key = None;
    let p = OpenAiProvider::new(ep);
    let mut req = ask("hello");
    req.model = "llama3.2".into();
    let r = complete(&p, req).await.unwrap();
    assert_eq!(r.message.content, "hi");
    let sent = &server.requests()[0];
    assert!(!sent.headers.contains_key("authorization"));
    assert!(sent.body.get("tools").is_none());
    assert!(sent.body.get("temperature").is_none());
    assert_eq!(sent.body["model"], "llama3.2");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hello"}])
    );
}

#[tokio::test]
async fn anthropic_tool_use_round_trip_on_the_wire() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(anthropic_tool_use_sse(
        "claude-test",
        "toolu_01A",
        "current_time",
        r#"{"timezone":"Europe/Paris"}"#,
    )));
    server.push(Reply::sse(anthropic_text_sse(
        "claude-test",
        &["It is 08:30 ", "in Paris."],
    )));
    let p = anthropic(&server);
    assert!(
        !format!("{p:?}").contains(ANTHROPIC_KEY),
        "Debug must redact the key"
    );

    let mut first = round_trip_request("toolu_01A");
    first.messages.truncate(1);
    let r = complete(&p, first).await.unwrap();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(
        r.message.tool_calls,
        vec![ToolCall {
            id: "toolu_01A".into(),
            name: "current_time".into(),
            arguments: json!({"timezone": "Europe/Paris"}),
        }]
    );

    let r = complete(&p, round_trip_request("toolu_01A")).await.unwrap();
    assert_eq!(r.message.content, "It is 08:30 in Paris.");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(req.headers["x-api-key"], ANTHROPIC_KEY);
        assert_eq!(req.headers["anthropic-version"], "2023-06-01");
        assert_eq!(req.headers["content-type"], "application/json");
        assert!(!req.headers.contains_key("authorization"));
        assert_eq!(req.body["model"], "claude-test");
        assert_eq!(req.body["system"], "You are zocalo.");
        assert_eq!(req.body["max_tokens"], 512);
        assert_eq!(req.body["stream"], true);
        assert_eq!(
            req.body["tools"],
            json!([{
                "name": "current_time",
                "description": "The current local time in an IANA time zone.",
                "input_schema": clock_tool().parameters,
            }])
        );
        // The system prompt is top level, never a message.
        assert!(req.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system"));
    }
    assert_eq!(
        reqs[1].body["messages"],
        json!([
            {"role": "user", "content": "What time is it in Paris?"},
            {"role": "assistant", "content": [{
                "type": "tool_use", "id": "toolu_01A", "name": "current_time",
                "input": {"timezone": "Europe/Paris"},
            }]},
            {"role": "user", "content": [{
                "type": "tool_result", "tool_use_id": "toolu_01A",
                "content": "2026-03-08T08:30:00+01:00", "is_error": false,
            }]},
        ])
    );
}
