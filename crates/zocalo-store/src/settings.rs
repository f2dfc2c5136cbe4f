//! What a conversation keeps between asks (`conversation_settings`, migration 0070): the
//! persona it is asked as and a model chosen for it. `ask --persona NAME` and a channel's
//! `/persona NAME` set the persona once; later asks in the conversation keep it until another
//! is chosen.

use zocalo_core::ConversationId;

use crate::{with_pool, Store, StoreError};

const SETTINGS_GET: &str =
    "SELECT persona, model FROM conversation_settings WHERE conversation_id = $1";
const PERSONA_SET: &str = "INSERT INTO conversation_settings (conversation_id, persona, updated_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (conversation_id) DO UPDATE SET persona = excluded.persona, updated_at = excluded.updated_at";
const MODEL_SET: &str = "INSERT INTO conversation_settings (conversation_id, model, updated_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (conversation_id) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at";
const KEY_DELETE: &str = "DELETE FROM conversation_keys WHERE key = $1";

/// A conversation's kept choices (both None when nothing was chosen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationSettings {
    pub persona: Option<String>,
    /// `provider:model`, `provider` or `model`, as `ask --model` takes it.
    pub model: Option<String>,
}

impl Store {
    pub async fn conversation_settings(
        &self,
        id: &ConversationId,
    ) -> Result<ConversationSettings, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = with_pool!(self.pool(), |p| {
            sqlx::query_as(SETTINGS_GET)
                .bind(id.as_str())
                .fetch_optional(p)
                .await
        })?;
        Ok(row
            .map(|(persona, model)| ConversationSettings { persona, model })
            .unwrap_or_default())
    }

    /// Keeps `persona` (None: none) for the conversation's later asks. The conversation must
    /// exist (a foreign key).
    pub async fn set_conversation_persona(
        &self,
        id: &ConversationId,
        persona: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_setting(PERSONA_SET, id, persona).await
    }

    /// Keeps `model` (None: the default again) for the conversation's later asks.
    pub async fn set_conversation_model(
        &self,
        id: &ConversationId,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_setting(MODEL_SET, id, model).await
    }

    async fn set_setting(
        &self,
        sql: &str,
        id: &ConversationId,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self.pool(), |p| sqlx::query(sql)
            .bind(id.as_str())
            .bind(value)
            .bind(now)
            .execute(p)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Forgets which conversation `key` points at (a channel's `/new`): the conversation stays,
    /// the key's next use starts a new one. False when the key was not in use.
    pub async fn release_conversation_key(&self, key: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self.pool(), |p| sqlx::query(KEY_DELETE)
            .bind(key)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
