//! `/api/skills`: list, show (with the SKILL.md body and scripts), run a script (sandboxed,
//! time-limited, output capped: the same runner as `zocalo skills run`).

use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use zocalo_skills::{RunLimits, SkillError, Skills};

use crate::error::{ApiError, ApiResult, Json, Path};
use crate::AppState;

/// Longest run a request may ask for, in seconds.
const MAX_TIMEOUT_SECS: u64 = 600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/skills", get(list))
        .route("/skills/{name}", get(show))
        .route("/skills/{name}/run", post(run))
}

fn load(state: &AppState) -> Skills {
    Skills::load(state.skills_roots().to_vec())
}

fn skill_error(e: SkillError) -> ApiError {
    match e {
        SkillError::NotFound { .. }
        | SkillError::NoSuchFile { .. }
        | SkillError::NoScript { .. } => ApiError::not_found(e.to_string()),
        SkillError::Invalid { .. }
        | SkillError::PathNotAllowed { .. }
        | SkillError::NoInterpreter { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SkillSummary {
    pub name: String,
    pub description: String,
    pub dir: String,
}

/// Skills found in the skill roots, by name.
#[utoipa::path(get, path = "/api/skills", tag = "skills",
    responses((status = 200, body = Vec<SkillSummary>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<SkillSummary>> {
    let skills = load(&state);
    let mut out: Vec<SkillSummary> = skills
        .list()
        .iter()
        .map(|s| SkillSummary {
            name: s.name.clone(),
            description: s.description.clone(),
            dir: s.dir.display().to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Json(out)
}

/// One skill: frontmatter fields, instructions and scripts.
#[utoipa::path(get, path = "/api/skills/{name}", tag = "skills", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let skills = load(&state);
    let skill = skills.get(&name).map_err(skill_error)?;
    let mut v = json!(skill.as_ref());
    v["body"] = json!(skill.body);
    v["scripts"] = json!(zocalo_skills::runner::list_scripts(&skill.dir));
    Ok(Json(v))
}

#[derive(Deserialize, ToSchema)]
pub struct RunSkill {
    /// Script under `scripts/` (default: the only one).
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds, 1..=600 (default 60).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Run a skill's script in the sandbox; the answer holds its exit code and output.
#[utoipa::path(post, path = "/api/skills/{name}/run", tag = "skills", params(("name" = String, Path)),
    request_body = RunSkill,
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<RunSkill>,
) -> ApiResult<Json<Value>> {
    let timeout = body.timeout.unwrap_or(60);
    if timeout == 0 || timeout > MAX_TIMEOUT_SECS {
        return Err(ApiError::bad_request(format!(
            "timeout must be 1 to {MAX_TIMEOUT_SECS} seconds"
        ))
        .param("timeout"));
    }
    let skills = load(&state);
    let skill = skills.get(&name).map_err(skill_error)?;
    let limits = RunLimits {
        timeout: Duration::from_secs(timeout),
        launcher: state.skill_launcher(),
        ..RunLimits::default()
    };
    let out = zocalo_skills::run_script(&skill, body.script.as_deref(), &body.args, &limits)
        .await
        .map_err(skill_error)?;
    let mut v = json!(out);
    v["success"] = json!(out.success());
    Ok(Json(v))
}
