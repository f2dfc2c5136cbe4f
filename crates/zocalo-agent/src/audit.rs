//! The audit of tool calls (`tool_audit`, migration 0060): every call the ask loop handles,
//! allowed or not, with its arguments (secrets redacted), the decision, who made it, the
//! outcome, how long the tool ran and the start of its result.
//!
//! A row is written right after its call, not with the turn: an ask that fails or crashes
//! later leaves audit rows for a turn that was never stored. That is the useful direction for
//! an audit (a tool that ran is on record even if the answer was lost). An ask that dies while
//! a tool runs leaves no row for that call.
//!
//! Redaction is best effort. Values under keys that look secret (`*key*`, `*token*`,
//! `*secret*`, `*password*`, ...) become `***`; secret values the process registered with
//! [`zocalo_llm::redact`] (API keys, the vault passphrase) are masked wherever they appear; long
//! strings are cut. A secret typed inline into, say, a shell command is not recognised.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use zocalo_core::config::Decision;
use zocalo_core::ConversationId;
use zocalo_store::{with_pool, Store, StoreError};

use crate::approval::DecidedBy;

const AUDIT_INSERT: &str = include_str!("sql/audit_insert.sql");
const AUDIT_SELECT: &str = include_str!("sql/audit_select.sql");

/// What replaces the value of a secret-looking key.
pub const REDACTED: &str = "***";
/// Key names containing one of these (any case) hold secrets.
const SECRET_KEY_PARTS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "cookie",
];
/// Longest string kept in recorded arguments, in characters (file_write's content can be a
/// megabyte).
const MAX_ARGUMENT_CHARS: usize = 2000;
/// Characters of the result (or error) kept as the excerpt.
const EXCERPT_CHARS: usize = 200;

/// How a handled call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tool ran and answered.
    Ok,
    /// The tool ran and failed (a recoverable or fatal error).
    Error,
    /// The tool did not run.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Outcome::Ok, Outcome::Error, Outcome::Denied]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One audited call, as `zocalo audit` and `GET /api/audit` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRow {
    /// `aud_…`, sortable by time.
    pub id: String,
    /// When the call was handled (after it ran), RFC 3339 UTC.
    pub at: String,
    pub conversation_id: String,
    /// The provider's id for the call.
    pub call_id: String,
    pub tool: String,
    /// Redacted (see the module notes).
    pub arguments: Value,
    /// `allow` (the tool ran) or `deny` (it did not).
    pub decision: Decision,
    pub decided_by: DecidedBy,
    pub outcome: Outcome,
    /// Time the tool ran; 0 when it did not. Waiting for an approval is not counted.
    pub duration_ms: u64,
    /// The start of the result, error or refusal, redacted.
    pub excerpt: Option<String>,
}

/// The latest `limit` audited calls, newest first: of one conversation, or of all.
pub async fn audit(
    store: &Store,
    conversation: Option<&ConversationId>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<RowData> = match conversation {
        Some(id) => {
            let sql = format!(
                "{AUDIT_SELECT}WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC \
                 LIMIT $2"
            );
            with_pool!(store.pool(), |p| sqlx::query_as(&sql)
                .bind(id.as_str())
                .bind(limit)
                .fetch_all(p)
                .await)?
        }
        None => {
            let sql = format!("{AUDIT_SELECT}ORDER BY created_at DESC, id DESC LIMIT $1");
            with_pool!(store.pool(), |p| sqlx::query_as(&sql)
                .bind(limit)
                .fetch_all(p)
                .await)?
        }
    };
    rows.into_iter().map(RowData::decode).collect()
}

/// One row to write (arguments and excerpt still raw; [`record`] redacts them).
pub(crate) struct Entry<'a> {
    pub conversation: &'a ConversationId,
    pub call_id: &'a str,
    pub tool: &'a str,
    pub arguments: &'a Value,
    pub decision: Decision,
    pub decided_by: DecidedBy,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub result: &'a str,
}

pub(crate) async fn record(store: &Store, e: &Entry<'_>) -> Result<(), StoreError> {
    let id = zocalo_core::ids::new_prefixed("aud");
    let now = chrono::Utc::now().timestamp_millis();
    let arguments = redact_arguments(e.arguments);
    let excerpt = (!e.result.is_empty()).then(|| excerpt(e.result));
    let duration = i64::try_from(e.duration_ms).unwrap_or(i64::MAX);
    with_pool!(store.pool(), |p| sqlx::query(AUDIT_INSERT)
        .bind(&id)
        .bind(now)
        .bind(e.conversation.as_str())
        .bind(clean(e.call_id))
        .bind(clean(e.tool))
        .bind(Json(&arguments))
        .bind(e.decision.as_str())
        .bind(e.decided_by.as_str())
        .bind(e.outcome.as_str())
        .bind(duration)
        .bind(excerpt.as_deref())
        .execute(p)
        .await
        .map(drop))?;
    Ok(())
}

