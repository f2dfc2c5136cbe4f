//! One ask, as every front end makes it: the CLI's `ask` and `chat`, the library API, the
//! Python package. The server's REST and `/v1` paths use the same pieces (the shared ask loop
//! and [`Runtime::conversation_for`]).

use std::sync::Arc;

use zocalo_agent::{
    Approvals, Approver, AskEvent, AskOptions, AskOutcome, AskRequest, TokenLimit, ToolPatterns,
};
use zocalo_core::ConversationId;

use crate::errors::usage;
use crate::{ModelChoice, Runtime};

/// What to ask, of which model, in which conversation, and who approves the tools that need
/// it.
#[derive(Clone, Default)]
pub struct Ask {
    pub message: String,
    /// Continue this conversation (an id an earlier ask returned).
    pub conversation: Option<ConversationId>,
    /// Or: one conversation per caller-chosen key (`telegram:42`), created on first use.
    pub conv_key: Option<String>,
    pub model: ModelChoice,
    /// `[personas.NAME]`: system prompt, offered tools, permissions, model. Kept by the
    /// conversation: its later asks use it until another is given.
    pub persona: Option<String>,
    /// The persona used when neither `persona` nor the conversation names one (a channel's
    /// configured persona); not kept by the conversation.
    pub fallback_persona: Option<String>,
    /// Tools (names or globs) approved in advance for this ask (`--allow`).
    pub allow: Vec<String>,
    /// Approve every tool whose decision is `ask` (`--yes`); never one that is `deny`.
    pub yes: bool,
    /// Who is asked when a tool needs approval (a terminal prompt, the server's approvals).
    /// None: nobody, so `ask` means deny (unattended).
    pub approver: Option<Arc<dyn Approver>>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("conversation", &self.conversation)
            .field("conv_key", &self.conv_key)
            .field("model", &self.model)
            .field("persona", &self.persona)
            .field("fallback_persona", &self.fallback_persona)
            .field("allow", &self.allow)
            .field("yes", &self.yes)
            .field("approver", &self.approver.is_some())
            .finish_non_exhaustive()
    }
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
    /// What an interactive front end (`chat`) checks before its first turn: the conversation
    /// exists, the persona and the `allow` patterns are valid. Returns the provider's name and
    /// the model that will answer.
    pub async fn check_ask(&self, ask: &Ask) -> anyhow::Result<(String, String)> {
        let (provider, model) = self.provider(&ask.model)?;
        let store = self.store().await?;
        if let Some(id) = &ask.conversation {
            if store.get_conversation(id).await?.is_none() {
                return Err(usage(format!("no conversation {id}")));
            }
        }
        let tools = !ask.model.no_tools;
        self.persona_asker(&store, provider.clone(), tools, ask.persona.as_deref())?;
        ToolPatterns::parse(&ask.allow)?;
        let model = model.unwrap_or_else(|| provider.default_model().to_owned());
        Ok((provider.name().to_owned(), model))
    }

    /// `conversations show ID`: every message of a conversation, in order; a malformed or
    /// unknown id is bad input.
    pub async fn conversation_messages(
        &self,
        id: &str,
    ) -> anyhow::Result<(ConversationId, Vec<zocalo_store::StoredMessage>)> {
        let id = crate::runtime::parse_conversation_id(id)?;
        let store = self.store().await?;
        if store.get_conversation(&id).await?.is_none() {
            return Err(usage(format!("no conversation {id}")));
        }
        let messages = store.messages(&id).await?;
        Ok((id, messages))
    }

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
        let allow = ToolPatterns::parse(&ask.allow)?;
        let store = self.store().await?;
        // What the conversation keeps: its persona, and a model chosen for it (`/model`).
        // Read without creating a keyed conversation: nothing is stored before every input
        // (persona, provider, model) is checked.
        let existing = match (&ask.conversation, &ask.conv_key) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(key)) => store.conversation_of_key(key).await?,
            (None, None) => None,
        };
        let kept = match &existing {
            Some(id) => store.conversation_settings(id).await?,
            None => Default::default(),
        };
        let persona = ask
            .persona
            .clone()
            .or(kept.persona.clone())
            .or(ask.fallback_persona.clone());
        let mut choice = ask.model.clone();
        if choice.provider.is_none() && choice.model.is_none() {
            if let Some(spec) = &kept.model {
                choice = ModelChoice {
                    no_tools: choice.no_tools,
                    ..self.model_spec(spec)?
                };
            }
        }
        if choice.model.is_none() {
            // A persona's model applies unless one is given.
            choice.model = persona
                .as_deref()
                .and_then(|p| self.config.personas.get(p))
                .and_then(|p| p.model.clone());
        }
        let (provider, model) = self.provider(&choice)?;
        let asker =
            self.persona_asker(&store, provider, !ask.model.no_tools, persona.as_deref())?;
        let conversation = self
            .conversation_for(ask.conversation.clone(), ask.conv_key.as_deref())
            .await?;
        let request = AskRequest {
            conversation,
            message: ask.message,
            model,
        };
        let approvals = match ask.approver {
            Some(a) => Approvals::with_approver(a),
            None => Approvals::unattended(),
        }
        .allowing(allow)
        .yes(ask.yes);
        let options = AskOptions {
            approvals,
            token_limit: TokenLimit::ask(&self.config.budgets),
        };
        let outcome = asker.ask_with(request, &options, on_event).await?;
        if let Some(p) = &ask.persona {
            if kept.persona.as_deref() != Some(p.as_str()) {
                store
                    .set_conversation_persona(&outcome.conversation_id, Some(p))
                    .await?;
            }
        }
        Ok(outcome)
    }

    /// A known `[personas.NAME]`, or a usage error listing the known ones (the permission
    /// layer's own check, made before anything is stored).
    pub fn check_persona(&self, name: &str) -> anyhow::Result<()> {
        zocalo_agent::Policy::from_config(&self.config, Some(name))?;
        Ok(())
    }

    /// A model as a conversation keeps it (`/model NAME`): `provider:model`, a provider's
    /// name (its default model) or a model name (on the default provider).
    pub fn model_spec(&self, spec: &str) -> anyhow::Result<ModelChoice> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(usage("the model name is empty"));
        }
        let registry = self.registry()?;
        let known = |name: &str| registry.names().iter().any(|n| n == name);
        Ok(match spec.split_once(':') {
            Some((p, m)) if known(p) && !m.is_empty() => ModelChoice {
                provider: Some(p.to_owned()),
                model: Some(m.to_owned()),
                no_tools: false,
            },
            _ if known(spec) => ModelChoice {
                provider: Some(spec.to_owned()),
                model: None,
                no_tools: false,
            },
            _ => ModelChoice {
                provider: None,
                model: Some(spec.to_owned()),
                no_tools: false,
            },
        })
    }
}
