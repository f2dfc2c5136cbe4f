//! Every inbound message once (`channel_inbox`, migration 0070), and where each poller
//! resumes (`channel_cursors`).
//!
//! A poller records a batch and its new resume position in ONE transaction
//! ([`Inbox::receive`]): a crash before the commit takes the batch again from the old
//! position, a crash after it never takes it again. A message is then `received` until its
//! answer is made, `answered` (the answer is kept here) until the reply went out, then `sent`.
//! After a restart the runtime answers what is still `received` and sends what is
//! `answered`, so a message whose answer was being made when the process died (kill -9) is
//! answered once. The window left: a reply that went out just before a crash, before `sent`
//! was written, goes out again.

use serde::Serialize;
use serde_json::Value;
use zocalo_store::{with_pool, Store};

use crate::ChannelError;

const INSERT: &str = "INSERT INTO channel_inbox \
    (id, channel, external_id, sender, conv_key, text, reply_to, state, attempts, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'received', 0, $8, $8) \
    ON CONFLICT (channel, external_id) DO NOTHING";
const CURSOR_SET: &str =
    "INSERT INTO channel_cursors (channel, resume_from, updated_at, last_error, error_at) \
    VALUES ($1, $2, $3, NULL, NULL) \
    ON CONFLICT (channel) DO UPDATE SET resume_from = excluded.resume_from, \
    updated_at = excluded.updated_at, last_error = NULL, error_at = NULL";
const ERROR_SET: &str = "INSERT INTO channel_cursors (channel, resume_from, updated_at, last_error, error_at) \
    VALUES ($1, NULL, $2, $3, $2) \
    ON CONFLICT (channel) DO UPDATE SET last_error = excluded.last_error, error_at = excluded.error_at";
const CURSOR_GET: &str =
    "SELECT resume_from, last_error, error_at FROM channel_cursors WHERE channel = $1";
const COLUMNS: &str = "id, channel, external_id, sender, conv_key, text, reply_to, state, answer, error, attempts, created_at";
const SET_STATE: &str = "UPDATE channel_inbox SET state = $2, answer = COALESCE($3, answer), \
    error = $4, updated_at = $5 WHERE id = $1";
const ATTEMPT: &str =
    "UPDATE channel_inbox SET attempts = attempts + 1, updated_at = $2 WHERE id = $1 RETURNING attempts";
const COUNTS: &str = "SELECT state, COUNT(*) FROM channel_inbox WHERE channel = $1 GROUP BY state";

/// Longest inbound text kept, in bytes (a bigger mail is cut, and says so).
pub const MAX_TEXT: usize = 64 * 1024;

/// A message as a transport hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    /// The channel's own id for it (Telegram's update_id, the Message-ID): unique per channel.
    pub external_id: String,
    /// Who sent it (a Telegram user id, a mail address).
    pub sender: String,
    /// The conversation it is answered in (`telegram:<chat id>`, `email:<address>`).
    pub conv_key: String,
    pub text: String,
    /// What the transport needs to reply (chat id, message id; subject, references).
    pub reply_to: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxState {
    Received,
    Answered,
    Sent,
    Failed,
}

impl InboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::Received => "received",
            InboxState::Answered => "answered",
            InboxState::Sent => "sent",
            InboxState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, ChannelError> {
        Ok(match s {
            "received" => InboxState::Received,
            "answered" => InboxState::Answered,
            "sent" => InboxState::Sent,
            "failed" => InboxState::Failed,
            other => {
                return Err(ChannelError::Store(zocalo_store::StoreError::Corrupt(
                    format!("channel_inbox: unknown state {other:?}"),
                )))
            }
        })
    }
}

/// A recorded inbound message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboxMessage {
    pub id: String,
    pub channel: String,
    pub external_id: String,
    pub sender: String,
    pub conv_key: String,
    pub text: String,
    pub reply_to: Value,
    pub state: InboxState,
    pub answer: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    // reply_to: JSON text (a TEXT column on both backends; sqlx's Json is JSONB on Postgres).
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn decode(r: Row) -> Result<InboxMessage, ChannelError> {
    let reply_to = serde_json::from_str(&r.6).map_err(|e| {
        ChannelError::Store(zocalo_store::StoreError::Corrupt(format!(
            "channel_inbox {}: reply_to is not JSON: {e}",
            r.0
        )))
    })?;
    Ok(InboxMessage {
        id: r.0,
        channel: r.1,
        external_id: r.2,
        sender: r.3,
        conv_key: r.4,
        text: r.5,
        reply_to,
        state: InboxState::parse(&r.7)?,
        answer: r.8,
        error: r.9,
        attempts: r.10,
        created_at: r.11,
    })
}

/// A poller's resume position and its last error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub resume_from: Option<String>,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub error_at: Option<i64>,
}

/// The inbox on a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    store: Store,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary, saying so.
fn capped(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... cut: the message was {} bytes]",
        &text[..end],
        text.len()
    )
}

