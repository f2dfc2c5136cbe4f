//! `/api/audit` (every tool call the ask loop handled) and `/api/usage` (tokens from the
//! stored answers): the same queries as `zocalo audit` and `zocalo usage`.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use zocalo_core::ConversationId;
use zocalo_store::UsageBy;

use crate::error::{ApiError, ApiResult, Json, Query};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit))
        .route("/usage", get(usage))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this conversation's calls (`conv_…`).
    pub conv: Option<String>,
    /// 1..=1000, default 50; newest first.
    pub limit: Option<i64>,
}

/// Tool calls, newest first: tool, arguments (secrets redacted), decision, who decided,
/// outcome, duration.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let conv = q
        .conv
        .as_deref()
        .map(|c| {
            c.parse::<ConversationId>().map_err(|_| {
                ApiError::bad_request(format!("{c:?} is not a conversation id (conv_…)"))
                    .param("conv")
            })
        })
        .transpose()?;
    let rows = zocalo_agent::audit(
        state.store(),
        conv.as_ref(),
        super::limit(q.limit, 50, 1000),
    )
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(
        serde_json::to_value(rows).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `provider` (default), `model` or `day`.
    pub by: Option<String>,
    /// From this UTC day (`2026-03-08`) or RFC 3339 instant on.
    pub since: Option<String>,
}

/// Tokens used, from the stored answers: `[{"key","input_tokens","output_tokens","calls"}]`.
#[utoipa::path(get, path = "/api/usage", tag = "audit", params(UsageQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let by: UsageBy = q
        .by
        .as_deref()
        .unwrap_or("provider")
        .parse()
        .map_err(|e: zocalo_store::StoreError| ApiError::bad_request(e.to_string()).param("by"))?;
    let since = q
        .since
        .as_deref()
        .map(zocalo_store::parse_since)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()).param("since"))?;
    let rows = state
        .store()
        .usage(by, since)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(
        serde_json::to_value(rows).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}
