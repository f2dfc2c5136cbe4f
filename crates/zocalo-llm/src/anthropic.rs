//! Anthropic Messages (`POST {base}/v1/messages`, streamed).
//!
//! The system prompt is top level; tool results travel as `tool_result` blocks inside a
//! *user* message (consecutive results merged into one). The stream is `message_start`,
//! then per content block `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta`) / `content_block_stop`, then `message_delta` (stop reason, output
//! tokens) and the terminal `message_stop`; `ping` may come anywhere, and an `error` event
//! (e.g. `overloaded_error`) can replace the rest.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use zocalo_core::{CompletionRequest, Message, Role, StopReason, StreamEvent, ToolCall, Usage};

use crate::http;
use crate::registry::Endpoint;
use crate::sse::{self, parse_arguments, parse_json, Decoder};
use crate::{EventStream, LlmError, Provider};

/// The API version this module speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    endpoint: Endpoint,
    client: reqwest::Client,
}

impl AnthropicProvider {
    pub fn new(endpoint: Endpoint) -> Self {
        let client = http::client(&endpoint);
        Self { endpoint, client }
    }

    /// The endpoint this provider calls.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The JSON body sent for `request` (always streaming).
    pub fn request_body(&self, request: &CompletionRequest) -> Value {
        request_body(request, self.endpoint.model_for(request))
    }
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }
    fn default_model(&self) -> &str {
        &self.endpoint.default_model
    }
    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        let body = self.request_body(&request);
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let url = format!("{}/v1/messages", self.endpoint.base_url);
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        if let Some(v) = http::key_header(&self.endpoint, "").map_err(LlmError::Other)? {
            headers.insert(HeaderName::from_static("x-api-key"), v);
        }
        let response =
            http::post_for_stream(&self.client, &self.endpoint, &url, headers, &body).await?;
        let idle = self.endpoint.idle_timeout;
        Ok(sse::decode_stream(
            sse::body_chunks(response, idle),
            EventDecoder::new(&self.endpoint.name, &self.endpoint.key_env, &model),
            &self.endpoint.name,
            idle,
        ))
    }
}

fn request_body(request: &CompletionRequest, model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("system".into(), json!(system));
    }
    body.insert(
        "messages".into(),
        Value::Array(messages_json(&request.messages)),
    );
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
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
    Value::Object(body)
}

fn messages_json(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len());
    // Index in `out` of the user message collecting the current run of tool results.
    let mut results_at: Option<usize> = None;
    for m in messages {
        match m.role {
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                    "is_error": m.is_error,
                });
                match results_at.and_then(|i| out.get_mut(i)) {
                    Some(msg) => {
                        if let Some(blocks) = msg["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    None => {
                        results_at = Some(out.len());
                        out.push(json!({"role": "user", "content": [block]}));
                    }
                }
            }
            Role::User => {
                results_at = None;
                out.push(json!({"role": "user", "content": m.content}));
            }
            Role::Assistant => {
                results_at = None;
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": c.arguments,
                    }));
                }
                let content = if blocks.is_empty() {
                    json!(m.content)
                } else {
                    Value::Array(blocks)
                };
                out.push(json!({"role": "assistant", "content": content}));
            }
        }
    }
    out
}

enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        /// The `input` of `content_block_start`, used when no `input_json_delta` follows.
        initial: Value,
        json: String,
    },
    /// Thinking and other block kinds we do not surface.
    Other,
}

struct EventDecoder {
    provider: String,
    key_env: String,
    model: String,
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<StopReason>,
}

impl EventDecoder {
    fn new(provider: &str, key_env: &str, requested_model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            key_env: key_env.to_owned(),
            model: requested_model.to_owned(),
            blocks: BTreeMap::new(),
            stop_reason: None,
        }
    }

    fn protocol(&self, message: String) -> LlmError {
        LlmError::Protocol {
            provider: self.provider.clone(),
            message,
        }
    }

    fn stream_error(&self, v: &Value) -> LlmError {
        let error = &v["error"];
        let kind = error["type"].as_str().unwrap_or_default();
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string());
        let provider = self.provider.clone();
        match kind {
            "rate_limit_error" => LlmError::RateLimited {
                provider,
                retry_after: None,
                message,
            },
            "invalid_request_error" | "not_found_error" | "request_too_large" => {
                LlmError::BadRequest {
                    provider,
                    status: 400,
                    message,
                }
            }
            "authentication_error" | "permission_error" => LlmError::Auth {
                provider,
                status: 401,
                message,
                key_env: self.key_env.clone(),
            },
            "overloaded_error" => LlmError::Server {
                provider,
                status: 529,
                message,
            },
            _ => LlmError::Server {
                provider,
                status: 500,
                message,
            },
        }
    }
}