impl Inbox {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records `messages` (those already recorded are skipped) and, in the same
    /// transaction, moves `channel`'s resume position to `resume_from` and clears its error.
    /// Returns how many were new.
    pub async fn receive(
        &self,
        channel: &str,
        messages: &[Inbound],
        resume_from: Option<&str>,
    ) -> Result<usize, ChannelError> {
        let now = now_ms();
        let new = with_pool!(self.store.pool(), |p| {
            async {
                let mut tx = p.begin().await?;
                let mut new = 0;
                for m in messages {
                    let reply_to = m.reply_to.to_string();
                    let id = zocalo_core::ids::new_prefixed("inb");
                    new += sqlx::query(INSERT)
                        .bind(&id)
                        .bind(channel)
                        .bind(&m.external_id)
                        .bind(&m.sender)
                        .bind(&m.conv_key)
                        .bind(capped(&m.text))
                        .bind(&reply_to)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected() as usize;
                }
                if let Some(r) = resume_from {
                    sqlx::query(CURSOR_SET)
                        .bind(channel)
                        .bind(r)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok::<usize, sqlx::Error>(new)
            }
            .await
        })?;
        Ok(new)
    }

    /// Where `channel`'s poller resumes, and its last error.
    pub async fn cursor(&self, channel: &str) -> Result<Cursor, ChannelError> {
        let row: Option<(Option<String>, Option<String>, Option<i64>)> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(CURSOR_GET)
                .bind(channel)
                .fetch_optional(p)
                .await)?;
        Ok(row
            .map(|(resume_from, last_error, error_at)| Cursor {
                resume_from,
                last_error,
                error_at,
            })
            .unwrap_or_default())
    }

    /// Records the poller's last error (shown by `channels status`).
    pub async fn poll_failed(&self, channel: &str, error: &str) -> Result<(), ChannelError> {
        with_pool!(self.store.pool(), |p| sqlx::query(ERROR_SET)
            .bind(channel)
            .bind(now_ms())
            .bind(error)
            .execute(p)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Messages of `channel` (a prefix such as `hook:` takes every hook) not answered or not
    /// sent yet, oldest first.
    pub async fn open(&self, channel: &str, limit: i64) -> Result<Vec<InboxMessage>, ChannelError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM channel_inbox WHERE (channel = $1 OR ($2 AND channel LIKE $1 || '%')) \
             AND state IN ('received', 'answered') ORDER BY id LIMIT $3"
        );
        let prefix = channel.ends_with(':');
        let rows: Vec<Row> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .bind(channel)
            .bind(prefix)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// The `limit` latest messages of `channel`, newest first.
    pub async fn recent(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<InboxMessage>, ChannelError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM channel_inbox WHERE channel = $1 ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<Row> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .bind(channel)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<InboxMessage>, ChannelError> {
        let sql = format!("SELECT {COLUMNS} FROM channel_inbox WHERE id = $1");
        let row: Option<Row> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        row.map(decode).transpose()
    }

    /// The message's id, if `external_id` was recorded on `channel`.
    pub async fn find(
        &self,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<String>, ChannelError> {
        let id: Option<String> = with_pool!(self.store.pool(), |p| sqlx::query_scalar(
            "SELECT id FROM channel_inbox WHERE channel = $1 AND external_id = $2"
        )
        .bind(channel)
        .bind(external_id)
        .fetch_optional(p)
        .await)?;
        Ok(id)
    }

    /// Counts one more try at answering; returns the tries so far.
    pub async fn attempt(&self, id: &str) -> Result<i64, ChannelError> {
        let n: i64 = with_pool!(self.store.pool(), |p| sqlx::query_scalar(ATTEMPT)
            .bind(id)
            .bind(now_ms())
            .fetch_one(p)
            .await)?;
        Ok(n)
    }

    /// The answer is made (kept here until the reply went out).
    pub async fn answered(&self, id: &str, answer: &str) -> Result<(), ChannelError> {
        self.set(id, InboxState::Answered, Some(answer), None).await
    }

    /// The reply went out.
    pub async fn sent(&self, id: &str) -> Result<(), ChannelError> {
        self.set(id, InboxState::Sent, None, None).await
    }

    /// Given up on, with why.
    pub async fn failed(&self, id: &str, error: &str) -> Result<(), ChannelError> {
        self.set(id, InboxState::Failed, None, Some(error)).await
    }

    async fn set(
        &self,
        id: &str,
        state: InboxState,
        answer: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), ChannelError> {
        with_pool!(self.store.pool(), |p| sqlx::query(SET_STATE)
            .bind(id)
            .bind(state.as_str())
            .bind(answer)
            .bind(error)
            .bind(now_ms())
            .execute(p)
            .await
            .map(drop))?;
        Ok(())
    }

    /// How many messages of `channel` are in each state.
    pub async fn counts(&self, channel: &str) -> Result<Vec<(String, i64)>, ChannelError> {
        let rows: Vec<(String, i64)> = with_pool!(self.store.pool(), |p| sqlx::query_as(COUNTS)
            .bind(channel)
            .fetch_all(p)
            .await)?;
        Ok(rows)
    }
}
