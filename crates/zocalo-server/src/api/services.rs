//! `/api/services`: the supervised services of `zocalo services`, driven through the server
//! process's own [`Supervisor`] (the one `zocalo serve` runs as the data home's daemon): list,
//! add, show, start, stop, restart, remove, and the tail of a service's log.
//!
//! Statuses have the shape of `zocalo services status --json`. When this server does not
//! supervise services (another daemon runs for the data home), every route answers 503 with
//! the reason; state changes of services show up as `service` events on `/api/events` either
//! way, since those are read from the database.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zocalo_services::{HealthCheck, RestartPolicy, ServiceSpec, ServicesError, Supervisor};

use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

/// Most log lines one request returns.
pub const MAX_LOG_LINES: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services", get(list).post(add))
        .route("/services/{name}", get(show).delete(remove))
        .route("/services/{name}/start", post(start))
        .route("/services/{name}/stop", post(stop))
        .route("/services/{name}/restart", post(restart))
        .route("/services/{name}/logs", get(logs))
}

fn supervisor(state: &AppState) -> ApiResult<Supervisor> {
    state.backend().supervisor().map_err(ApiError::from)
}

pub(crate) fn services_error(e: ServicesError) -> ApiError {
    match e {
        ServicesError::NotFound(_) => ApiError::not_found(e.to_string()),
        ServicesError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string()).code("conflict")
        }
        ServicesError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).code("unavailable")
        }
        e if e.is_usage() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

/// A name that cannot be a service's is answered like an unknown one, before it reaches the
/// database (a NUL byte, for one, is not even storable everywhere).
fn known_name(name: &str) -> ApiResult<()> {
    match zocalo_services::spec::validate_name(name) {
        Ok(()) => Ok(()),
        Err(_) => Err(services_error(ServicesError::NotFound(name.to_owned()))),
    }
}

fn to_json<T: Serialize>(v: T) -> ApiResult<Json<Value>> {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A new service, as `zocalo services add` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddService {
    /// Letters, digits, `.`, `_`, `-` (at most 64), starting with a letter or digit.
    pub name: String,
    /// The command line, split into words like a POSIX shell (no shell runs it: use
    /// `sh -c '…'` for pipes).
    #[serde(alias = "cmd")]
    pub command: String,
    /// `always`, `on-failure` (default) or `never`.
    #[serde(default)]
    pub restart: Option<String>,
    /// Healthy when a GET of this http(s) URL answers 2xx.
    #[serde(default)]
    pub health_http: Option<String>,
    /// Healthy when this command exits 0.
    #[serde(default)]
    pub health_cmd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute); default: the data home.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Start it right away (default: added stopped, as the CLI does).
    #[serde(default)]
    pub start: bool,
}

impl AddService {
    fn spec(self) -> ApiResult<ServiceSpec> {
        // Not storable in PostgreSQL text (a URL parser may even let one through).
        for (field, v) in [
            ("health_http", &self.health_http),
            ("health_cmd", &self.health_cmd),
            ("cwd", &self.cwd),
        ] {
            if v.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(
                    ApiError::bad_request(format!("{field} contains a NUL byte")).param(field),
                );
            }
        }
        let mut spec = ServiceSpec::new(self.name, self.command);
        if let Some(r) = &self.restart {
            spec.restart = r
                .parse::<RestartPolicy>()
                .map_err(|e| services_error(e).param("restart"))?;
        }
        spec.health = match (self.health_http, self.health_cmd) {
            (Some(_), Some(_)) => {
                return Err(
                    ApiError::bad_request("give health_http or health_cmd, not both")
                        .param("health_cmd"),
                )
            }
            (Some(url), None) => Some(HealthCheck::Http(url)),
            (None, Some(cmd)) => Some(HealthCheck::Cmd(cmd)),
            (None, None) => None,
        };
        spec.env = self.env;
        spec.cwd = self.cwd.map(PathBuf::from);
        Ok(spec)
    }
}

/// Every service with its state, as `zocalo services list --json`.
#[utoipa::path(get, path = "/api/services", tag = "services",
    responses((status = 200, body = Vec<Object>), (status = 401, body = crate::error::ErrorBody), (status = 503, description = "This server does not supervise services", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    to_json(sup.list().await.map_err(services_error)?)
}

/// Define a service (stopped unless `start` is true).
#[utoipa::path(post, path = "/api/services", tag = "services", request_body = AddService,
    responses((status = 201, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 409, description = "A service with that name exists", body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Json(body): Json<AddService>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let sup = supervisor(&state)?;
    let start = body.start;
    let spec = body.spec()?;
    let name = spec.name.clone();
    let mut status = sup.add(spec).await.map_err(services_error)?;
    if start {
        status = sup.start(&name).await.map_err(services_error)?;
    }
    Ok((StatusCode::CREATED, to_json(status)?))
}

/// One service: state, pid, restarts, health, last exit, error.
#[utoipa::path(get, path = "/api/services/{name}", tag = "services", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    to_json(sup.status(&name).await.map_err(services_error)?)
}

/// Stop the service and delete its definition (its log files stay).
#[utoipa::path(delete, path = "/api/services/{name}", tag = "services", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    sup.rm(&name).await.map_err(services_error)?;
    Ok(Json(json!({ "removed": name })))
}

/// Start the service (a no-op when it runs); wanted running from now on.
#[utoipa::path(post, path = "/api/services/{name}/start", tag = "services", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    to_json(sup.start(&name).await.map_err(services_error)?)
}

/// Stop the service (SIGTERM to its process group, SIGKILL after the grace period).
#[utoipa::path(post, path = "/api/services/{name}/stop", tag = "services", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    to_json(sup.stop(&name).await.map_err(services_error)?)
}

/// Stop (if running), then start.
#[utoipa::path(post, path = "/api/services/{name}/restart", tag = "services", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    to_json(sup.restart(&name).await.map_err(services_error)?)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The last this many lines (1..=10000, default 100).
    pub lines: Option<usize>,
}

/// The tail of a service's log (its own stdout and stderr, timestamped), oldest first.
#[utoipa::path(get, path = "/api/services/{name}/logs", tag = "services", params(("name" = String, Path), LogsQuery),
    responses((status = 200, body = Object, description = "{\"name\", \"lines\": [...]}"), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let sup = supervisor(&state)?;
    known_name(&name)?;
    let n = q.lines.unwrap_or(100);
    if n == 0 || n > MAX_LOG_LINES {
        return Err(
            ApiError::bad_request(format!("lines must be 1 to {MAX_LOG_LINES}")).param("lines"),
        );
    }
    let lines = sup.logs(&name, n).await.map_err(services_error)?;
    Ok(Json(json!({ "name": name, "lines": lines })))
}
