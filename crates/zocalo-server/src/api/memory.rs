//! `/api/memory`: search (keyword + meaning), add, read, forget, stats.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zocalo_memory::{Memory, MemoryError, Metadata, NewMemory, DEFAULT_USER_SCOPE};

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

/// Longest query accepted.
const MAX_QUERY: usize = 4096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/memory", post(add))
        .route("/memory/search", get(search))
        .route("/memory/stats", get(stats))
        .route("/memory/{id}", get(show).delete(forget))
}

fn memory(state: &AppState) -> ApiResult<std::sync::Arc<Memory>> {
    state.backend().memory().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory is turned off ([memory] enabled = false in config.toml, or ZOCALO_MEMORY=off)",
        )
        .code("unavailable")
    })
}

pub(crate) fn memory_error(e: MemoryError) -> ApiError {
    match e {
        MemoryError::UnknownMemory(_) => ApiError::not_found(e.to_string()),
        // The stored vectors are another embedder's: the state, not the request, is at fault
        // until `zocalo memory reindex`.
        MemoryError::MixedEmbedders { .. } => {
            ApiError::new(axum::http::StatusCode::CONFLICT, e.to_string()).code("mixed_embedders")
        }
        e if e.is_usage() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for.
    pub q: String,
    /// Scope to search (default `user:default`).
    pub scope: Option<String>,
    /// 1..=100, default 10.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MemoryHit {
    pub id: String,
    pub text: String,
    pub score: f64,
    pub scope: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// Hybrid search (BM25 keywords + MiniLM vectors when available), best first.
#[utoipa::path(get, path = "/api/memory/search", tag = "memory", params(SearchQuery),
    responses((status = 200, body = Vec<MemoryHit>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Vec<MemoryHit>>> {
    if q.q.len() > MAX_QUERY {
        return Err(
            ApiError::bad_request(format!("q is longer than {MAX_QUERY} bytes")).param("q"),
        );
    }
    let scope = q.scope.unwrap_or_else(|| DEFAULT_USER_SCOPE.to_owned());
    let m = memory(&state)?;
    let limit = usize::try_from(super::limit(q.limit, 10, 100)).unwrap_or(10);
    let hits = m
        .recall(&q.q, &[scope.as_str()], limit)
        .await
        .map_err(memory_error)?;
    Ok(Json(
        hits.into_iter()
            .map(|h| MemoryHit {
                id: h.id,
                text: h.text,
                score: h.score,
                scope: h.scope,
                metadata: Value::Object(h.metadata),
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct AddMemory {
    pub text: String,
    /// `user:NAME`, `agent:NAME`, `conv:ID`, ... (default `user:default`).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<Metadata>,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: String,
}

/// Remember a text (chunked and embedded).
#[utoipa::path(post, path = "/api/memory", tag = "memory", request_body = AddMemory,
    responses((status = 201, body = Created), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Json(body): Json<AddMemory>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let new = NewMemory {
        scope: body.scope.unwrap_or_else(|| DEFAULT_USER_SCOPE.to_owned()),
        text: body.text,
        metadata: body.metadata.unwrap_or_default(),
        source: Some("api".into()),
    };
    new.validate().map_err(memory_error)?;
    let m = memory(&state)?;
    let rec = m.memorize(new).await.map_err(memory_error)?;
    Ok((StatusCode::CREATED, Json(Created { id: rec.id })))
}

/// One memory.
#[utoipa::path(get, path = "/api/memory/{id}", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = memory(&state)?;
    match m.get(&id).await.map_err(memory_error)? {
        Some(r) => Ok(Json(json!(r))),
        None => Err(ApiError::not_found(format!("no memory {id:?}"))),
    }
}

/// Forget a memory for good (database and indexes).
#[utoipa::path(delete, path = "/api/memory/{id}", tag = "memory", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let m = memory(&state)?;
    if m.get(&id).await.map_err(memory_error)?.is_none() {
        return Err(ApiError::not_found(format!("no memory {id:?}")));
    }
    m.forget(&id).await.map_err(memory_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Counts per scope, chunks, vectors, the embedder in use.
#[utoipa::path(get, path = "/api/memory/stats", tag = "memory",
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let m = memory(&state)?;
    Ok(Json(json!(m.stats().await.map_err(memory_error)?)))
}
