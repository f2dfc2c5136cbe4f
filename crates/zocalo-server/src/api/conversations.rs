//! `/api/conversations`: list, read, and ask (the answer streamed as SSE).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use zocalo_core::ConversationId;

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::openai::{agent_error, async_stream, start_ask, AskPiece};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/ask", post(ask_new))
        .route("/conversations/{id}", get(show).delete(remove))
        .route("/conversations/{id}/ask", post(ask_existing))
}

#[derive(Serialize, ToSchema)]
pub struct ConversationSummary {
    pub id: String,
    pub title: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub message_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationMessage {
    pub id: String,
    pub seq: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<serde_json::Value>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetail {
    pub id: String,
    pub title: Option<String>,
    pub messages: Vec<ConversationMessage>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many, most recently updated first (1..=500, default 50).
    pub limit: Option<i64>,
}

fn parse_id(id: &str) -> ApiResult<ConversationId> {
    id.parse::<ConversationId>().map_err(|_| {
        ApiError::not_found(format!("no conversation {id:?}: ids look like conv_0192f…"))
            .code("conversation_not_found")
    })
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn store_error(e: zocalo_store::StoreError) -> ApiError {
    if e.is_usage() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

/// Conversations, most recently updated first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, body = Vec<ConversationSummary>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ConversationSummary>>> {
    let rows = state
        .store()
        .list_conversations(super::limit(q.limit, 50, 500))
        .await
        .map_err(store_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|c| ConversationSummary {
                id: c.id.to_string(),
                title: c.title,
                created_at: ts(c.created_at),
                updated_at: ts(c.updated_at),
                message_count: c.message_count,
            })
            .collect(),
    ))
}

/// Every message of one conversation.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "conv_…")),
    responses((status = 200, body = ConversationDetail), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ConversationDetail>> {
    let cid = parse_id(&id)?;
    let Some(conv) = state
        .store()
        .get_conversation(&cid)
        .await
        .map_err(store_error)?
    else {
        return Err(ApiError::not_found(format!("no conversation {id}")));
    };
    let messages = state.store().messages(&cid).await.map_err(store_error)?;
    Ok(Json(ConversationDetail {
        id: conv.id.to_string(),
        title: conv.title,
        messages: messages
            .into_iter()
            .map(|m| ConversationMessage {
                id: m.id.to_string(),
                seq: m.seq,
                role: m.message.role.as_str().to_owned(),
                content: m.message.content,
                tool_calls: m
                    .message
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
                    .collect(),
                model: m.model,
                provider: m.provider,
                created_at: ts(m.created_at),
            })
            .collect(),
    }))
}

/// Delete a conversation and its messages.
#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "conv_…")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let cid = parse_id(&id)?;
    if state
        .store()
        .delete_conversation(&cid)
        .await
        .map_err(store_error)?
    {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no conversation {id}")))
    }
}

#[derive(Deserialize, ToSchema)]
pub struct AskBody {
    /// The user's message.
    pub message: String,
    /// With `/api/conversations/ask`: one conversation per key you choose (a chat or channel
    /// id such as `telegram:42`), created on first use and continued by every later ask with
    /// the same key.
    #[serde(default)]
    pub conv_key: Option<String>,
}

/// Ask in a new conversation. SSE events: `start` {conversation_id?}, `text` {text},
/// `tool_call` {name, arguments}, `tool_result` {name, is_error}, then `done` {conversation_id,
/// text, model, provider, usage} or `error` {error}.
#[utoipa::path(post, path = "/api/conversations/ask", tag = "conversations",
    request_body = AskBody,
    responses((status = 200, description = "text/event-stream of the answer"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn ask_new(
    State(state): State<AppState>,
    Json(body): Json<AskBody>,
) -> ApiResult<Response> {
    if body.message.trim().is_empty() {
        // Before a key's conversation is created: bad input leaves nothing behind.
        return Err(ApiError::bad_request("the message is empty: say something").param("message"));
    }
    let conv = match body.conv_key.as_deref() {
        Some(key) => Some(
            state
                .store()
                .conversation_for_key(key)
                .await
                .map_err(|e| store_error(e).param("conv_key"))?
                .0,
        ),
        None => None,
    };
    ask(state, conv, body).await
}

/// Ask in an existing conversation (same events as `/api/conversations/ask`).
#[utoipa::path(post, path = "/api/conversations/{id}/ask", tag = "conversations",
    params(("id" = String, Path, description = "conv_…")),
    request_body = AskBody,
    responses((status = 200, description = "text/event-stream of the answer"), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn ask_existing(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<AskBody>,
) -> ApiResult<Response> {
    if body.conv_key.is_some() {
        return Err(
            ApiError::bad_request("a conversation key goes to /api/conversations/ask")
                .param("conv_key"),
        );
    }
    let cid = parse_id(&id)?;
    if state
        .store()
        .get_conversation(&cid)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no conversation {id}")));
    }
    ask(state, Some(cid), body).await
}

async fn ask(state: AppState, conv: Option<ConversationId>, body: AskBody) -> ApiResult<Response> {
    if body.message.trim().is_empty() {
        return Err(ApiError::bad_request("the message is empty: say something").param("message"));
    }
    let mut rx = start_ask(&state, conv.clone(), body.message, true).await?;
    let events = async_stream(move |tx| async move {
        let ev = |name: &str, v: serde_json::Value| -> Result<Event, Infallible> {
            Ok(Event::default().event(name).data(v.to_string()))
        };
        let _ = tx
            .send(ev(
                "start",
                json!({"conversation_id": conv.map(|c| c.to_string())}),
            ))
            .await;
        while let Some(p) = rx.recv().await {
            let out = match p {
                AskPiece::Text(t) => ev("text", json!({"text": t})),
                AskPiece::ToolCall(c) => ev(
                    "tool_call",
                    json!({"name": c.name, "arguments": c.arguments}),
                ),
                AskPiece::ToolResult { name, is_error } => {
                    ev("tool_result", json!({"name": name, "is_error": is_error}))
                }
                AskPiece::Approval(p) => {
                    ev("approval", serde_json::to_value(&p).unwrap_or_default())
                }
                AskPiece::Done(o) => match *o {
                    Ok(o) => ev(
                        "done",
                        json!({
                            "conversation_id": o.conversation_id,
                            "text": o.text,
                            "model": o.model,
                            "provider": o.provider,
                            "usage": o.usage,
                            "new_conversation": o.new_conversation,
                        }),
                    ),
                    Err(e) => ev(
                        "error",
                        serde_json::to_value(agent_error(e).body()).unwrap_or_default(),
                    ),
                },
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
