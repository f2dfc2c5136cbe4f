//! Conversations and their messages.
//!
//! A conversation is a row plus an ordered list of messages numbered 1, 2, 3, … (`seq`). The
//! ask loop appends a whole turn (user message, tool calls and results, final answer) with
//! [`Store::append_turn`] in one transaction, so a failed call leaves no half answer behind.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use zocalo_core::{ConversationId, Message, MessageId, Role, ToolCall, Usage};

use crate::ts::{self, Ts};
use crate::{with_pool, Store, StoreError};

/// A conversation as listed (`conversations list --json` prints these).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(rename = "messages")]
    pub message_count: i64,
}

/// A message to append, with what produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub message: Message,
    /// The model that wrote an assistant message.
    pub model: Option<String>,
    /// Tokens the call that produced this message used.
    pub usage: Option<Usage>,
    /// The provider that wrote an assistant message (the one that answered, when a fallback
    /// chain moved past the first choice).
    pub provider: Option<String>,
}

impl NewMessage {
    /// A message with no model or usage attached (user and tool messages).
    pub fn plain(message: Message) -> Self {
        Self {
            message,
            model: None,
            usage: None,
            provider: None,
        }
    }
}

impl From<Message> for NewMessage {
    fn from(message: Message) -> Self {
        Self::plain(message)
    }
}

/// A stored message (`conversations show --json` prints these).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredMessage {
    pub id: MessageId,
    #[serde(skip)]
    pub conversation_id: ConversationId,
    /// Position in the conversation, from 1.
    pub seq: i64,
    pub message: Message,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// The provider that wrote an assistant message; `None` for other roles and old rows.
    pub provider: Option<String>,
    pub created_at: DateTime<Utc>,
}

const CONVERSATION_GET: &str = include_str!("sql/conversation_get.sql");
const CONVERSATION_LIST: &str = include_str!("sql/conversation_list.sql");
const CONVERSATION_UPSERT: &str = include_str!("sql/conversation_upsert.sql");
const CONVERSATION_TOUCH: &str = include_str!("sql/conversation_touch.sql");
const CONVERSATION_KEY_GET: &str = include_str!("sql/conversation_key_get.sql");
const CONVERSATION_KEY_INSERT: &str = include_str!("sql/conversation_key_insert.sql");
const CONVERSATION_DELETE: &str = "DELETE FROM conversations WHERE id = $1";
const MESSAGE_INSERT_INTO: &str = include_str!("sql/message_insert_into.sql");
const MESSAGE_MAX_SEQ: &str =
    "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = $1";
const MESSAGES_ALL: &str = concat!(
    include_str!("sql/message_select.sql"),
    "WHERE conversation_id = $1 ORDER BY seq"
);
const MESSAGES_LAST: &str = concat!(
    include_str!("sql/message_select.sql"),
    "WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
);

