//! Token usage as the messages recorded it: every assistant message keeps the input and output
//! tokens its model call used, with the provider and model that answered.
//!
//! [`Store::usage`] groups them for `zocalo usage`; [`Store::conversation_usage`] and
//! [`Store::usage_since`] give the totals the ask loop's budgets are checked against. Only
//! committed turns count: an ask that failed stored nothing, and the calls that summarise old
//! turns (context compression) are not messages.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zocalo_core::{ConversationId, Usage};

use crate::ts::Ts;
use crate::{with_pool, Backend, Store, StoreError};

/// How [`Store::usage`] groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageBy {
    /// The provider that answered (`openai`, `groq`, ...).
    Provider,
    /// The model that answered.
    Model,
    /// The UTC day of the call, `YYYY-MM-DD`.
    Day,
    /// The automation whose runs made the call (their conversation is `automation:NAME`);
    /// calls outside automations are not counted in this grouping.
    Automation,
}

impl UsageBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Provider => "provider",
            UsageBy::Model => "model",
            UsageBy::Day => "day",
            UsageBy::Automation => "automation",
        }
    }
}

impl FromStr for UsageBy {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(UsageBy::Provider),
            "model" => Ok(UsageBy::Model),
            "day" => Ok(UsageBy::Day),
            "automation" => Ok(UsageBy::Automation),
            other => Err(StoreError::Invalid(format!(
                "cannot group usage by {other:?}: use provider, model, day or automation"
            ))),
        }
    }
}

/// The start of a usage window, as people write it: a UTC day (`2026-03-08`) or an RFC 3339
/// instant.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, StoreError> {
    if let Some(t) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            StoreError::Invalid(format!(
                "since {s:?}: expected a day (2026-03-08) or an RFC 3339 instant"
            ))
        })
}

/// One group of [`Store::usage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The provider, the model or the day (`YYYY-MM-DD`, UTC); `(unknown)` for rows that
    /// did not record it (messages older than the provider column).
    pub key: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Model calls (assistant messages with usage).
    pub calls: u64,
}

/// Which messages count: the ones a model call wrote, with its usage.
const WITH_USAGE: &str = "(input_tokens IS NOT NULL OR output_tokens IS NOT NULL)";
const SUMS: &str = "CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT)";

impl Store {
    /// Tokens and calls grouped `by`, ordered by key, counting messages created at or after
    /// `since` (all of them when `None`).
    pub async fn usage(
        &self,
        by: UsageBy,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let key = match (by, self.backend()) {
            (UsageBy::Provider, _) => "COALESCE(m.provider, '(unknown)')",
            (UsageBy::Model, _) => "COALESCE(m.model, '(unknown)')",
            // Text "2026-03-08T07:30:00.000000Z" on SQLite; timestamptz on Postgres, whose
            // session zone need not be UTC.
            (UsageBy::Day, Backend::Sqlite) => "substr(m.created_at, 1, 10)",
            (UsageBy::Day, Backend::Postgres) => {
                "to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            // After "automation:".
            (UsageBy::Automation, _) => "substr(k.key, 12)",
        };
        let from = match by {
            UsageBy::Automation => {
                "messages m JOIN conversation_keys k ON k.conversation_id = m.conversation_id \
                 AND k.key LIKE 'automation:%'"
            }
            _ => "messages m",
        };
        let filter = if since.is_some() {
            " AND m.created_at >= $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {key} AS key, {SUMS}, COUNT(*) FROM {from} \
             WHERE {WITH_USAGE}{filter} GROUP BY 1 ORDER BY 1"
        );
        let rows: Vec<(String, i64, i64, i64)> = with_pool!(self.pool(), |p| {
            let q = sqlx::query_as(&sql);
            let q = match since {
                Some(t) => q.bind(Ts(t)),
                None => q,
            };
            q.fetch_all(p).await
        })?;
        rows.into_iter()
            .map(|(key, input, output, calls)| {
                Ok(UsageRow {
                    key,
                    input_tokens: count(input)?,
                    output_tokens: count(output)?,
                    calls: count(calls)?,
                })
            })
            .collect()
    }

    /// Every token the conversation's stored messages used.
    pub async fn conversation_usage(&self, id: &ConversationId) -> Result<Usage, StoreError> {
        let sql = format!("SELECT {SUMS} FROM messages WHERE conversation_id = $1");
        let (input, output): (i64, i64) = with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql).bind(id.as_str()).fetch_one(p).await
        })?;
        Ok(Usage {
            input_tokens: count(input)?,
            output_tokens: count(output)?,
        })
    }

    /// Every token used by messages created at or after `since`, in all conversations.
    pub async fn usage_since(&self, since: DateTime<Utc>) -> Result<Usage, StoreError> {
        let sql = format!("SELECT {SUMS} FROM messages WHERE {WITH_USAGE} AND created_at >= $1");
        let (input, output): (i64, i64) = with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql).bind(Ts(since)).fetch_one(p).await
        })?;
        Ok(Usage {
            input_tokens: count(input)?,
            output_tokens: count(output)?,
        })
    }
}

fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative token sum {n}")))
}
