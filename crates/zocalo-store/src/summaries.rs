//! Summaries of a conversation's oldest turns (context compression).
//!
//! When a conversation's history no longer fits the ask loop's token budget, the model writes
//! a summary of its oldest turns. The summary is stored here with the range of messages it
//! stands for (`1..=through_seq`); the messages themselves are never deleted. Each new summary
//! folds in the previous one, so the latest (highest `through_seq`) is the one in use.

use chrono::{DateTime, Utc};
use zocalo_core::ConversationId;

use crate::conversations::conversation_id;
use crate::ts::{self, Ts};
use crate::{with_pool, Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct ConversationSummary {
    pub conversation_id: ConversationId,
    /// The summary stands for messages `1..=through_seq`.
    pub through_seq: i64,
    pub text: String,
    /// The model that wrote it.
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
}

const SUMMARY_COLUMNS: &str =
    "SELECT conversation_id, through_seq, text, model, created_at FROM conversation_summaries ";
// Two processes summarising the same range race harmlessly: the later write wins.
const SUMMARY_UPSERT: &str = "INSERT INTO conversation_summaries \
     (conversation_id, through_seq, text, model, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (conversation_id, through_seq) \
     DO UPDATE SET text = excluded.text, model = excluded.model, created_at = excluded.created_at";

impl Store {
    /// The summary in use for the conversation: the one covering the most messages.
    pub async fn latest_summary(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationSummary>, StoreError> {
        let sql = format!(
            "{SUMMARY_COLUMNS}WHERE conversation_id = $1 ORDER BY through_seq DESC LIMIT 1"
        );
        let row: Option<SummaryRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql)
                .bind(id.as_str())
                .fetch_optional(p)
                .await
        })?;
        row.map(SummaryRow::decode).transpose()
    }

    /// Every summary written for the conversation, oldest (fewest messages) first.
    pub async fn summaries(
        &self,
        id: &ConversationId,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let sql = format!("{SUMMARY_COLUMNS}WHERE conversation_id = $1 ORDER BY through_seq");
        let rows: Vec<SummaryRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql).bind(id.as_str()).fetch_all(p).await
        })?;
        rows.into_iter().map(SummaryRow::decode).collect()
    }

    /// Stores the summary of messages `1..=through_seq` of an existing conversation (trimmed).
    /// The database refuses empty text, a non-positive `through_seq` and an unknown
    /// conversation.
    pub async fn save_summary(
        &self,
        id: &ConversationId,
        through_seq: i64,
        text: &str,
        model: Option<&str>,
    ) -> Result<ConversationSummary, StoreError> {
        let text = text.trim().replace('\0', "\u{FFFD}");
        let now = ts::now();
        with_pool!(self.pool(), |p| {
            sqlx::query(SUMMARY_UPSERT)
                .bind(id.as_str())
                .bind(through_seq)
                .bind(text.as_str())
                .bind(model)
                .bind(Ts(now))
                .execute(p)
                .await
                .map(drop)
        })?;
        Ok(ConversationSummary {
            conversation_id: id.clone(),
            through_seq,
            text,
            model: model.map(str::to_owned),
            created_at: now,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    conversation_id: String,
    through_seq: i64,
    text: String,
    model: Option<String>,
    created_at: DateTime<Utc>,
}

impl SummaryRow {
    fn decode(self) -> Result<ConversationSummary, StoreError> {
        Ok(ConversationSummary {
            conversation_id: conversation_id(&self.conversation_id)?,
            through_seq: self.through_seq,
            text: self.text,
            model: self.model,
            created_at: self.created_at,
        })
    }
}
