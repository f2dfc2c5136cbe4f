//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`, streamed).
//!
//! Always streams with `stream_options.include_usage`, so the last chunk before
//! `data: [DONE]` carries token usage (`choices: []`). Tool calls arrive as fragments keyed
//! by `index`: the first has the id and name, the arguments string follows in pieces; they
//! are emitted whole when the choice's `finish_reason` arrives. `[DONE]` is the terminal
//! event: a body that ends without it was cut.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
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
        if let Some(key) = &self.endpoint.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    LlmError::Other(format!(
                        "the API key for {} contains characters that cannot go in an HTTP header",
                        self.endpoint.name
                    ))
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
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
        let v = parse_json(&self.provider, data)?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(self.stream_error(&v));
        }
        if let Some(model) = v["model"].as_str().filter(|m| !m.is_empty()) {
            model.clone_into(&mut self.model);
        }
        // We never ask for n > 1, so only choice 0 matters.
        let choice = v["choices"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0));
        if let Some(choice) = choice {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
            if let Some(fragments) = delta["tool_calls"].as_array() {
                for f in fragments {
                    self.tool_fragment(f);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.stop_reason = Some(match reason {
                    "stop" => StopReason::EndTurn,
                    "tool_calls" | "function_call" => StopReason::ToolUse,
                    "length" => StopReason::MaxTokens,
                    other => StopReason::Other(other.to_owned()),
                });
                self.flush_calls(out)?;
            }
        }
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
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
}
