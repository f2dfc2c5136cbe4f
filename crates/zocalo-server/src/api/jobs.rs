//! `/api/jobs`: the compute pool — submit, list, show, cancel, stats — and `/api/nodes`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zocalo_pool::{Cancelled, JobQueue, JobState, NewJob, PoolError, SqlQueue};

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

/// Most jobs one submit creates.
const MAX_COUNT: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/stats", get(stats))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/nodes", get(nodes))
}

fn queue(state: &AppState) -> SqlQueue {
    SqlQueue::new(state.store().clone())
}

pub(crate) fn pool_error(e: PoolError) -> ApiError {
    match e {
        PoolError::NoSuchJob(_) => ApiError::not_found(e.to_string()),
        e if e.is_usage() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct SubmitJob {
    /// noop, shell ({"cmd":[prog,args...]}), ask ({"message"}), skill ({"name","args"}).
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// -1000..=1000, higher first (default 0).
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Idempotency key: a second submit with it returns the first job.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
    /// Seconds a run may take (default 600).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// How many copies (default 1).
    #[serde(default)]
    pub count: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct Submitted {
    pub ids: Vec<String>,
}

/// Enqueue jobs (validated: kind, payload shape, priority, labels).
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = SubmitJob,
    responses((status = 201, body = Submitted), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    Json(b): Json<SubmitJob>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    state
        .backend()
        .job_kinds()
        .validate(&b.kind, &b.payload)
        .map_err(pool_error)?;
    let count = b.count.unwrap_or(1);
    if count == 0 || count > MAX_COUNT {
        return Err(
            ApiError::bad_request(format!("count must be 1 to {MAX_COUNT}")).param("count"),
        );
    }
    let mut template = NewJob::new(b.kind, b.payload);
    if let Some(p) = b.priority {
        template.priority = p;
    }
    for l in &b.labels {
        template
            .labels
            .extend(zocalo_pool::parse_labels(l).map_err(pool_error)?);
    }
    template.key = b.key.clone();
    if let Some(m) = b.max_attempts {
        template.max_attempts = m;
    }
    if let Some(t) = b.timeout {
        if !(t.is_finite() && t > 0.0 && t <= 1e9) {
            return Err(
                ApiError::bad_request("timeout must be a positive number of seconds")
                    .param("timeout"),
            );
        }
        template.timeout = std::time::Duration::from_secs_f64(t);
    }
    template.validate().map_err(pool_error)?;
    let jobs: Vec<NewJob> = (1..=count)
        .map(|i| {
            let mut j = template.clone();
            if count > 1 {
                j.key = b.key.as_ref().map(|k| format!("{k}#{i}"));
            }
            j
        })
        .collect();
    let ids = queue(&state).enqueue(&jobs).await.map_err(pool_error)?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            ids: ids.into_iter().map(|e| e.id).collect(),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// queued, running, succeeded, failed, dead or cancelled.
    pub state: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Value>> {
    let st = q
        .state
        .as_deref()
        .map(|s| {
            s.parse::<JobState>()
                .map_err(|e| ApiError::bad_request(e.to_string()).param("state"))
        })
        .transpose()?;
    let jobs = queue(&state)
        .list(st, super::limit(q.limit, 100, 1000))
        .await
        .map_err(pool_error)?;
    Ok(Json(json!(jobs)))
}

/// One job with its result or error.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    match queue(&state).get(&id).await.map_err(pool_error)? {
        Some(j) => Ok(Json(json!(j))),
        None => Err(ApiError::not_found(format!("no job {id:?}"))),
    }
}

/// Cancel a queued job, or ask the worker running it to stop.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let was = match queue(&state).cancel(&id).await.map_err(pool_error)? {
        Cancelled::Queued => "queued",
        Cancelled::Running => "running",
    };
    Ok(Json(json!({"id": id, "cancelled": true, "was": was})))
}

/// Jobs per state.
#[utoipa::path(get, path = "/api/jobs/stats", tag = "jobs",
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(queue(&state)
        .stats()
        .await
        .map_err(pool_error)?)))
}

/// Worker nodes of the pool.
#[utoipa::path(get, path = "/api/nodes", tag = "jobs",
    responses((status = 200, body = Vec<Object>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn nodes(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(queue(&state)
        .nodes(1000)
        .await
        .map_err(pool_error)?)))
}
