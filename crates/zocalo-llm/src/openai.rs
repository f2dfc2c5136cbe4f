//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`, streamed).
//!
//! Always streams with `stream_options.include_usage`, so the last chunk before
//! `data: [DONE]` carries token usage (`choices: []`). Tool calls arrive as fragments keyed
//! by `index`: the first has the id and name, the arguments string follows in pieces; they
//! are emitted whole when the choice's `finish_reason` arrives. `[DONE]` is the terminal
//! event: a body that ends without it was cut.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::{json, Map, Value};
use zocalo_core::{CompletionRequest, Message, Role, StopReason, StreamEvent, ToolCall, Usage};

use crate::http::{self, json_error_message};
use crate::registry::Endpoint;
use crate::sse::{self, parse_arguments, parse_json, Decoder};
use crate::{EventStream, LlmError, Provider};

pub struct OpenAiProvider {
    endpoint: Endpoint,
    client: reqwest::Client,
}

impl OpenAiProvider {
    pub fn new(endpoint: Endpoint) -> Self {
        let client = http::client(&endpoint);
        Self { endpoint, client }
    }

    /// The endpoint this provider calls.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The JSON body sent for `request` (always streaming, with usage).
    pub fn request_body(&self, request: &CompletionRequest) -> Value {
        request_body(request, self.endpoint.model_for(request))
    }
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }
    fn default_model(&self) -> &str {
        &self.endpoint.default_model
    }
    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        let body = self.request_body(&request);
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let url = format!("{}/chat/completions", self.endpoint.base_url);
        let mut headers = HeaderMap::new();
        if let Some(v) = http::key_header(&self.endpoint, "Bearer ").map_err(LlmError::Other)? {
            headers.insert(AUTHORIZATION, v);
        }
        let response =
            http::post_for_stream(&self.client, &self.endpoint, &url, headers, &body).await?;
        let idle = self.endpoint.idle_timeout;
        Ok(sse::decode_stream(
            sse::body_chunks(response, idle),
            ChunkDecoder::new(&self.endpoint.name, &model),
            &self.endpoint.name,
            idle,
        ))
    }
}

fn request_body(request: &CompletionRequest, model: &str) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.extend(request.messages.iter().map(message_json));
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("max_tokens".into(), json!(request.max_tokens));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    Value::Object(body)
}

fn message_json(m: &Message) -> Value {
    match m.role {
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Assistant => {
            let mut v = json!({"role": "assistant"});
            v["content"] = if m.content.is_empty() && !m.tool_calls.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments.to_string()},
                        })
                    })
                    .collect();
            }
            v
        }
        // Chat Completions has no error flag for tool results; the text says it.
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.clone().unwrap_or_default(),
            "content": m.content,
        }),
    }
}

/// A tool call being assembled from `delta.tool_calls` fragments.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

struct ChunkDecoder {
    provider: String,
    model: String,
    calls: BTreeMap<u64, PartialCall>,
    stop_reason: Option<StopReason>,
}

impl ChunkDecoder {
    fn new(provider: &str, requested_model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: requested_model.to_owned(),
            calls: BTreeMap::new(),
            stop_reason: None,
        }
    }

    /// Emit the assembled tool calls, in index order.
    fn flush_calls(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        for (_, call) in std::mem::take(&mut self.calls) {
            let arguments = parse_arguments(&self.provider, &call.name, &call.arguments)?;
            out.push(StreamEvent::ToolCall(ToolCall {
                id: call.id,
                name: call.name,
                arguments,
            }));
        }
        Ok(())
    }

    fn tool_fragment(&mut self, fragment: &Value) {
        // `index` is required by the spec; a server that omits it sends one call at a time.
        let index = fragment["index"].as_u64().unwrap_or(0);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = fragment["id"].as_str().filter(|s| !s.is_empty()) {
            call.id = id.to_owned();
        }
        let function = &fragment["function"];
        if let Some(name) = function["name"].as_str().filter(|s| !s.is_empty()) {
            // OpenAI sends the name once; some compatible servers repeat it in every
            // fragment, a few stream it in pieces.
            if call.name.is_empty() {
                call.name = name.to_owned();
            } else if call.name != name {
                call.name.push_str(name);
            }
        }
        if let Some(args) = function["arguments"].as_str() {
            call.arguments.push_str(args);
        }
    }

    fn stream_error(&self, v: &Value) -> LlmError {
        let error = &v["error"];
        let message = json_error_message(v).unwrap_or_else(|| error.to_string());
        let kind = error["type"]
            .as_str()
            .or_else(|| error["code"].as_str())
            .unwrap_or_default();
        let status = error["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(match kind {
                "rate_limit_exceeded" | "rate_limit_error" | "tokens" | "requests" => 429,
                "invalid_request_error" => 400,
                _ => 500,
            });
        let provider = self.provider.clone();
        match status {
            429 => LlmError::RateLimited {
                provider,
                retry_after: None,
                message,
            },
            400..=499 => LlmError::BadRequest {
                provider,
                status,
                message,
            },
            _ => LlmError::Server {
                provider,
                status,
                message,
            },
        }
    }
}

