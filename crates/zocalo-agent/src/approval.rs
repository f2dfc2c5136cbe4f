//! Approvals: how a call whose decision is [`Decision::Ask`](crate::policy::Decision::Ask)
//! gets its answer.
//!
//! Permissions ([`crate::policy`]) say *whether* someone must agree; the [`Approvals`] of one
//! ask say *who* can: in this order,
//!
//! 1. an earlier "always in this conversation" answer for the tool (kept in `tool_grants`,
//!    so it outlives the process: the next `zocalo ask --conv ID` honours it too);
//! 2. `allow` patterns given for this ask (`--allow TOOL`, globs accepted);
//! 3. `yes` (`--yes`): every `ask` is allowed;
//! 4. the [`Approver`] (a TTY prompt, the server's `/api/approvals`), when there is one;
//! 5. nobody: the ask is unattended (automations, pool jobs, sub-agents, no TTY) and `ask`
//!    means deny.
//!
//! A refused call never reaches the tool; the model gets a recoverable error saying why and
//! the loop goes on.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zocalo_core::ConversationId;
use zocalo_store::{with_pool, Store, StoreError};

use crate::policy::ToolPatterns;

/// What an [`Approver`] is asked about: one call, with the arguments as the model sent them
/// (not redacted: the person deciding needs to see what would run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApprovalRequest {
    pub conversation_id: ConversationId,
    /// The provider's id for the call (`call_…`, `toolu_…`).
    pub call_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
}

/// An approver's answer. Deserialises from `"allow"`, `"deny"` and `"always"` (the shape of
/// `POST /api/approvals/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    Allow,
    Deny,
    /// Allow, and allow this tool without asking for the rest of the conversation.
    #[serde(rename = "always")]
    AlwaysInConversation,
}

/// Someone who can approve a call while the ask waits. Object-safe: askers hold
/// `Arc<dyn Approver>`. An approver that cannot ask (the terminal went away, the request timed
/// out) answers [`Approval::Deny`].
#[async_trait]
pub trait Approver: Send + Sync {
    async fn approve(&self, request: &ApprovalRequest) -> Approval;
}

/// Who let a call through or refused it, as the audit records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The permissions alone (`allow` or `deny`; also a call to a tool not offered).
    Policy,
    /// The [`Approver`] answered.
    User,
    /// An earlier "always in this conversation" answer.
    Always,
    /// A pattern of [`Approvals::allow`] (`--allow`).
    AllowFlag,
    /// [`Approvals::yes`] (`--yes`).
    YesFlag,
    /// Nobody could be asked: `ask` means deny.
    Unattended,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::User => "user",
            DecidedBy::Always => "always",
            DecidedBy::AllowFlag => "allow-flag",
            DecidedBy::YesFlag => "yes-flag",
            DecidedBy::Unattended => "unattended",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            DecidedBy::Policy,
            DecidedBy::User,
            DecidedBy::Always,
            DecidedBy::AllowFlag,
            DecidedBy::YesFlag,
            DecidedBy::Unattended,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// How the `ask` decisions of one ask are answered. The default is unattended with no
/// pre-approvals: every `ask` is denied unless the conversation has an "always" for it.
#[derive(Clone, Default)]
pub struct Approvals {
    /// Who is asked; `None`: unattended.
    pub approver: Option<Arc<dyn Approver>>,
    /// Tools allowed without asking in this ask (`--allow`, names or globs).
    pub allow: ToolPatterns,
    /// Allow every `ask` (`--yes`). `deny` still denies.
    pub yes: bool,
}

impl Approvals {
    /// Nobody to ask: automations, pool jobs, sub-agents, a CLI without a TTY.
    pub fn unattended() -> Self {
        Self::default()
    }

    /// `approver` answers every `ask` that nothing else settles.
    pub fn with_approver(approver: Arc<dyn Approver>) -> Self {
        Self {
            approver: Some(approver),
            ..Self::default()
        }
    }

    /// Adds pre-approved tools (`--allow`).
    pub fn allowing(mut self, patterns: ToolPatterns) -> Self {
        for p in patterns.iter() {
            self.allow.push(p.clone());
        }
        self
    }

    /// Sets `--yes`.
    pub fn yes(mut self, yes: bool) -> Self {
        self.yes = yes;
        self
    }

    pub fn is_unattended(&self) -> bool {
        self.approver.is_none()
    }
}

impl fmt::Debug for Approvals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approvals")
            .field("approver", &self.approver.as_ref().map(|_| "dyn Approver"))
            .field("allow", &self.allow)
            .field("yes", &self.yes)
            .finish()
    }
}

const GRANT_INSERT: &str = "INSERT INTO tool_grants (conversation_id, tool, granted_at) \
                            VALUES ($1, $2, $3) ON CONFLICT (conversation_id, tool) DO NOTHING";
const GRANT_GET: &str = "SELECT COUNT(*) FROM tool_grants WHERE conversation_id = $1 AND tool = $2";
const GRANT_LIST: &str = "SELECT tool FROM tool_grants WHERE conversation_id = $1 ORDER BY tool";
const GRANT_DELETE: &str = "DELETE FROM tool_grants WHERE conversation_id = $1";

/// Remembers "always in this conversation" for `tool`.
pub(crate) async fn grant(
    store: &Store,
    conversation: &ConversationId,
    tool: &str,
) -> Result<(), StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    with_pool!(store.pool(), |p| sqlx::query(GRANT_INSERT)
        .bind(conversation.as_str())
        .bind(tool)
        .bind(now)
        .execute(p)
        .await
        .map(drop))?;
    Ok(())
}

pub(crate) async fn has_grant(
    store: &Store,
    conversation: &ConversationId,
    tool: &str,
) -> Result<bool, StoreError> {
    let n: i64 = with_pool!(store.pool(), |p| sqlx::query_scalar(GRANT_GET)
        .bind(conversation.as_str())
        .bind(tool)
        .fetch_one(p)
        .await)?;
    Ok(n > 0)
}

/// The tools a user allowed for the rest of `conversation`, by name.
pub async fn conversation_grants(
    store: &Store,
    conversation: &ConversationId,
) -> Result<Vec<String>, StoreError> {
    Ok(with_pool!(store.pool(), |p| sqlx::query_scalar(
        GRANT_LIST
    )
    .bind(conversation.as_str())
    .fetch_all(p)
    .await)?)
}

/// Forgets every "always" of `conversation`; returns how many there were.
pub async fn revoke_grants(
    store: &Store,
    conversation: &ConversationId,
) -> Result<u64, StoreError> {
    Ok(with_pool!(store.pool(), |p| sqlx::query(GRANT_DELETE)
        .bind(conversation.as_str())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_read_the_rest_api_shape() {
        for (text, want) in [
            ("\"allow\"", Approval::Allow),
            ("\"deny\"", Approval::Deny),
            ("\"always\"", Approval::AlwaysInConversation),
        ] {
            assert_eq!(serde_json::from_str::<Approval>(text).unwrap(), want);
        }
        assert!(serde_json::from_str::<Approval>("\"maybe\"").is_err());
    }

    #[test]
    fn decided_by_names_round_trip() {
        for d in [
            DecidedBy::Policy,
            DecidedBy::User,
            DecidedBy::Always,
            DecidedBy::AllowFlag,
            DecidedBy::YesFlag,
            DecidedBy::Unattended,
        ] {
            assert_eq!(DecidedBy::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }

    #[test]
    fn default_is_unattended() {
        let a = Approvals::default();
        assert!(a.is_unattended() && !a.yes && a.allow.is_empty());
    }
}
