//! `/api/agents`: the recorded batches of sub-agents (`zocalo agents spawn-all`, the
//! `spawn_agents` tool), newest first, and one batch with its agents in input order.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use zocalo_agent::Batches;

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents/batches", get(list))
        .route("/agents/batches/{id}", get(show))
}

fn store_error(e: zocalo_store::StoreError) -> ApiError {
    if e.is_usage() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

#[derive(Deserialize, IntoParams)]
pub struct BatchesQuery {
    /// 1..=500, default 50.
    pub limit: Option<i64>,
}

/// Batches of sub-agents, newest first, with counts per status.
#[utoipa::path(get, path = "/api/agents/batches", tag = "agents", params(BatchesQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<BatchesQuery>,
) -> ApiResult<Json<Value>> {
    let b = Batches::new(state.store().clone());
    let rows = b
        .list(super::limit(q.limit, 50, 500))
        .await
        .map_err(store_error)?;
    Ok(Json(json!(rows)))
}

/// One batch and its agents (prompt, status, output or error, elapsed), in input order.
#[utoipa::path(get, path = "/api/agents/batches/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let b = Batches::new(state.store().clone());
    match b.show(&id).await.map_err(store_error)? {
        Some(d) => Ok(Json(json!(d))),
        None => Err(ApiError::not_found(format!("no agent batch {id:?}"))),
    }
}
