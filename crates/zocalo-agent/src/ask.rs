//! One ask: context → model → tools → ... → persisted answer.

use std::sync::Arc;

use zocalo_core::config::{AskConfig, BudgetsConfig};
use zocalo_core::protocol::{estimate_message_tokens, estimate_tokens};
use zocalo_core::{CompletionRequest, ConversationId, Message, StopReason, ToolCall, Usage};
use zocalo_llm::{collect_stream, Provider};
use zocalo_store::conversations::PreparedTurn;
use zocalo_store::{NewMessage, Store};

use crate::approval::Approvals;
use crate::budget::{BudgetCheck, TokenLimit};
use crate::compress::{Compressor, Room};
use crate::context::fit_history;
use crate::guard::Gate;
use crate::policy::Policy;
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

/// How one ask is guarded: who answers the `ask` decisions, and its own token limit. The
/// permissions themselves and the conversation / daily budgets belong to the [`Asker`]
/// ([`Asker::with_policy`], [`Asker::with_budgets`]).
#[derive(Clone, Debug, Default)]
pub struct AskOptions {
    /// Default: unattended, nothing pre-approved (`ask` means deny).
    pub approvals: Approvals,
    /// This ask's own tokens at most: [`TokenLimit::ask`], [`TokenLimit::automation_run`] or
    /// [`TokenLimit::agent`] of `[budgets]`. None: no limit of its own.
    pub token_limit: Option<TokenLimit>,
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
    /// Why the ask ended: the model's reason, or [`StopReason::budget()`] when a token
    /// budget stopped the loop (then `text` says which, and the turn is stored up to there).
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
    policy: Option<Arc<Policy>>,
    budgets: BudgetsConfig,
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
            policy: None,
            budgets: BudgetsConfig::default(),
        }
    }

    /// Guards every tool call with `policy`: only the tools it offers are shown to the model,
    /// and each call is allowed, asked or denied by it. Without a policy every registered
    /// tool is offered and runs (calls are still audited): install one wherever a person's
    /// machine is at stake.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// The limits of `[budgets]`: `conversation_tokens` and `daily_tokens` apply to every
    /// ask; `ask_tokens` to [`Asker::ask`] and `agent_tokens` to sub-agents run through
    /// this asker ([`crate::AgentRunner`]). [`Asker::ask_with`] takes its own limit.
    pub fn with_budgets(mut self, budgets: BudgetsConfig) -> Self {
        self.budgets = budgets;
        self
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    pub fn budgets(&self) -> &BudgetsConfig {
        &self.budgets
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

    /// [`Asker::ask_with`] unattended (`ask` means deny) with `[budgets] ask_tokens`.
    pub async fn ask(
        &self,
        request: AskRequest,
        on_event: &mut (dyn FnMut(AskEvent) + Send),
    ) -> Result<AskOutcome, AgentError> {
        let options = AskOptions {
            approvals: Approvals::unattended(),
            token_limit: TokenLimit::ask(&self.budgets),
        };
        self.ask_with(request, &options, on_event).await
    }

    /// Answer `request.message`. Streams events through `on_event`. Writes nothing unless the
    /// answer completes: the user turn, every tool round and the final answer are committed
    /// together in one transaction at the end. (Tool calls are audited as they happen, see
    /// [`crate::audit`].)
    ///
    /// Budgets are checked before every model call. One spent before the first call is an
    /// [`AgentError::Budget`] and nothing is written; one spent later ends the loop with
    /// [`StopReason::budget()`], and the turn so far (every tool call with its result) is
    /// committed with a closing assistant message that says which budget stopped it.
    pub async fn ask_with(
        &self,
        request: AskRequest,
        options: &AskOptions,
        on_event: &mut (dyn FnMut(AskEvent) + Send),
    ) -> Result<AskOutcome, AgentError> {
        let (outcome, turn) = self.ask_uncommitted(request, options, on_event).await?;
        turn.commit().await?;
        Ok(outcome)
    }

    /// [`Asker::ask_with`] up to, not including, the commit: the turn is returned for the
    /// caller to write, alone ([`PendingTurn::commit`]) or in one transaction with others
    /// (the sub-agent spawner writes a burst of finished agents at once). Until then nothing
    /// of it is stored and `outcome.conversation_id` may not exist yet.
    pub async fn ask_uncommitted(
        &self,
        request: AskRequest,
        options: &AskOptions,
        on_event: &mut (dyn FnMut(AskEvent) + Send),
    ) -> Result<(AskOutcome, PendingTurn), AgentError> {
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
        let budget = BudgetCheck::load(
            &self.store,
            &self.budgets,
            options.token_limit,
            (!new_conversation).then_some(&conversation_id),
        )
        .await?;
        if let Some(spent) = budget.exceeded(0) {
            return Err(AgentError::Budget(spent));
        }
        let gate = Gate {
            store: &self.store,
            tools: &self.tools,
            policy: self.policy.as_deref(),
            approvals: &options.approvals,
            conversation: &conversation_id,
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
            gate.specs()
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
        // Who answered last, for an outcome the budget ends (no answer of its own).
        let mut last_answer: Option<(String, String)> = None;
        let (text, stop_reason, answered_model, answered_by) = loop {
            if let Some(spent) = budget.exceeded(usage.input_tokens + usage.output_tokens) {
                let Some((model, provider)) = last_answer.take() else {
                    // Nothing was said yet (only a summary call spent it): nothing to keep.
                    return Err(AgentError::Budget(spent));
                };
                // Every call of the turn has its result by now; close it with a note, so the
                // stored conversation ends on an assistant message as after any answer.
                let note = format!("[stopped before finishing: {spent}]");
                let said_something = turn
                    .iter()
                    .any(|m| m.role == zocalo_core::Role::Assistant && !m.content.is_empty());
                let streamed = if said_something {
                    format!("\n\n{note}")
                } else {
                    note.clone()
                };
                on_event(AskEvent::Text(streamed));
                let closing = Message::assistant(note.clone());
                turn.push(closing.clone());
                rows.push(NewMessage::plain(closing));
                break (note, StopReason::budget(), model, provider);
            }
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
            last_answer = Some((response.model.clone(), answered_by.clone()));
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
                // Permissions, approval, the call itself (stateful tools such as the
                // browser's tab get the conversation in their ToolContext) and its audit row.
                let handled = gate.call(&call).await?;
                let (content, is_error) = (handled.content, handled.is_error);
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
        let turn = PendingTurn {
            store: self.store.clone(),
            turn: PreparedTurn::new(conversation_id.clone(), title, &rows)?,
            hook: TurnHook {
                conversation: conversation_id.clone(),
                message: request.message,
                context: self.context.clone(),
            },
        };
        let outcome = AskOutcome {
            conversation_id,
            new_conversation,
            text,
            model: answered_model,
            provider: answered_by,
            usage,
            steps,
            tool_calls: all_calls,
            stop_reason,
        };
        Ok((outcome, turn))
    }
}

/// A finished ask's turn, not yet stored (see [`Asker::ask_uncommitted`]).
pub struct PendingTurn {
    store: Store,
    turn: PreparedTurn,
    hook: TurnHook,
}

impl std::fmt::Debug for PendingTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingTurn")
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

impl PendingTurn {
    /// The store the ask read from, where the turn belongs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn conversation_id(&self) -> &ConversationId {
        self.turn.conversation_id()
    }

    /// Writes the turn in its own transaction (all or nothing), then runs the after-turn hook.
    pub async fn commit(self) -> Result<(), AgentError> {
        let PendingTurn {
            store,
            mut turn,
            hook,
        } = self;
        store.append_turns(std::slice::from_mut(&mut turn)).await?;
        hook.run().await;
        Ok(())
    }

    /// The turn, to write in a transaction of the caller's
    /// ([`zocalo_store::TurnWriter::append_turns`]), and the hook to run once that commits.
    pub fn into_parts(self) -> (PreparedTurn, TurnHook) {
        (self.turn, self.hook)
    }
}

/// What runs once a [`PendingTurn`] is stored: the context source's (memory's) after-turn hook.
pub struct TurnHook {
    conversation: ConversationId,
    /// The user's message.
    message: String,
    context: Option<Arc<dyn ContextSource>>,
}

impl TurnHook {
    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.context.is_none()
    }

    /// Tells the context source the turn is stored; a failing hook is logged.
    pub async fn run(self) {
        if let Some(source) = &self.context {
            if let Err(e) = source
                .turn_committed(&self.conversation, &self.message)
                .await
            {
                tracing::warn!("after-turn hook failed: {e}");
            }
        }
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

pub(crate) fn truncate_output(mut out: String) -> String {
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