impl Store {
    pub async fn get_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let row: Option<ConversationRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(CONVERSATION_GET)
                .bind(id.as_str())
                .fetch_optional(p)
                .await
        })?;
        row.map(ConversationRow::decode).transpose()
    }

    /// The conversation of a caller-chosen key (`telegram:42`, `discord:7`), created on first
    /// use with the key as its title. Returns the id and whether this call created it.
    /// Concurrent first uses of one key agree on one conversation (the loser's insert is
    /// rolled back, leaving nothing behind).
    pub async fn conversation_for_key(
        &self,
        key: &str,
    ) -> Result<(ConversationId, bool), StoreError> {
        check_key(key)?;
        if let Some(id) = self.conversation_of_key(key).await? {
            return Ok((id, false));
        }
        let id = ConversationId::new();
        let now = ts::now();
        let created = with_pool!(self.pool(), |p| {
            async {
                let mut tx = p.begin().await?;
                sqlx::query(CONVERSATION_UPSERT)
                    .bind(id.as_str())
                    .bind(key)
                    .bind(Ts(now))
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query(CONVERSATION_KEY_INSERT)
                    .bind(key)
                    .bind(id.as_str())
                    .bind(Ts(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    tx.commit().await?;
                    Ok(true)
                } else {
                    tx.rollback().await?;
                    Ok::<bool, sqlx::Error>(false)
                }
            }
            .await
        })?;
        if created {
            return Ok((id, true));
        }
        match self.conversation_of_key(key).await? {
            Some(id) => Ok((id, false)),
            // The winner's conversation was deleted in between: rare; try once more.
            None => Box::pin(self.conversation_for_key(key)).await,
        }
    }

    /// The conversation a key points at, if it was used before.
    pub async fn conversation_of_key(
        &self,
        key: &str,
    ) -> Result<Option<ConversationId>, StoreError> {
        check_key(key)?;
        let id: Option<String> = with_pool!(self.pool(), |p| {
            sqlx::query_scalar(CONVERSATION_KEY_GET)
                .bind(key)
                .fetch_optional(p)
                .await
        })?;
        id.map(|s| {
            ConversationId::from_str(&s)
                .map_err(|_| StoreError::Corrupt(format!("conversation_keys: bad id {s:?}")))
        })
        .transpose()
    }

    /// The `limit` most recently updated conversations, newest first.
    pub async fn list_conversations(&self, limit: i64) -> Result<Vec<Conversation>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<ConversationRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(CONVERSATION_LIST)
                .bind(limit)
                .fetch_all(p)
                .await
        })?;
        rows.into_iter().map(ConversationRow::decode).collect()
    }

    /// Deletes a conversation and its messages; false if there was none.
    pub async fn delete_conversation(&self, id: &ConversationId) -> Result<bool, StoreError> {
        let affected = with_pool!(self.pool(), |p| {
            sqlx::query(CONVERSATION_DELETE)
                .bind(id.as_str())
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(affected > 0)
    }

    /// Every message of the conversation in order (empty for an unknown id).
    pub async fn messages(&self, id: &ConversationId) -> Result<Vec<StoredMessage>, StoreError> {
        let rows: Vec<MessageRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(MESSAGES_ALL)
                .bind(id.as_str())
                .fetch_all(p)
                .await
        })?;
        rows.into_iter().map(MessageRow::decode).collect()
    }

    /// The last `limit` messages, in chronological order.
    pub async fn recent_messages(
        &self,
        id: &ConversationId,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<MessageRow> = with_pool!(self.pool(), |p| {
            sqlx::query_as(MESSAGES_LAST)
                .bind(id.as_str())
                .bind(limit)
                .fetch_all(p)
                .await
        })?;
        let mut messages = rows
            .into_iter()
            .map(MessageRow::decode)
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// In ONE transaction: creates the conversation if it does not exist (with `title`; an
    /// existing conversation without a title gets it), appends `messages` numbered on from the
    /// current last `seq`, and bumps `updated_at`. All or nothing.
    ///
    /// Concurrent appends to one conversation serialize (SQLite's write lock, a row lock on
    /// Postgres) and each gets its own consecutive run of `seq` numbers.
    pub async fn append_turn(
        &self,
        id: &ConversationId,
        title: Option<&str>,
        messages: &[NewMessage],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut turn = PreparedTurn::new(id.clone(), title.map(str::to_owned), messages)?;
        self.append_turns(std::slice::from_mut(&mut turn)).await?;
        Ok(turn.stored)
    }

    /// [`Store::append_turn`] of every turn, in ONE transaction (see [`TurnWriter`]).
    pub async fn append_turns(&self, turns: &mut [PreparedTurn]) -> Result<(), StoreError> {
        with_pool!(self.pool(), |p| {
            async {
                let mut tx = p.begin().await?;
                (*tx).append_turns(turns).await?;
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }
}

/// Rows per multi-row INSERT of conversations (4 parameters each).
const CONVERSATION_CHUNK: usize = 500;
/// Rows per multi-row INSERT of messages (13 parameters each: 6,500 per statement, under both
/// SQLite's 32,766 and Postgres' 65,535).
const MESSAGE_CHUNK: usize = 500;

/// A turn checked and stamped, ready to be written: by [`Store::append_turn`], or by
/// [`TurnWriter::append_turns`] inside a transaction of the caller's (many turns and the
/// caller's own rows committed together, as the sub-agent spawner does).
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedTurn {
    id: ConversationId,
    title: Option<String>,
    now: DateTime<Utc>,
    /// `seq` is 0 until written.
    stored: Vec<StoredMessage>,
    /// (input, output) tokens of each message.
    tokens: Vec<(Option<i64>, Option<i64>)>,
}

impl PreparedTurn {
    /// `messages` for conversation `id` (created with `title` if it does not exist), stamped
    /// now. Fails only on a token count out of range.
    pub fn new(
        id: ConversationId,
        title: Option<String>,
        messages: &[NewMessage],
    ) -> Result<Self, StoreError> {
        let now = ts::now();
        let mut stored = Vec::with_capacity(messages.len());
        let mut tokens = Vec::with_capacity(messages.len());
        for new in messages {
            tokens.push(match new.usage {
                Some(u) => (
                    Some(to_i64(u.input_tokens)?),
                    Some(to_i64(u.output_tokens)?),
                ),
                None => (None, None),
            });
            stored.push(StoredMessage {
                id: MessageId::new(),
                conversation_id: id.clone(),
                seq: 0,
                message: without_nul(&new.message),
                model: new.model.clone(),
                usage: new.usage,
                provider: new.provider.clone(),
                created_at: now,
            });
        }
        Ok(Self {
            id,
            title,
            now,
            stored,
            tokens,
        })
    }

    pub fn conversation_id(&self) -> &ConversationId {
        &self.id
    }

    /// The messages as stored (their `seq` set once written).
    pub fn messages(&self) -> &[StoredMessage] {
        &self.stored
    }
}

/// Writes turns on a connection inside the caller's transaction (`&mut *tx` of either
/// backend), so they commit or roll back with the caller's other writes.
pub trait TurnWriter {
    /// Appends every turn as [`Store::append_turn`] would, numbering each turn's messages on
    /// from its conversation's last `seq` (and setting them in `turns`). New conversations
    /// and all the messages go in multi-row INSERTs: a thousand one-turn conversations are a
    /// handful of statements, not thousands. Turns of one conversation are appended in order.
    fn append_turns<'a>(
        &'a mut self,
        turns: &'a mut [PreparedTurn],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}

macro_rules! turn_writer {
    ($conn:ty) => {
        impl TurnWriter for $conn {
            fn append_turns<'a>(
                &'a mut self,
                turns: &'a mut [PreparedTurn],
            ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'a {
                async move {
                    let conn = self;
                    // A conversation named twice: its later turn must number on from the earlier
                    // one, so the turns go in runs of distinct conversations, one after another.
                    let mut rest = turns;
                    while !rest.is_empty() {
                        let n = {
                            let mut seen = std::collections::HashSet::with_capacity(rest.len());
                            rest.iter()
                                .take_while(|t| seen.insert(t.id.as_str()))
                                .count()
                        };
                        let (turns, tail) = std::mem::take(&mut rest).split_at_mut(n);
                        rest = tail;
                        // The first statement is a write, so SQLite takes its write lock here (waiting
                        // on busy_timeout) instead of failing a read-to-write upgrade later; Postgres
                        // waits here on a concurrent creator of the same id. RETURNING names the
                        // conversations this created: their turns start at seq 1 and need no touch.
                        let mut created = std::collections::HashSet::with_capacity(turns.len());
                        for chunk in turns.chunks(CONVERSATION_CHUNK) {
                            let mut q = sqlx::QueryBuilder::new(
                                "INSERT INTO conversations (id, title, created_at, updated_at) ",
                            );
                            q.push_values(chunk, |mut row, t| {
                                row.push_bind(t.id.as_str())
                                    .push_bind(t.title.as_deref())
                                    .push_bind(Ts(t.now))
                                    .push_bind(Ts(t.now));
                            });
                            q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
                            let ids: Vec<String> = q
                                .build_query_scalar::<String>()
                                .fetch_all(&mut *conn)
                                .await?;
                            created.extend(ids);
                        }
                        for t in turns.iter_mut() {
                            let last: i64 = if created.contains(t.id.as_str()) {
                                0
                            } else {
                                sqlx::query(CONVERSATION_TOUCH)
                                    .bind(t.id.as_str())
                                    .bind(Ts(t.now))
                                    .bind(t.title.as_deref())
                                    .execute(&mut *conn)
                                    .await?;
                                sqlx::query_scalar(MESSAGE_MAX_SEQ)
                                    .bind(t.id.as_str())
                                    .fetch_one(&mut *conn)
                                    .await?
                            };
                            for (i, m) in t.stored.iter_mut().enumerate() {
                                m.seq = last + 1 + i as i64;
                            }
                        }
                        let rows: Vec<(&StoredMessage, &(Option<i64>, Option<i64>))> = turns
                            .iter()
                            .flat_map(|t| t.stored.iter().zip(&t.tokens))
                            .collect();
                        for chunk in rows.chunks(MESSAGE_CHUNK) {
                            let mut q = sqlx::QueryBuilder::new(MESSAGE_INSERT_INTO);
                            q.push_values(chunk, |mut row, (m, (input, output))| {
                                let msg = &m.message;
                                let calls =
                                    (!msg.tool_calls.is_empty()).then_some(Json(&msg.tool_calls));
                                row.push_bind(m.id.as_str())
                                    .push_bind(m.conversation_id.as_str())
                                    .push_bind(m.seq)
                                    .push_bind(msg.role.as_str())
                                    .push_bind(msg.content.as_str())
                                    .push_bind(calls)
                                    .push_bind(msg.tool_call_id.as_deref())
                                    .push_bind(msg.is_error)
                                    .push_bind(m.model.as_deref())
                                    .push_bind(*input)
                                    .push_bind(*output)
                                    .push_bind(Ts(m.created_at))
                                    .push_bind(m.provider.as_deref());
                            });
                            q.build().execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                }
            }
        }
    };
}

turn_writer!(sqlx::SqliteConnection);
turn_writer!(sqlx::PgConnection);

/// PostgreSQL `text` and `jsonb` cannot hold U+0000, so one NUL from a model or a tool would
/// fail the whole turn there. Store it as U+FFFD on both backends, so they keep the same data.
fn without_nul(m: &Message) -> Message {
    fn clean(s: &str) -> String {
        s.replace('\0', "\u{FFFD}")
    }
    fn clean_json(v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(clean(s)),
            Value::Array(a) => Value::Array(a.iter().map(clean_json).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (clean(k), clean_json(v))).collect())
            }
            other => other.clone(),
        }
    }
    let mut m = m.clone();
    if m.content.contains('\0') {
        m.content = clean(&m.content);
    }
    m.tool_call_id = m.tool_call_id.as_deref().map(clean);
    for call in &mut m.tool_calls {
        call.id = clean(&call.id);
        call.name = clean(&call.name);
        call.arguments = clean_json(&call.arguments);
    }
    m
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("token count {n} out of range")))
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: String,
    title: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    message_count: i64,
}

