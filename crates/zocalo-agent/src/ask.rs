//! One ask: context → model → tools → ... → persisted answer.

use std::sync::Arc;

use zocalo_core::config::AskConfig;
use zocalo_core::protocol::{estimate_message_tokens, estimate_tokens};
use zocalo_core::{
    CompletionRequest, ConversationId, Message, StopReason, ToolCall, ToolError, Usage,
};
use zocalo_llm::{collect_stream, Provider};
use zocalo_store::{NewMessage, Store};

use crate::compress::{Compressor, Room};
use crate::context::fit_history;
use crate::{AgentError, ToolRegistry, DEFAULT_SYSTEM_PROMPT};

/// Tool output longer than this is cut (with a note) before it goes back to the model.
const MAX_TOOL_OUTPUT_BYTES: usize = 32 * 1024;

/// Knobs of the loop, usually from `[ask]` in config.toml.
#[derive(Clone, Debug)]
pub struct AskSettings {
    pub system_prompt: String,
    /// Estimated tokens allowed for system prompt + tool specs + history + this turn +
    /// the reserved output.
    pub context_tokens: usize,
    /// Model calls per ask at most.
    pub max_steps: usize,
    pub max_output_tokens: u32,
    /// Stored messages loaded before budgeting.
    pub history_messages: i64,
    pub temperature: Option<f32>,
    /// Summarise the oldest turns when the history no longer fits (see [`crate::compress`]).
    pub compress_history: bool,
}

impl AskSettings {
    pub fn from_config(c: &AskConfig) -> Self {
        Self {
            system_prompt: c
                .system_prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            context_tokens: c.context_tokens,
            max_steps: c.max_steps,
            max_output_tokens: c.max_output_tokens,
            history_messages: 200,
            temperature: None,
            compress_history: c.compress_history,
        }
    }
}

impl Default for AskSettings {
    fn default() -> Self {
        Self::from_config(&AskConfig::default())
    }
}

#[derive(Clone, Debug, Default)]
pub struct AskRequest {
    /// Continue this conversation; `None` starts a new one.
    pub conversation: Option<ConversationId>,
    pub message: String,
    /// Model override; else the provider's default.
    pub model: Option<String>,
}