impl Decoder for ChunkDecoder {
    fn decode(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            // A server that skipped finish_reason still gets its calls delivered.
            let had_calls = !self.calls.is_empty();
            self.flush_calls(out)?;
            let stop_reason = self.stop_reason.take().unwrap_or(if had_calls {
                StopReason::ToolUse
            } else {
                StopReason::EndTurn
            });
            out.push(StreamEvent::Done {
                stop_reason,
                model: self.model.clone(),
            });
            return Ok(());
        }
        match self.decode_fast(data, out) {
            Some(done) => done,
            None => self.decode_general(data, out),
        }
    }
}

impl ChunkDecoder {
    /// Fast path: most chunks are text deltas; read just the fields we use, borrowing the
    /// strings, instead of building a `Value` of the whole chunk (a third of the CPU of a
    /// short streamed answer went there). `None`: a chunk this typed view does not fit (an
    /// error, a field of an unexpected type, not JSON), for [`Self::decode_general`], the
    /// reference behaviour.
    fn decode_fast(
        &mut self,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Option<Result<(), LlmError>> {
        let chunk = serde_json::from_str::<FastChunk<'_>>(data).ok()?;
        if chunk.error.is_some() {
            return None;
        }
        // We never ask for n > 1, so only choice 0 matters.
        let choice = chunk
            .choices
            .as_deref()
            .and_then(|cs| cs.iter().find(|c| c.index.unwrap_or(0) == 0));
        let delta = choice.and_then(|c| c.delta.as_ref());
        Some(self.apply(
            ChunkParts {
                model: chunk.model.as_deref(),
                content: delta.and_then(|d| d.content.as_deref()),
                tool_calls: delta.and_then(|d| d.tool_calls.as_deref()),
                finish_reason: choice.and_then(|c| c.finish_reason.as_deref()),
                usage: chunk.usage.as_ref(),
            },
            out,
        ))
    }

    /// Any chunk, read as a `Value`.
    fn decode_general(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        let v = parse_json(&self.provider, data)?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(self.stream_error(&v));
        }
        let choice = v["choices"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0));
        let delta = choice.map(|c| &c["delta"]);
        self.apply(
            ChunkParts {
                model: v["model"].as_str(),
                content: delta.and_then(|d| d["content"].as_str()),
                tool_calls: delta
                    .and_then(|d| d["tool_calls"].as_array())
                    .map(Vec::as_slice),
                finish_reason: choice.and_then(|c| c["finish_reason"].as_str()),
                usage: v.get("usage"),
            },
            out,
        )
    }
}

/// What one chunk says, however it was read.
struct ChunkParts<'a> {
    model: Option<&'a str>,
    content: Option<&'a str>,
    tool_calls: Option<&'a [Value]>,
    finish_reason: Option<&'a str>,
    usage: Option<&'a Value>,
}

/// The typed view of a chunk for the fast path. Unknown fields are skipped; a field of an
/// unexpected type fails the parse, and the chunk goes the general way.
#[derive(serde::Deserialize)]
struct FastChunk<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<FastChoice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct FastChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<FastDelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct FastDelta<'a> {
    #[serde(borrow, default)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