impl ConversationRow {
    fn decode(self) -> Result<Conversation, StoreError> {
        Ok(Conversation {
            id: conversation_id(&self.id)?,
            title: self.title,
            created_at: self.created_at,
            updated_at: self.updated_at,
            message_count: self.message_count,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    seq: i64,
    role: String,
    content: String,
    tool_calls: Option<Json<Vec<ToolCall>>>,
    tool_call_id: Option<String>,
    is_error: bool,
    model: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    created_at: DateTime<Utc>,
    provider: Option<String>,
}

impl MessageRow {
    fn decode(self) -> Result<StoredMessage, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("message {}: {what}", self.id));
        let role = Role::parse(&self.role)
            .ok_or_else(|| corrupt(format!("unknown role {:?}", self.role)))?;
        let tokens = |n: Option<i64>| -> Result<u64, StoreError> {
            u64::try_from(n.unwrap_or(0))
                .map_err(|_| corrupt(format!("negative token count {n:?}")))
        };
        let usage = match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (i, o) => Some(Usage {
                input_tokens: tokens(i)?,
                output_tokens: tokens(o)?,
            }),
        };
        Ok(StoredMessage {
            id: MessageId::from_str(&self.id).map_err(|e| corrupt(e.to_string()))?,
            conversation_id: conversation_id(&self.conversation_id)?,
            seq: self.seq,
            message: Message {
                role,
                content: self.content,
                tool_calls: self.tool_calls.map(|j| j.0).unwrap_or_default(),
                tool_call_id: self.tool_call_id,
                is_error: self.is_error,
            },
            model: self.model,
            usage,
            provider: self.provider,
            created_at: self.created_at,
        })
    }
}

pub(crate) fn conversation_id(s: &str) -> Result<ConversationId, StoreError> {
    ConversationId::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Longest conversation key, in bytes.
pub const MAX_CONVERSATION_KEY: usize = 256;

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.trim().is_empty() {
        return Err(StoreError::Invalid(
            "the conversation key is empty: use something like telegram:42".into(),
        ));
    }
    if key.len() > MAX_CONVERSATION_KEY {
        return Err(StoreError::Invalid(format!(
            "the conversation key is {} bytes long; at most {MAX_CONVERSATION_KEY}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "the conversation key has a control character".into(),
        ));
    }
    Ok(())
}
