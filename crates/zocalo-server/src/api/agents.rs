//! `/api/agents`: the recorded batches of sub-agents (`zocalo agents spawn-all`, the
//! `spawn_agents` tool, `POST /api/agents/spawn-all`), newest first, and one batch with its
//! agents in input order. A batch started here runs in the background on the backend's ask
//! loop; its id comes back at once, and it can be followed with `GET` and stopped with
//! `POST .../cancel`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zocalo_agent::{AgentTask, Batches, SpawnOptions, Spawner};

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

/// Most agents one spawn-all request may start.
pub const MAX_TASKS: usize = 10_000;
/// Most agents of one batch running at once.
pub const MAX_CONCURRENCY: usize = 1_000;
/// Agents running at once when the request does not say.
pub const DEFAULT_CONCURRENCY: usize = 16;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents/batches", get(list))
        .route("/agents/batches/{id}", get(show))
        .route("/agents/batches/{id}/cancel", post(cancel))
        .route("/agents/spawn-all", post(spawn_all))
}

fn store_error(e: zocalo_store::StoreError) -> ApiError {
    if e.is_usage() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

/// One agent of a batch: an id unique in the batch, and its prompt.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskIn {
    pub id: String,
    pub prompt: String,
}

/// A batch of sub-agents, as `zocalo agents spawn-all` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnAll {
    /// 1..=10000 tasks; ids unique and non-empty, prompts non-empty.
    pub tasks: Vec<TaskIn>,
    /// Agents running at once (1..=1000, default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Seconds one agent may run, 0.001..=10000000 (default: no limit).
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Model for every agent (default: the provider's).
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Spawned {
    /// Look it up with `GET /api/agents/batches/{batch_id}`.
    pub batch_id: String,
    pub total: usize,
    /// `running`.
    pub state: String,
}

/// Checks every task before anything runs; errors name the task by position and id.
fn check_tasks(tasks: &[TaskIn]) -> ApiResult<Vec<AgentTask>> {
    if tasks.is_empty() {
        return Err(
            ApiError::bad_request("tasks is empty: give at least one {id, prompt}").param("tasks"),
        );
    }
    if tasks.len() > MAX_TASKS {
        return Err(ApiError::bad_request(format!(
            "{} tasks: at most {MAX_TASKS} per batch",
            tasks.len()
        ))
        .param("tasks"));
    }
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    let mut out = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let task = AgentTask::new(t.id.clone(), t.prompt.clone());
        let bad = |why: String| {
            ApiError::bad_request(format!("tasks[{i}] (id {:?}): {why}", t.id)).param("tasks")
        };
        // Not storable in PostgreSQL text: refused up front on every backend.
        if t.id.contains('\0') || t.prompt.contains('\0') {
            return Err(bad("contains a NUL byte".into()));
        }
        if let Err(e) = zocalo_agent::validate_tasks(std::slice::from_ref(&task), |_| None) {
            return Err(bad(e.to_string()));
        }
        if let Some(j) = first.insert(t.id.as_str(), i) {
            return Err(bad(format!("duplicate id (first used by tasks[{j}])")));
        }
        out.push(task);
    }
    Ok(out)
}

/// Start a batch of sub-agents on the ask loop, in the background: 202 with its id at once.
#[utoipa::path(post, path = "/api/agents/spawn-all", tag = "agents", request_body = SpawnAll,
    responses((status = 202, body = Spawned), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, description = "No model to run agents on", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn spawn_all(
    State(state): State<AppState>,
    Json(b): Json<SpawnAll>,
) -> ApiResult<(StatusCode, Json<Spawned>)> {
    let tasks = check_tasks(&b.tasks)?;
    let concurrency = b.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(
            ApiError::bad_request(format!("concurrency must be 1 to {MAX_CONCURRENCY}"))
                .param("concurrency"),
        );
    }
    let timeout = match b.timeout_secs {
        None => None,
        // Recorded in whole milliseconds, which must be positive.
        Some(t) if t.is_finite() && (0.001..=1e7).contains(&t) => Some(Duration::from_secs_f64(t)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "timeout_secs must be between 0.001 and 10000000 seconds",
            )
            .param("timeout_secs"))
        }
    };
    if b.model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty() || m.contains('\0'))
    {
        return Err(ApiError::bad_request("model is empty or contains a NUL byte").param("model"));
    }
    let asker = state.backend().asker().await?;
    let spawner = Spawner::new(asker).with_store(state.store().clone());
    let total = tasks.len();
    let background = state.background();
    let options = SpawnOptions {
        concurrency,
        timeout,
        model: b.model,
        cancel: background.child_token(),
        ..SpawnOptions::default()
    };
    let running = spawner.start(tasks, options).await.map_err(|e| {
        if e.is_usage() {
            ApiError::bad_request(e.to_string()).param("tasks")
        } else {
            ApiError::internal(e.to_string())
        }
    })?;
    let batch_id = running.batch_id.clone();
    background.track(running);
    Ok((
        StatusCode::ACCEPTED,
        Json(Spawned {
            batch_id,
            total,
            state: "running".into(),
        }),
    ))
}

/// Stop a batch started by this server: running agents stop, the rest never start; every
/// agent is recorded (`cancelled`).
#[utoipa::path(post, path = "/api/agents/batches/{id}/cancel", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "The batch is not running in this server", body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.background().cancel(&id) {
        return Ok(Json(json!({"id": id, "cancelling": true})));
    }
    let b = Batches::new(state.store().clone());
    match b.show(&id).await.map_err(store_error)? {
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("batch {id} is not running in this server (finished, or started elsewhere)"),
        )
        .code("conflict")),
        None => Err(ApiError::not_found(format!("no agent batch {id:?}"))),
    }
}