/// What happens during an ask, for streaming to the user.
#[derive(Clone, Debug, PartialEq)]
pub enum AskEvent {
    /// A piece of model text, as it arrives.
    Text(String),
    /// The model called a tool; it is about to run.
    ToolCall(ToolCall),
    /// A tool finished.
    ToolResult {
        call_id: String,
        name: String,
        is_error: bool,
        content: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct AskOutcome {
    pub conversation_id: ConversationId,
    /// Whether this ask created the conversation.
    pub new_conversation: bool,
    /// The final answer (the last assistant message's text).
    pub text: String,
    pub model: String,
    pub provider: String,
    pub usage: Usage,
    /// Model calls made.
    pub steps: usize,
    pub tool_calls: Vec<ToolCall>,
    pub stop_reason: StopReason,
}

pub use zocalo_core::ContextSource;

/// Runs asks against one provider, store and tool set.
pub struct Asker {
    store: Store,
    provider: Arc<dyn Provider>,
    tools: ToolRegistry,
    settings: AskSettings,
    context: Option<Arc<dyn ContextSource>>,
}

impl Asker {
    pub fn new(
        store: Store,
        provider: Arc<dyn Provider>,
        tools: ToolRegistry,
        settings: AskSettings,
    ) -> Self {
        Self {
            store,
            provider,
            tools,
            settings,
            context: None,
        }
    }

    /// Adds a [`ContextSource`] consulted before every turn (it gets at most a quarter of the
    /// tokens the turn leaves free) and told after every committed turn.
    pub fn with_context_source(mut self, source: Arc<dyn ContextSource>) -> Self {
        self.context = Some(source);
        self
    }

    /// The name of the provider (or the first of a fallback chain) this loop asks.
    pub fn provider_name(&self) -> &str {
        self.provider.name()
    }

    /// Answer `request.message`. Streams events through `on_event`. Writes nothing unless the
    /// answer completes: the user turn, every tool round and the final answer are committed
    /// together in one transaction at the end.
    pub async fn ask(
        &self,
        request: AskRequest,
        on_event: &mut (dyn FnMut(AskEvent) + Send),
    ) -> Result<AskOutcome, AgentError> {
        if request.message.trim().is_empty() {
            return Err(AgentError::EmptyMessage);
        }
        let (conversation_id, new_conversation, mut rows) = match request.conversation {
            Some(id) => {
                if self.store.get_conversation(&id).await?.is_none() {
                    return Err(AgentError::UnknownConversation(id));
                }
                let rows = self
                    .store
                    .recent_messages(&id, self.settings.history_messages)
                    .await?;
                (id, false, rows)
            }
            None => (ConversationId::new(), true, Vec::new()),
        };
        // Turns an earlier summary stands for are replaced by it (they stay in the store).
        let summary = if self.settings.compress_history && !new_conversation {
            self.store.latest_summary(&conversation_id).await?
        } else {
            None
        };
        if let Some(s) = &summary {
            rows.retain(|r| r.seq > s.through_seq);
        }
        let model = request
            .model
            .clone()
            .unwrap_or_else(|| self.provider.default_model().to_owned());
        let tool_specs = if self.provider.supports_tools() {
            self.tools.specs()
        } else {
            Vec::new()
        };
        let mut system = self.settings.system_prompt.clone();
        if let Some(source) = &self.context {
            let turn_cost = estimate_message_tokens(&Message::user(request.message.clone()));
            let free = self.settings.context_tokens.saturating_sub(
                estimate_tokens(&system) + self.settings.max_output_tokens as usize + turn_cost,
            );
            let budget = free / 4;
            if budget > 0 {
                match source
                    .context_for(&conversation_id, &request.message, budget)
                    .await
                {
                    Ok(Some(extra)) => system = format!("{system}\n\n{extra}"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("extra context unavailable: {e}"),
                }
            }
        }
        let mut fixed_cost = estimate_tokens(&system)
            + tool_specs
                .iter()
                .map(|s| estimate_tokens(&serde_json::to_string(s).unwrap_or_default()))
                .sum::<usize>()
            + self.settings.max_output_tokens as usize;
        let mut turn = vec![Message::user(request.message.clone())];
        let mut usage = Usage::default();
        let history: Vec<Message> = if self.settings.compress_history {
            let compressor = Compressor {
                store: &self.store,
                provider: self.provider.as_ref(),
                model: &model,
                conversation: &conversation_id,
            };
            let room = Room {
                context_tokens: self.settings.context_tokens,
                available: self
                    .settings
                    .context_tokens
                    .saturating_sub(fixed_cost + estimate_message_tokens(&turn[0])),
                max_output_tokens: self.settings.max_output_tokens as usize,
            };
            let compacted = compressor.compact(summary, rows, &room).await;
            usage.add(compacted.usage);
            if let Some(block) = compacted.summary_block {
                fixed_cost += estimate_tokens(&block) + 1;
                system = format!("{system}\n\n{block}");
            }
            compacted.history
        } else {
            rows.into_iter().map(|r| r.message).collect()
        };

        let mut rows = vec![NewMessage {
            message: turn[0].clone(),
            model: None,
            usage: None,
            provider: None,
        }];
        let mut all_calls = Vec::new();
        let mut steps = 0;
        let (text, stop_reason, answered_model, answered_by) = loop {
            if steps == self.settings.max_steps {
                return Err(AgentError::MaxSteps(steps));
            }
            steps += 1;
            // Budget check before every model call: the turn grows with each tool round.
            let needed = fixed_cost + turn.iter().map(estimate_message_tokens).sum::<usize>();
            if needed > self.settings.context_tokens {
                return Err(AgentError::ContextTooLarge {
                    needed,
                    budget: self.settings.context_tokens,
                });
            }
            let kept = fit_history(&history, self.settings.context_tokens - needed);
            let mut messages = Vec::with_capacity(kept.len() + turn.len());
            messages.extend_from_slice(kept);
            messages.extend(turn.iter().cloned());
            let call = CompletionRequest {
                model: model.clone(),
                system: Some(system.clone()),
                messages,
                tools: tool_specs.clone(),
                max_tokens: self.settings.max_output_tokens,
                temperature: self.settings.temperature,
            };
            let named = self.provider.stream_named(call).await?;
            // Which provider answered: a fallback chain may move past its first choice.
            let answered_by = named.provider;
            let response =
                collect_stream(named.stream, |t| on_event(AskEvent::Text(t.to_owned()))).await?;
            usage.add(response.usage);
            let calls = response.message.tool_calls.clone();
            turn.push(response.message.clone());
            rows.push(NewMessage {
                message: response.message.clone(),
                model: Some(response.model.clone()),
                usage: Some(response.usage),
                provider: Some(answered_by.clone()),
            });
            if calls.is_empty() {
                break (
                    response.message.content,
                    response.stop_reason,
                    response.model,
                    answered_by,
                );
            }
            for call in calls {
                on_event(AskEvent::ToolCall(call.clone()));
                // Tools that spawn sub-agents record this conversation as their parent;
                // stateful tools (the browser's tab) are handed it in the ToolContext.
                let tool_ctx = zocalo_core::ToolContext {
                    conversation: Some(conversation_id.clone()),
                };
                let called = crate::spawn::in_conversation(
                    conversation_id.clone(),
                    self.tools
                        .call_with(&tool_ctx, &call.name, call.arguments.clone()),
                );
                let (content, is_error) = match called.await {
                    Ok(out) => (truncate_output(out), false),
                    Err(ToolError::Recoverable(msg)) => (msg, true),
                    Err(ToolError::Fatal(message)) => {
                        return Err(AgentError::ToolFatal {
                            tool: call.name,
                            message,
                        })
                    }
                };
                on_event(AskEvent::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    is_error,
                    content: content.clone(),
                });
                let result = Message::tool_result(call.id.clone(), content, is_error);
                turn.push(result.clone());
                rows.push(NewMessage {
                    message: result,
                    model: None,
                    usage: None,
                    provider: None,
                });
                all_calls.push(call);
            }
        };
        let title = new_conversation.then(|| title_of(&request.message));
        self.store
            .append_turn(&conversation_id, title.as_deref(), &rows)
            .await?;
        if let Some(source) = &self.context {
            if let Err(e) = source
                .turn_committed(&conversation_id, &request.message)
                .await
            {
                tracing::warn!("after-turn hook failed: {e}");
            }
        }
        Ok(AskOutcome {
            conversation_id,
            new_conversation,
            text,
            model: answered_model,
            provider: answered_by,
            usage,
            steps,
            tool_calls: all_calls,
            stop_reason,
        })
    }
}

/// A short title from the first message: its first line, at most 60 characters.
fn title_of(message: &str) -> String {
    let line = message.trim().lines().next().unwrap_or_default();
    let mut title: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    title
}

fn truncate_output(mut out: String) -> String {
    if out.len() <= MAX_TOOL_OUTPUT_BYTES {
        return out;
    }
    let mut cut = MAX_TOOL_OUTPUT_BYTES;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let total = out.len();
    out.truncate(cut);
    out.push_str(&format!(
        "\n[output truncated: {cut} of {total} bytes shown]"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_short_single_lines() {
        assert_eq!(title_of("  hello\nworld"), "hello");
        let long = "é".repeat(100);
        let t = title_of(&long);
        assert_eq!(t.chars().count(), 61);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(MAX_TOOL_OUTPUT_BYTES);
        let t = truncate_output(s);
        assert!(t.contains("[output truncated"));
        assert!(t.len() < MAX_TOOL_OUTPUT_BYTES + 100);
        assert_eq!(truncate_output("short".into()), "short");
    }
}
