//! `/api/schedules`: automations (RFC 5545 RRULE in an IANA zone) — create, list with their
//! next occurrences, show, delete, pause, resume, runs — and `preview` of any rule.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zocalo_scheduler::{
    fmt_utc, Action, Automation, Misfire, NewAutomation, Schedule, Scheduler, SchedulerError,
};

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

/// Most occurrences one preview returns.
const MAX_PREVIEW: usize = 1000;
/// Upcoming occurrences shown with each automation.
const UPCOMING: usize = 5;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(list).post(create))
        .route("/schedules/preview", post(preview))
        .route("/schedules/{name}", get(show).delete(remove))
        .route("/schedules/{name}/pause", post(pause))
        .route("/schedules/{name}/resume", post(resume))
        .route("/schedules/{name}/runs", get(runs))
}

fn scheduler(state: &AppState) -> Scheduler {
    Scheduler::new(state.store().clone())
}

pub(crate) fn sched_error(e: SchedulerError) -> ApiError {
    match e {
        SchedulerError::NotFound(_) => ApiError::not_found(e.to_string()),
        SchedulerError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string()).code("conflict")
        }
        e if e.is_usage() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

/// An automation as JSON, with its next occurrences from now.
fn automation_json(a: &Automation) -> Value {
    let now = Utc::now();
    let upcoming: Vec<String> = if a.paused {
        Vec::new()
    } else {
        a.schedule()
            .map(|s| {
                s.iter_from(now)
                    .filter(|t| *t >= now)
                    .take(UPCOMING)
                    .map(fmt_utc)
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "id": a.id,
        "name": a.name,
        "rrule": a.rrule,
        "start": a.start,
        "tz": a.tz,
        "action": a.action,
        "paused": a.paused,
        "next_run_at": a.next_run_at.map(fmt_utc),
        "upcoming": upcoming,
        "created_at": fmt_utc(a.created_at),
        "misfire": a.misfire.as_str(),
        "catchup_limit": a.catchup_limit,
    })
}

/// Every automation, by name, each with its next occurrences (`upcoming`).
#[utoipa::path(get, path = "/api/schedules", tag = "schedules",
    responses((status = 200, body = Vec<Object>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Value>>> {
    let all = scheduler(&state).list().await.map_err(sched_error)?;
    Ok(Json(all.iter().map(automation_json).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct NewSchedule {
    pub name: String,
    /// RRULE text, e.g. `FREQ=DAILY;BYHOUR=7;BYMINUTE=30` (EXDATE/RDATE lines allowed).
    pub rrule: String,
    /// Local start `YYYY-MM-DDTHH:MM:SS` in `tz`.
    pub start: String,
    /// IANA zone, e.g. `Europe/Berlin`.
    pub tz: String,
    /// What fires: {"kind":"ask","message"} | {"kind":"skill","name","args"} | {"kind":"shell","command"}.
    #[schema(value_type = Object)]
    pub action: Action,
    /// `skip`, `run-once` (default) or `run-all`.
    #[serde(default)]
    pub misfire: Option<String>,
    #[serde(default)]
    pub catchup_limit: Option<u32>,
}

/// Create an automation (validated before anything is stored).
#[utoipa::path(post, path = "/api/schedules", tag = "schedules", request_body = NewSchedule,
    responses((status = 201, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(b): Json<NewSchedule>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut new = NewAutomation::new(&b.name, &b.rrule, &b.start, &b.tz, b.action);
    if let Some(m) = b.misfire {
        new.misfire = m.parse::<Misfire>().map_err(sched_error)?;
    }
    if let Some(c) = b.catchup_limit {
        new.catchup_limit = c;
    }
    let a = scheduler(&state)
        .add(new, Utc::now())
        .await
        .map_err(sched_error)?;
    Ok((StatusCode::CREATED, Json(automation_json(&a))))
}

/// One automation.
#[utoipa::path(get, path = "/api/schedules/{name}", tag = "schedules", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = scheduler(&state).get(&name).await.map_err(sched_error)?;
    Ok(Json(automation_json(&a)))
}

/// Delete an automation and its run history.
#[utoipa::path(delete, path = "/api/schedules/{name}", tag = "schedules", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    scheduler(&state).remove(&name).await.map_err(sched_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause: nothing fires until resumed.
#[utoipa::path(post, path = "/api/schedules/{name}/pause", tag = "schedules", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = scheduler(&state)
        .pause(&name, Utc::now())
        .await
        .map_err(sched_error)?;
    Ok(Json(automation_json(&a)))
}

/// Resume: the next occurrence is the first from now.
#[utoipa::path(post, path = "/api/schedules/{name}/resume", tag = "schedules", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = scheduler(&state)
        .resume(&name, Utc::now())
        .await
        .map_err(sched_error)?;
    Ok(Json(automation_json(&a)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// 1..=500, default 50.
    pub limit: Option<i64>,
}

/// Runs of one automation, newest first, with their jobs' state.
#[utoipa::path(get, path = "/api/schedules/{name}/runs", tag = "schedules", params(("name" = String, Path), RunsQuery),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Value>> {
    let runs = scheduler(&state)
        .runs(&name, super::limit(q.limit, 50, 500))
        .await
        .map_err(sched_error)?;
    Ok(Json(json!(runs)))
}

#[derive(Deserialize, ToSchema)]
pub struct PreviewRequest {
    pub rrule: String,
    /// Local start `YYYY-MM-DDTHH:MM:SS`.
    pub start: String,
    pub tz: String,
    /// 1..=1000, default 10.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The first occurrences of a rule as UTC instants (RFC 5545; DST gaps and overlaps as the
/// CLI's `schedule preview`).
#[utoipa::path(post, path = "/api/schedules/preview", tag = "schedules", request_body = PreviewRequest,
    responses((status = 200, body = Vec<String>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn preview(Json(b): Json<PreviewRequest>) -> ApiResult<Json<Vec<String>>> {
    let limit = b.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_PREVIEW {
        return Err(
            ApiError::bad_request(format!("limit must be 1 to {MAX_PREVIEW}")).param("limit"),
        );
    }
    let s = Schedule::parse(&b.rrule, &b.start, &b.tz).map_err(sched_error)?;
    // Expansion is CPU work (a sparse rule can walk far): off the async workers.
    let out =
        tokio::task::spawn_blocking(move || s.preview(limit).into_iter().map(fmt_utc).collect())
            .await
            .map_err(|e| ApiError::internal(format!("preview failed: {e}")))?;
    Ok(Json(out))
}
