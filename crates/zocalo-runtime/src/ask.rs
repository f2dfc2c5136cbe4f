//! One ask, as every front end makes it: the CLI's `ask` and `chat`, the library API, the
//! Python package. The server's REST and `/v1` paths use the same pieces (the shared ask loop
//! and [`Runtime::conversation_for`]).

use zocalo_agent::{AskEvent, AskOutcome, AskRequest};
use zocalo_core::ConversationId;

use crate::errors::usage;
use crate::{ModelChoice, Runtime};

/// What to ask, of which model, in which conversation.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    pub message: String,
    /// Continue this conversation (an id an earlier ask returned).
    pub conversation: Option<ConversationId>,
    /// Or: one conversation per caller-chosen key (`telegram:42`), created on first use.
    pub conv_key: Option<String>,
    pub model: ModelChoice,
}

impl Ask {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

impl Runtime {
    /// The conversation an ask continues: `conversation`, else the one of `conv_key` (created
    /// on first use), else none (a new one). Both at once is a usage error.
    pub async fn conversation_for(
        &self,
        conversation: Option<ConversationId>,
        conv_key: Option<&str>,
    ) -> anyhow::Result<Option<ConversationId>> {
        match (conversation, conv_key) {
            (Some(_), Some(_)) => Err(usage(
                "give a conversation id or a conversation key, not both",
            )),
            (Some(id), None) => Ok(Some(id)),
            (None, Some(key)) => {
                let store = self.store().await?;
                Ok(Some(store.conversation_for_key(key).await?.0))
            }
            (None, None) => Ok(None),
        }
    }

    /// Asks: the answer streams through `on_event` as it comes; the whole turn is stored in
    /// one transaction at the end. Everything the caller gave is checked before the provider
    /// is called.
    pub async fn ask(
        &self,
        ask: Ask,
        on_event: &mut (dyn FnMut(AskEvent) + Send),
    ) -> anyhow::Result<AskOutcome> {
        if ask.message.trim().is_empty() {
            return Err(usage("the message is empty: say something"));
        }
        if let Some(key) = &ask.conv_key {
            if ask.conversation.is_some() {
                return Err(usage(
                    "give a conversation id or a conversation key, not both",
                ));
            }
            if key.trim().is_empty() {
                return Err(usage("the conversation key is empty"));
            }
        }
        let (provider, model) = self.provider(&ask.model)?;
        let store = self.store().await?;
        let conversation = self
            .conversation_for(ask.conversation, ask.conv_key.as_deref())
            .await?;
        let asker = self.asker(&store, provider, !ask.model.no_tools);
        let request = AskRequest {
            conversation,
            message: ask.message,
            model,
        };
        Ok(asker.ask(request, on_event).await?)
    }
}
