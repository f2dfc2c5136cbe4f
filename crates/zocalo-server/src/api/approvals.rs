//! Approvals in the server: when a tool's decision is `ask` during `POST
//! /api/conversations/ask`, the answer's event stream carries an `approval` event {id,
//! conversation_id, tool, arguments} and the ask waits (at most [`WAIT`], then it is a deny)
//! until someone answers `POST /api/approvals/{id}` {"decision": "allow"|"deny"|"always"}.
//! `GET /api/approvals` lists what is waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;
use zocalo_agent::{Approval, ApprovalRequest, Approver};

use crate::error::{ApiError, ApiResult, Json, Path};
use crate::openai::AskPiece;
use crate::AppState;

/// Longest an ask waits for someone to answer; then the call is denied.
pub const WAIT: Duration = Duration::from_secs(300);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/{id}", post(decide))
}

/// One call waiting for a decision.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PendingApproval {
    /// `appr_…`
    pub id: String,
    pub conversation_id: String,
    pub tool: String,
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// The approvals waiting in this server process.
#[derive(Default)]
pub struct Pending {
    waiting: Mutex<HashMap<String, (PendingApproval, oneshot::Sender<Approval>)>>,
}

impl Pending {
    fn list(&self) -> Vec<PendingApproval> {
        let mut out: Vec<_> = self
            .waiting
            .lock()
            .map(|w| w.values().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn take(&self, id: &str) -> Option<oneshot::Sender<Approval>> {
        self.waiting.lock().ok()?.remove(id).map(|(_, tx)| tx)
    }
}

/// The approver of one server ask: each question becomes an `approval` event on that ask's
/// stream and an entry of `GET /api/approvals`.
pub(crate) struct ServerApprover {
    pub(crate) pending: Arc<Pending>,
    pub(crate) events: mpsc::UnboundedSender<AskPiece>,
}

#[async_trait::async_trait]
impl Approver for ServerApprover {
    async fn approve(&self, request: &ApprovalRequest) -> Approval {
        let id = zocalo_core::ids::new_prefixed("appr");
        let entry = PendingApproval {
            id: id.clone(),
            conversation_id: request.conversation_id.to_string(),
            tool: request.tool.clone(),
            arguments: request.arguments.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.pending.waiting.lock() {
            w.insert(id.clone(), (entry.clone(), tx));
        }
        let _ = self.events.send(AskPiece::Approval(entry));
        let decision = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(d)) => d,
            // Nobody answered in time (or the ask was dropped): a deny.
            _ => Approval::Deny,
        };
        self.pending.take(&id);
        decision
    }
}

/// Calls waiting for a decision, oldest first.
#[utoipa::path(get, path = "/api/approvals", tag = "approvals",
    responses((status = 200, body = Vec<PendingApproval>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<PendingApproval>> {
    Json(state.approvals().list())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `allow`, `deny`, or `always` (allow, and this tool in this conversation from now on).
    #[schema(value_type = String)]
    pub decision: Approval,
}

/// Answer a waiting call; the ask goes on at once.
#[utoipa::path(post, path = "/api/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "appr_…")),
    request_body = Decision,
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult<Json<Value>> {
    let Some(tx) = state.approvals().take(&id) else {
        return Err(ApiError::not_found(format!(
            "no approval {id} is waiting (answered, timed out, or never asked)"
        )));
    };
    let _ = tx.send(body.decision);
    Ok(Json(json!({"id": id, "decision": body.decision})))
}
