//! The OpenAI-compatible surface under `/v1`: chat completions (whole or streamed as
//! `chat.completion.chunk` events ending in `data: [DONE]`), models and embeddings.
//!
//! Model `zocalo` is the ask loop: the last user message is the question, memory and tools
//! join in, and the turn is stored (continue a conversation with the extra body field
//! `conversation`; the id comes back in the `x-zocalo-conversation` header and, streamed, in
//! the first chunk's `zocalo.conversation_id`). `PROVIDER/MODEL` goes straight to that
//! provider with the request's own messages and tools, nothing stored.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use zocalo_agent::{AgentError, AskEvent, AskOutcome, AskRequest};
use zocalo_core::{
    CompletionRequest, ConversationId, Message, StopReason, StreamEvent, ToolCall, ToolSpec, Usage,
};
use zocalo_llm::LlmError;

use crate::error::{ApiError, ApiResult, Json};
use crate::AppState;

/// The model name of the ask loop.
pub const ZOCALO_MODEL: &str = "zocalo";
/// Response header carrying the conversation a `zocalo` answer was stored in.
pub const CONVERSATION_HEADER: &str = "x-zocalo-conversation";
/// Output tokens asked of a pass-through provider when the request sets no limit.
const DEFAULT_MAX_TOKENS: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// Request shapes (lenient: unknown fields are ignored, as OpenAI clients send many).

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `zocalo` (the ask loop) or `PROVIDER/MODEL`.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Only 1 is supported.
    #[serde(default)]
    pub n: Option<u32>,
    /// Function tools for a pass-through model (the ask loop brings its own).
    #[serde(default)]
    pub tools: Option<Vec<ToolDef>>,
    /// zocalo extension: continue this conversation (model `zocalo` only).
    #[serde(default)]
    pub conversation: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// A string, or an array of content parts of which the `text` ones are used.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolCallIn {
    pub id: String,
    pub function: FunctionCallIn,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionCallIn {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolDef {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Option<Value>,
}

impl Content {
    fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::bad_request(format!(
                            "content part type {:?} is not supported: send text",
                            p.kind
                        ))
                        .param("messages")
                        .code("unsupported_content"));
                    }
                    out.push_str(p.text.as_deref().unwrap_or_default());
                }
                Ok(out)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response shapes (documented; built with json! to keep OpenAI's exact field set and nulls).

/// `chat.completion` (see OpenAI's API reference).
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    #[schema(value_type = Object)]
    pub message: Value,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn finish_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::Other(_) => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })
            })
            .collect(),
    )
}

fn completion_json(
    id: &str,
    created: i64,
    model: &str,
    text: &str,
    calls: &[ToolCall],
    stop: &StopReason,
    usage: Usage,
) -> Value {
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = tool_calls_json(calls);
        if text.is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(stop),
        }],
        "usage": usage_json(usage),
        "system_fingerprint": null,
    })
}

/// One `chat.completion.chunk`.
struct Chunker {
    id: String,
    created: i64,
    model: String,
}

impl Chunker {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish,
            }],
        })
    }

    fn usage(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage_json(usage),
        })
    }
}