fn usage_of(u: &Value) -> Usage {
    Usage {
        input_tokens: u["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: u["output_tokens"].as_u64().unwrap_or(0),
    }
}

impl Decoder for EventDecoder {
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), LlmError> {
        let v = parse_json(&self.provider, data)?;
        // The data's `type` is authoritative; the SSE event name repeats it.
        let kind = v["type"].as_str().unwrap_or(event).to_owned();
        let index = v["index"].as_u64().unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                let message = &v["message"];
                if let Some(model) = message["model"].as_str().filter(|m| !m.is_empty()) {
                    model.clone_into(&mut self.model);
                }
                if message["usage"].is_object() {
                    out.push(StreamEvent::Usage(usage_of(&message["usage"])));
                }
            }
            "content_block_start" => {
                let cb = &v["content_block"];
                let block = match cb["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = cb["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(t.to_owned()));
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::ToolUse {
                        id: cb["id"].as_str().unwrap_or_default().to_owned(),
                        name: cb["name"].as_str().unwrap_or_default().to_owned(),
                        initial: cb.get("input").cloned().unwrap_or(Value::Null),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let delta = &v["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(t.to_owned()));
                        }
                    }
                    Some("input_json_delta") => match self.blocks.get_mut(&index) {
                        Some(Block::ToolUse { json, .. }) => {
                            json.push_str(delta["partial_json"].as_str().unwrap_or_default());
                        }
                        _ => {
                            return Err(self.protocol(format!(
                                "input_json_delta for block {index}, which is not a tool_use"
                            )))
                        }
                    },
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::ToolUse {
                    id,
                    name,
                    initial,
                    json,
                }) = self.blocks.remove(&index)
                {
                    let arguments = if json.trim().is_empty() && initial.is_object() {
                        initial
                    } else {
                        parse_arguments(&self.provider, &name, &json)?
                    };
                    out.push(StreamEvent::ToolCall(ToolCall {
                        id,
                        name,
                        arguments,
                    }));
                }
            }
            "message_delta" => {
                if let Some(reason) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(match reason {
                        "end_turn" | "stop_sequence" => StopReason::EndTurn,
                        "tool_use" => StopReason::ToolUse,
                        "max_tokens" => StopReason::MaxTokens,
                        other => StopReason::Other(other.to_owned()),
                    });
                }
                if v["usage"].is_object() {
                    out.push(StreamEvent::Usage(usage_of(&v["usage"])));
                }
            }
            "message_stop" => {
                if !self.blocks.is_empty() {
                    return Err(self.protocol(
                        "message_stop arrived while a content block was still open".into(),
                    ));
                }
                out.push(StreamEvent::Done {
                    stop_reason: self.stop_reason.take().unwrap_or(StopReason::EndTurn),
                    model: self.model.clone(),
                });
            }
            "error" => return Err(self.stream_error(&v)),
            // `ping`, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zocalo_core::ToolSpec;

    fn decode_all(events: &[(&str, &str)]) -> Result<Vec<StreamEvent>, LlmError> {
        let mut d = EventDecoder::new("anthropic", "ANTHROPIC_API_KEY", "req-model");
        let mut out = Vec::new();
        for (e, data) in events {
            d.decode(e, data, &mut out)?;
        }
        Ok(out)
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "current_time".into(),
            arguments: json!({"timezone": "UTC"}),
        }
    }

    #[test]
    fn body_shape() {
        let req = CompletionRequest {
            model: "claude-x".into(),
            system: Some("be brief".into()),
            messages: vec![
                Message::user("time?"),
                Message {
                    role: Role::Assistant,
                    content: "Checking.".into(),
                    tool_calls: vec![call("toolu_1"), call("toolu_2")],
                    tool_call_id: None,
                    is_error: false,
                },
                Message::tool_result("toolu_1", "10:00", false),
                Message::tool_result("toolu_2", "no such zone", true),
                Message::user("thanks"),
            ],
            tools: vec![ToolSpec {
                name: "current_time".into(),
                description: "now".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            temperature: Some(0.0),
        };
        let b = request_body(&req, "claude-x");
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["max_tokens"], 100);
        assert_eq!(b["stream"], true);
        assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert_eq!(msgs[0], json!({"role": "user", "content": "time?"}));
        assert_eq!(
            msgs[1]["content"][0],
            json!({"type": "text", "text": "Checking."})
        );
        assert_eq!(
            msgs[1]["content"][2],
            json!({"type": "tool_use", "id": "toolu_2", "name": "current_time", "input": {"timezone": "UTC"}})
        );
        assert_eq!(
            msgs[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "10:00", "is_error": false},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such zone", "is_error": true},
            ]})
        );
        assert_eq!(msgs[3], json!({"role": "user", "content": "thanks"}));
    }

    #[test]
    fn error_events() {
        let e = decode_all(&[(
            "error",
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        )])
        .unwrap_err();
        assert!(matches!(e, LlmError::Server { status: 529, .. }), "{e:?}");
        assert!(e.is_retryable() && e.to_string().contains("Overloaded"));
        let e = decode_all(&[(
            "error",
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#,
        )])
        .unwrap_err();
        assert!(matches!(e, LlmError::RateLimited { .. }), "{e:?}");
    }

    #[test]
    fn tool_use_without_deltas_uses_start_input_and_bad_json_fails() {
        let out = decode_all(&[
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        ])
        .unwrap();
        assert_eq!(
            out,
            vec![StreamEvent::ToolCall(ToolCall {
                id: "t".into(),
                name: "f".into(),
                arguments: json!({})
            })]
        );
        let e = decode_all(&[
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        ])
        .unwrap_err();
        assert!(matches!(e, LlmError::Protocol { .. }), "{e:?}");
    }
}