impl ChunkDecoder {
    /// Turns one chunk's parts into stream events (both decode paths end here).
    fn apply(&mut self, c: ChunkParts<'_>, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if let Some(model) = c.model.filter(|m| !m.is_empty()) {
            model.clone_into(&mut self.model);
        }
        if let Some(text) = c.content.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::TextDelta(text.to_owned()));
        }
        for f in c.tool_calls.unwrap_or_default() {
            self.tool_fragment(f);
        }
        if let Some(reason) = c.finish_reason {
            self.stop_reason = Some(match reason {
                "stop" => StopReason::EndTurn,
                "tool_calls" | "function_call" => StopReason::ToolUse,
                "length" => StopReason::MaxTokens,
                other => StopReason::Other(other.to_owned()),
            });
            self.flush_calls(out)?;
        }
        if let Some(usage) = c.usage.filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(Usage {
                input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zocalo_core::ToolSpec;

    fn decode_all(lines: &[&str]) -> Result<Vec<StreamEvent>, LlmError> {
        let mut d = ChunkDecoder::new("openai", "req-model");
        let mut out = Vec::new();
        for l in lines {
            d.decode("message", l, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn body_places_system_tools_and_calls() {
        let req = CompletionRequest {
            model: "gpt-x".into(),
            system: Some("be brief".into()),
            messages: vec![
                Message::user("time?"),
                Message {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "current_time".into(),
                        arguments: json!({"timezone": "Europe/Paris"}),
                    }],
                    tool_call_id: None,
                    is_error: false,
                },
                Message::tool_result("call_1", "10:00", false),
            ],
            tools: vec![ToolSpec {
                name: "current_time".into(),
                description: "now".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 64,
            temperature: None,
        };
        let b = request_body(&req, "gpt-x");
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(b["messages"][2]["content"], Value::Null);
        assert_eq!(
            b["messages"][2]["tool_calls"][0]["function"]["arguments"],
            json!("{\"timezone\":\"Europe/Paris\"}")
        );
        assert_eq!(
            b["messages"][3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "10:00"})
        );
        assert_eq!(b["tools"][0]["function"]["name"], "current_time");
        assert!(b.get("temperature").is_none());
        assert_eq!(b["stream_options"], json!({"include_usage": true}));

        let bare = CompletionRequest {
            tools: vec![],
            system: None,
            temperature: Some(0.5),
            ..req
        };
        let b = request_body(&bare, "m");
        assert!(b.get("tools").is_none());
        assert_eq!(b["messages"][0]["role"], "user");
        assert_eq!(b["temperature"], json!(0.5));
    }

    #[test]
    fn done_only_at_done_marker_after_usage() {
        let out = decode_all(&[
            r#"{"model":"m1","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            r#"{"model":"m1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            r#"{"model":"m1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        ])
        .unwrap();
        assert!(!out.iter().any(|e| matches!(e, StreamEvent::Done { .. })));
        let out = decode_all(&[
            r#"{"model":"m1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(
            out.last(),
            Some(&StreamEvent::Done {
                stop_reason: StopReason::MaxTokens,
                model: "m1".into()
            })
        );
    }

    #[test]
    fn bad_or_empty_arguments() {
        let e = decode_all(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap_err();
        assert!(matches!(e, LlmError::Protocol { .. }), "{e:?}");
        let out = decode_all(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap();
        assert_eq!(
            out[0],
            StreamEvent::ToolCall(ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: json!({})
            })
        );
    }

    #[test]
    fn error_objects_in_the_stream() {
        let e = decode_all(&[
            r#"{"error":{"message":"Rate limit reached","type":"rate_limit_exceeded"}}"#,
        ])
        .unwrap_err();
        assert!(matches!(e, LlmError::RateLimited { .. }), "{e:?}");
        let e = decode_all(&[r#"{"error":{"message":"upstream died","code":502}}"#]).unwrap_err();
        assert!(matches!(e, LlmError::Server { status: 502, .. }), "{e:?}");
        assert!(e.to_string().contains("upstream died"));
        let e = decode_all(&["not json"]).unwrap_err();
        assert!(matches!(e, LlmError::Protocol { .. }), "{e:?}");
    }

    /// Decodes `chunks` twice: as `decode` does (fast path first) and through the general
    /// path only; returns both outcomes and how many chunks the fast path took.
    fn both_ways(chunks: &[String]) -> (Outcome, Outcome, usize) {
        let mut fast = ChunkDecoder::new("openai", "req-model");
        let mut general = ChunkDecoder::new("openai", "req-model");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut ra, mut rb) = (Ok(()), Ok(()));
        let mut took_fast = 0;
        for c in chunks {
            if ra.is_ok() {
                if c.trim() != "[DONE]"
                    && serde_json::from_str::<FastChunk<'_>>(c).is_ok_and(|f| f.error.is_none())
                {
                    took_fast += 1;
                }
                ra = fast.decode("message", c, &mut a);
            }
            if rb.is_ok() {
                rb = if c.trim() == "[DONE]" {
                    general.decode("message", c, &mut b)
                } else {
                    general.decode_general(c, &mut b)
                };
            }
        }
        (
            (a, ra.map_err(|e| e.to_string())),
            (b, rb.map_err(|e| e.to_string())),
            took_fast,
        )
    }

    type Outcome = (Vec<StreamEvent>, Result<(), String>);

    fn fixture_chunks(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn fast_path_reads_recorded_streams_like_the_general_path() {
        for text in [
            include_str!("../../zocalo-testkit/fixtures/openai/text.sse"),
            include_str!("../../zocalo-testkit/fixtures/openai/tool_call.sse"),
            include_str!("../../zocalo-testkit/fixtures/openai/parallel_tool_calls.sse"),
        ] {
            let chunks = fixture_chunks(text);
            assert!(chunks.len() > 2);
            let (fast, general, took_fast) = both_ways(&chunks);
            assert_eq!(fast, general);
            assert!(fast.1.is_ok(), "{fast:?}");
            // Every recorded chunk but [DONE] fits the fast path.
            assert_eq!(took_fast, chunks.len() - 1);
        }
    }

    mod fast_path_props {
        use super::*;
        use proptest::prelude::*;

        /// Values of the types servers send, and of types they should not.
        fn odd() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "[a-z \\\\\"é]{0,6}".prop_map(Value::from),
                Just(json!([])),
                Just(json!({})),
            ]
        }

        fn string_or_odd() -> impl Strategy<Value = Value> {
            prop_oneof![3 => "[a-z_ \\\\\"é]{0,8}".prop_map(Value::from), 1 => odd()]
        }

        fn fragment() -> impl Strategy<Value = Value> {
            (
                prop_oneof![Just(json!(0)), Just(json!(1)), odd()],
                string_or_odd(),
                string_or_odd(),
                prop_oneof![
                    Just(json!("")),
                    Just(json!("{\"a\":")),
                    Just(json!("1}")),
                    odd()
                ],
            )
                .prop_map(|(index, id, name, args)| {
                    json!({"index": index, "id": id, "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
        }

        fn chunk() -> impl Strategy<Value = Value> {
            let delta = (
                proptest::option::of(string_or_odd()),
                proptest::option::of(prop_oneof![
                    proptest::collection::vec(fragment(), 0..3).prop_map(Value::from),
                    odd()
                ]),
            )
                .prop_map(|(content, calls)| {
                    let mut d = json!({"role": "assistant"});
                    if let Some(c) = content {
                        d["content"] = c;
                    }
                    if let Some(t) = calls {
                        d["tool_calls"] = t;
                    }
                    d
                });
            let choice = (
                prop_oneof![Just(json!(0)), Just(json!(1)), Just(json!(-1)), odd()],
                prop_oneof![3 => delta, 1 => odd()],
                prop_oneof![Just(json!("stop")), Just(json!("tool_calls")), Just(json!("length")), Just(Value::Null), odd()],
            )
                .prop_map(|(index, delta, finish)| {
                    json!({"index": index, "delta": delta, "finish_reason": finish, "logprobs": null})
                });
            (
                proptest::option::of(string_or_odd()),
                proptest::option::of(prop_oneof![
                    3 => proptest::collection::vec(choice, 0..3).prop_map(Value::from),
                    1 => odd()
                ]),
                proptest::option::of(prop_oneof![
                    Just(json!({"prompt_tokens": 3, "completion_tokens": 4})),
                    odd()
                ]),
                proptest::option::of(prop_oneof![
                    3 => Just(Value::Null),
                    1 => Just(json!({"message": "boom", "type": "server_error"})),
                    1 => odd()
                ]),
            )
                .prop_map(|(model, choices, usage, error)| {
                    let mut c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk"});
                    for (k, v) in [
                        ("model", model),
                        ("choices", choices),
                        ("usage", usage),
                        ("error", error),
                    ] {
                        if let Some(v) = v {
                            c[k] = v;
                        }
                    }
                    c
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever a server streams, the fast path changes nothing but speed.
            #[test]
            fn fast_path_agrees_with_the_general_path(
                chunks in proptest::collection::vec(chunk(), 1..6),
                done in any::<bool>(),
            ) {
                let mut texts: Vec<String> = chunks.iter().map(Value::to_string).collect();
                if done {
                    texts.push("[DONE]".into());
                }
                let (fast, general, _) = both_ways(&texts);
                prop_assert_eq!(fast, general);
            }
        }
    }
}