fn data(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

fn done() -> Result<Event, Infallible> {
    Ok(Event::default().data("[DONE]"))
}

/// An error after the stream started: OpenAI sends it as a `data:` event with an `error`.
fn stream_error(e: ApiError) -> Result<Event, Infallible> {
    data(&serde_json::to_value(e.body()).unwrap_or(Value::Null))
}

fn sse(stream: BoxStream<'static, Result<Event, Infallible>>) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Errors of the ask loop and providers, as HTTP.

pub(crate) fn agent_error(e: AgentError) -> ApiError {
    match e {
        AgentError::EmptyMessage => ApiError::bad_request(e.to_string()).code("empty_message"),
        AgentError::UnknownConversation(_) => {
            ApiError::not_found(e.to_string()).code("conversation_not_found")
        }
        AgentError::ContextTooLarge { .. } => {
            ApiError::bad_request(e.to_string()).code("context_length_exceeded")
        }
        AgentError::Llm(l) => llm_error(l),
        AgentError::Store(s) if s.is_usage() => ApiError::bad_request(s.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

pub(crate) fn llm_error(e: LlmError) -> ApiError {
    match e {
        LlmError::UnknownProvider { .. } => {
            ApiError::not_found(e.to_string()).code("model_not_found")
        }
        LlmError::MissingKey { .. } => {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                .code("unavailable")
        }
        other => ApiError::upstream(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// POST /v1/chat/completions

/// Create a chat completion (OpenAI-compatible; `stream: true` answers with SSE chunks).
#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "A chat.completion, or with stream=true an SSE stream of chat.completion.chunk events ending with `data: [DONE]`", body = ChatCompletion),
        (status = 400, description = "Bad request", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown model or conversation", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn chat_completions(
    State(state): State<AppState>,
    Json(req): Json<ChatCompletionRequest>,
) -> ApiResult<Response> {
    check_request(&req)?;
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if req.model == ZOCALO_MODEL {
        ask_loop(state, req, stream, include_usage).await
    } else if let Some((provider, model)) = req.model.split_once('/') {
        if provider.is_empty() || model.is_empty() {
            return Err(bad_model(&req.model));
        }
        let (provider, model) = (provider.to_owned(), model.to_owned());
        pass_through(state, req, provider, model, stream, include_usage).await
    } else {
        Err(bad_model(&req.model))
    }
}

/// The checks of a chat request that need no backend (also what `fuzz/` drives, with
/// [`to_messages`], on arbitrary bodies).
pub fn check_request(req: &ChatCompletionRequest) -> ApiResult<()> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n=1 is supported").param("n"));
    }
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty").param("messages"));
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(
                ApiError::bad_request("temperature must be between 0 and 2").param("temperature")
            );
        }
    }
    Ok(())
}

fn bad_model(model: &str) -> ApiError {
    ApiError::not_found(format!(
        "model {model:?} does not exist: use \"zocalo\" (the ask loop) or \"PROVIDER/MODEL\" \
         (GET /v1/models lists them)"
    ))
    .code("model_not_found")
    .param("model")
}

/// Starts the ask loop in its own task (so a client that goes away does not leave a half
/// turn) and hands back its text pieces and outcome.
/// Starts an ask; its pieces come through the receiver. `attended`: a tool whose decision is
/// `ask` waits for `POST /api/approvals/{id}` (an `approval` piece announces it); otherwise
/// (the OpenAI-compatible `/v1`, which has no such event) it is denied.
pub(crate) async fn start_ask(
    state: &AppState,
    conversation: Option<ConversationId>,
    message: String,
    attended: bool,
) -> ApiResult<mpsc::UnboundedReceiver<AskPiece>> {
    let asker = state.backend().asker().await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let approvals = if attended {
        zocalo_agent::Approvals::with_approver(Arc::new(crate::api::approvals::ServerApprover {
            pending: state.approvals().clone(),
            events: tx.clone(),
        }))
    } else {
        zocalo_agent::Approvals::unattended()
    };
    tokio::spawn(async move {
        let text_tx = tx.clone();
        let mut on_event = move |e: AskEvent| {
            let piece = match e {
                AskEvent::Text(t) => AskPiece::Text(t),
                AskEvent::ToolCall(c) => AskPiece::ToolCall(c),
                AskEvent::ToolResult { name, is_error, .. } => {
                    AskPiece::ToolResult { name, is_error }
                }
            };
            let _ = text_tx.send(piece);
        };
        let options = zocalo_agent::AskOptions {
            approvals,
            token_limit: zocalo_agent::TokenLimit::ask(asker.budgets()),
        };
        let outcome = asker
            .ask_with(
                AskRequest {
                    conversation,
                    message,
                    model: None,
                },
                &options,
                &mut on_event,
            )
            .await;
        let _ = tx.send(AskPiece::Done(Box::new(outcome)));
    });
    Ok(rx)
}

/// What a running ask reports.
pub(crate) enum AskPiece {
    Text(String),
    ToolCall(ToolCall),
    ToolResult {
        name: String,
        is_error: bool,
    },
    /// A call waits for a decision (`POST /api/approvals/{id}`).
    Approval(crate::api::approvals::PendingApproval),
    Done(Box<Result<AskOutcome, AgentError>>),
}

async fn ask_loop(
    state: AppState,
    req: ChatCompletionRequest,
    stream: bool,
    include_usage: bool,
) -> ApiResult<Response> {
    let Some(last) = req.messages.last() else {
        return Err(ApiError::bad_request("messages must not be empty").param("messages"));
    };
    if last.role != "user" {
        return Err(ApiError::bad_request(
            "model zocalo answers the last message, which must have role \"user\"",
        )
        .param("messages"));
    }
    let message = last
        .content
        .as_ref()
        .map(Content::text)
        .transpose()?
        .unwrap_or_default();
    if message.trim().is_empty() {
        return Err(ApiError::bad_request("the last user message is empty").param("messages"));
    }
    let conversation = req
        .conversation
        .as_deref()
        .map(|c| {
            c.parse::<ConversationId>().map_err(|_| {
                ApiError::bad_request(format!("invalid conversation id {c:?}"))
                    .param("conversation")
            })
        })
        .transpose()?;
    // Unknown conversations fail before any byte is streamed.
    if let Some(id) = &conversation {
        let found = state
            .store()
            .get_conversation(id)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if found.is_none() {
            return Err(ApiError::not_found(format!("no conversation {id}"))
                .code("conversation_not_found")
                .param("conversation"));
        }
    }
    let mut rx = start_ask(&state, conversation, message, false).await?;
    let id = completion_id();
    let created = now_secs();
    if !stream {
        let mut outcome = None;
        while let Some(p) = rx.recv().await {
            if let AskPiece::Done(o) = p {
                outcome = Some(*o);
            }
        }
        let o = match outcome {
            Some(o) => o.map_err(agent_error)?,
            None => return Err(ApiError::internal("the ask ended without an outcome")),
        };
        let body = completion_json(
            &id,
            created,
            ZOCALO_MODEL,
            &o.text,
            &[],
            &o.stop_reason,
            o.usage,
        );
        return Ok(with_conversation(
            axum::Json(body).into_response(),
            &o.conversation_id,
        ));
    }
    let chunker = Chunker {
        id,
        created,
        model: ZOCALO_MODEL.to_owned(),
    };
    let events = async_stream(move |tx| async move {
        let mut first = true;
        while let Some(p) = rx.recv().await {
            match p {
                AskPiece::Text(t) if !t.is_empty() => {
                    let delta = if first {
                        first = false;
                        json!({"role": "assistant", "content": t})
                    } else {
                        json!({"content": t})
                    };
                    if tx.send(data(&chunker.chunk(delta, None))).await.is_err() {
                        // The client left; the ask goes on and is stored.
                        return;
                    }
                }
                AskPiece::Done(o) => match *o {
                    Ok(o) => {
                        if first {
                            let _ = tx
                                .send(data(
                                    &chunker
                                        .chunk(json!({"role": "assistant", "content": ""}), None),
                                ))
                                .await;
                        }
                        let mut last =
                            chunker.chunk(json!({}), Some(finish_reason(&o.stop_reason)));
                        last["zocalo"] = json!({"conversation_id": o.conversation_id});
                        let _ = tx.send(data(&last)).await;
                        if include_usage {
                            let _ = tx.send(data(&chunker.usage(o.usage))).await;
                        }
                        let _ = tx.send(done()).await;
                    }
                    Err(e) => {
                        let _ = tx.send(stream_error(agent_error(e))).await;
                    }
                },
                _ => {}
            }
        }
    });
    Ok(sse(events))
}

fn with_conversation(mut r: Response, id: &ConversationId) -> Response {
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        r.headers_mut()
            .insert(HeaderName::from_static(CONVERSATION_HEADER), v);
    }
    r
}

/// A stream fed by a task through a small channel: the producer waits when the client reads
/// slowly, and learns when it has gone (send fails).
pub(crate) fn async_stream<F, Fut>(f: F) -> BoxStream<'static, Result<Event, Infallible>>
where
    F: FnOnce(mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// The request's messages as the provider's: the system text (system and developer messages
/// joined) and the turns.
pub fn to_messages(req: &ChatCompletionRequest) -> ApiResult<(Option<String>, Vec<Message>)> {
    let mut system = Vec::new();
    let mut out = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let text = m
            .content
            .as_ref()
            .map(Content::text)
            .transpose()?
            .unwrap_or_default();
        let bad =
            |why: &str| ApiError::bad_request(format!("messages[{i}]: {why}")).param("messages");
        match m.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => out.push(Message::user(text)),
            "assistant" => {
                let mut msg = Message::assistant(text);
                for c in m.tool_calls.iter().flatten() {
                    let arguments = serde_json::from_str(&c.function.arguments)
                        .map_err(|_| bad("tool call arguments are not JSON"))?;
                    msg.tool_calls.push(ToolCall {
                        id: c.id.clone(),
                        name: c.function.name.clone(),
                        arguments,
                    });
                }
                out.push(msg);
            }
            "tool" => {
                let Some(id) = &m.tool_call_id else {
                    return Err(bad("a tool message needs tool_call_id"));
                };
                out.push(Message::tool_result(id.clone(), text, false));
            }
            other => return Err(bad(&format!("unknown role {other:?}"))),
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad_request("messages hold no user message").param("messages"));
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, out))
}

async fn pass_through(
    state: AppState,
    req: ChatCompletionRequest,
    provider_name: String,
    model: String,
    stream: bool,
    include_usage: bool,
) -> ApiResult<Response> {
    let (system, messages) = to_messages(&req)?;
    let mut tools = Vec::new();
    for t in req.tools.iter().flatten() {
        if t.kind != "function" {
            return Err(
                ApiError::bad_request(format!("tool type {:?} is not supported", t.kind))
                    .param("tools"),
            );
        }
        tools.push(ToolSpec {
            name: t.function.name.clone(),
            description: t.function.description.clone().unwrap_or_default(),
            parameters: t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    let provider = state.backend().provider(&provider_name).await?;
    let request = CompletionRequest {
        model: model.clone(),
        system,
        messages,
        tools,
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)
            .max(1),
        temperature: req.temperature,
    };
    let shown_model = req.model.clone();
    let id = completion_id();
    let created = now_secs();
    if !stream {
        let r = provider.complete(request).await.map_err(llm_error)?;
        let body = completion_json(
            &id,
            created,
            &shown_model,
            &r.message.content,
            &r.message.tool_calls,
            &r.stop_reason,
            r.usage,
        );
        return Ok(axum::Json(body).into_response());
    }
    // Errors before the first byte are plain HTTP errors.
    let mut upstream = provider.stream(request).await.map_err(llm_error)?;
    let chunker = Chunker {
        id,
        created,
        model: shown_model,
    };
    let events = async_stream(move |tx| async move {
        let _ = tx
            .send(data(
                &chunker.chunk(json!({"role": "assistant", "content": ""}), None),
            ))
            .await;
        let mut usage = Usage::default();
        let mut calls = 0usize;
        while let Some(ev) = upstream.next().await {
            let out = match ev {
                Ok(StreamEvent::TextDelta(t)) => data(&chunker.chunk(json!({"content": t}), None)),
                Ok(StreamEvent::ToolCall(c)) => {
                    let mut call = tool_calls_json(std::slice::from_ref(&c));
                    call[0]["index"] = json!(calls);
                    calls += 1;
                    data(&chunker.chunk(json!({"tool_calls": call}), None))
                }
                Ok(StreamEvent::Usage(u)) => {
                    if u.input_tokens > 0 {
                        usage.input_tokens = u.input_tokens;
                    }
                    if u.output_tokens > 0 {
                        usage.output_tokens = u.output_tokens;
                    }
                    continue;
                }
                Ok(StreamEvent::Done { stop_reason, .. }) => {
                    let reason = if calls > 0 {
                        "tool_calls"
                    } else {
                        finish_reason(&stop_reason)
                    };
                    let _ = tx.send(data(&chunker.chunk(json!({}), Some(reason)))).await;
                    if include_usage {
                        let _ = tx.send(data(&chunker.usage(usage))).await;
                    }
                    let _ = tx.send(done()).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(stream_error(llm_error(e))).await;
                    return;
                }
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(events))
}

// ---------------------------------------------------------------------------------------------
// GET /v1/models

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelEntry {
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub created: i64,
    pub owned_by: String,
}

/// Models: `zocalo` (the ask loop), the embedder, and `PROVIDER/MODEL` for configured providers.
#[utoipa::path(
    get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, body = ModelList),
        (status = 401, body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    let entry = |id: String, owner: &str| ModelEntry {
        id,
        object: "model".into(),
        created: 0,
        owned_by: owner.into(),
    };
    let mut data = vec![entry(ZOCALO_MODEL.into(), "zocalo")];
    if let Some(e) = state.backend().embedder() {
        data.push(entry(e.model_id().to_owned(), "zocalo"));
    }
    for m in state.backend().models() {
        let owner = m.split('/').next().unwrap_or("zocalo").to_owned();
        data.push(entry(m, &owner));
    }
    Json(ModelList {
        object: "list".into(),
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// POST /v1/embeddings

/// Most inputs in one embeddings request.
const MAX_EMBED_INPUTS: usize = 256;
/// Longest input accepted, in bytes (the model sees its first 256 tokens anyway).
const MAX_EMBED_INPUT_BYTES: usize = 32 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// `zocalo` or the embedder's id (see /v1/models).
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    pub encoding_format: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    pub object: String,
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    pub model: String,
    #[schema(value_type = Object)]
    pub usage: Value,
}

/// Embed text with the local MiniLM (384 dimensions, unit length).
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingList),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 503, description = "The embedder's weights are not fetched", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn embeddings(
    State(state): State<AppState>,
    Json(req): Json<EmbeddingsRequest>,
) -> ApiResult<Json<EmbeddingList>> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format {other:?}: use \"float\" or \"base64\""
            ))
            .param("encoding_format"))
        }
    };
    let inputs = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input must hold 1 to {MAX_EMBED_INPUTS} strings"
        ))
        .param("input"));
    }
    if inputs
        .iter()
        .any(|s| s.is_empty() || s.len() > MAX_EMBED_INPUT_BYTES)
    {
        return Err(ApiError::bad_request(format!(
            "each input must be a non-empty string of at most {MAX_EMBED_INPUT_BYTES} bytes"
        ))
        .param("input"));
    }
    let Some(embedder) = state.backend().embedder() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the local embedder is not available: run `zocalo models fetch`",
        )
        .code("unavailable"));
    };
    if req.model != ZOCALO_MODEL && req.model != embedder.model_id() {
        return Err(ApiError::not_found(format!(
            "embedding model {:?} does not exist: use \"zocalo\" or {:?}",
            req.model,
            embedder.model_id()
        ))
        .code("model_not_found")
        .param("model"));
    }
    let model_id = embedder.model_id().to_owned();
    let tokens: u64 = inputs
        .iter()
        .map(|s| s.split_whitespace().count() as u64)
        .sum();
    let emb = Arc::clone(&embedder);
    let vectors = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        emb.embed(&refs)
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedder task failed: {e}")))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list".into(),
        data,
        model: model_id,
        usage: json!({"prompt_tokens": tokens, "total_tokens": tokens}),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_join_text_and_refuse_images() {
        let c: Content = serde_json::from_value(json!([
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}
        ]))
        .unwrap();
        assert_eq!(c.text().unwrap(), "ab");
        let img: Content =
            serde_json::from_value(json!([{"type": "image_url", "image_url": {"url": "x"}}]))
                .unwrap();
        assert_eq!(img.text().unwrap_err().status, 400);
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason(&StopReason::EndTurn), "stop");
        assert_eq!(finish_reason(&StopReason::MaxTokens), "length");
        assert_eq!(finish_reason(&StopReason::ToolUse), "tool_calls");
    }
}