/// `arguments` as the audit keeps them: secret-looking keys' values replaced by [`REDACTED`],
/// registered secret values masked, long strings cut.
pub fn redact_arguments(arguments: &Value) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact_arguments(v)
                    };
                    (clean(k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_arguments).collect()),
        Value::String(s) => Value::String(cut(&redact_text(s), MAX_ARGUMENT_CHARS)),
        other => other.clone(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| k.contains(part))
}

/// Registered secret values masked; NUL (which Postgres cannot store) replaced.
fn redact_text(s: &str) -> String {
    let scrubbed = zocalo_llm::redact::scrub(s.as_bytes());
    clean(&String::from_utf8_lossy(&scrubbed))
}

fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn excerpt(result: &str) -> String {
    cut(&redact_text(result), EXCERPT_CHARS)
}

fn cut(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}… [{} more bytes]", &s[..at], s.len() - at),
        None => s.to_owned(),
    }
}

#[derive(sqlx::FromRow)]
struct RowData {
    id: String,
    created_at: i64,
    conversation_id: String,
    call_id: String,
    tool: String,
    arguments: Json<Value>,
    decision: String,
    decided_by: String,
    outcome: String,
    duration_ms: i64,
    excerpt: Option<String>,
}

impl RowData {
    fn decode(self) -> Result<AuditRow, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("tool_audit {}: {what}", self.id));
        let decision = match self.decision.as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            other => return Err(corrupt(format!("unknown decision {other:?}"))),
        };
        let decided_by = DecidedBy::parse(&self.decided_by)
            .ok_or_else(|| corrupt(format!("unknown decided_by {:?}", self.decided_by)))?;
        let outcome = Outcome::parse(&self.outcome)
            .ok_or_else(|| corrupt(format!("unknown outcome {:?}", self.outcome)))?;
        let at = chrono::DateTime::from_timestamp_millis(self.created_at)
            .ok_or_else(|| corrupt(format!("bad time {}", self.created_at)))?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(AuditRow {
            id: self.id,
            at,
            conversation_id: self.conversation_id,
            call_id: self.call_id,
            tool: self.tool,
            arguments: self.arguments.0,
            decision,
            decided_by,
            outcome,
            duration_ms: u64::try_from(self.duration_ms).unwrap_or(0),
            excerpt: self.excerpt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_masked_at_any_depth() {
        let v = json!({
            "url": "https://example.com",
            "api_key": "sk-123",
            "headers": {"Authorization": "Bearer x", "Accept": "text/html"},
            "items": [{"GITHUB_TOKEN": "ghp"}, {"password2": 7}, "plain"],
            "client_secret": null,
        });
        assert_eq!(
            redact_arguments(&v),
            json!({
                "url": "https://example.com",
                "api_key": "***",
                "headers": {"Authorization": "***", "Accept": "text/html"},
                "items": [{"GITHUB_TOKEN": "***"}, {"password2": "***"}, "plain"],
                "client_secret": "***",
            })
        );
    }

    #[test]
    fn registered_secret_values_are_masked_anywhere() {
        let secret = "zz-audit-test-secret-value-42";
        zocalo_llm::redact::register(&zocalo_core::Secret::new(secret));
        let v = json!({"command": format!("curl -H 'X: {secret}' host")});
        let out = redact_arguments(&v).to_string();
        assert!(!out.contains(secret), "{out}");
        assert!(out.contains(zocalo_llm::redact::MASK), "{out}");
        assert!(!excerpt(&format!("got {secret}")).contains(secret));
    }

    #[test]
    fn long_strings_and_nul_are_tamed() {
        let v = json!({"content": "é".repeat(5000), "nul": "a\0b"});
        let out = redact_arguments(&v);
        let content = out["content"].as_str().unwrap();
        assert!(content.chars().count() < MAX_ARGUMENT_CHARS + 40);
        assert!(content.ends_with("more bytes]"), "{content}");
        assert_eq!(out["nul"], "a\u{FFFD}b");
        assert_eq!(excerpt("short"), "short");
    }
}
