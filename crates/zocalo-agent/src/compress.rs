//! Context compression: when a conversation's history no longer fits the token budget, the
//! model summarises the oldest turns instead of them silently falling out of its view.
//!
//! The summary is stored with the conversation ([`Store::save_summary`]) together with the
//! last message it stands for; the messages themselves stay in the database. Later asks send
//! the summary (in the system prompt) plus the turns after it. A new summary folds in the
//! previous one, so there is always one summary in use.
//!
//! Compression keeps the newest turns in half of the room the history has and summarises the
//! rest, so the following asks fit without another summarisation call. When the summarising
//! call fails the ask goes on with plain truncation (and a warning in the log): compression
//! never costs the user an answer.

use zocalo_core::protocol::{estimate_message_tokens, estimate_tokens};
use zocalo_core::{CompletionRequest, ConversationId, Message, Role, Usage};
use zocalo_llm::Provider;
use zocalo_store::{ConversationSummary, Store, StoredMessage};

use crate::context::fit_history;

/// The heading of the summary block in the system prompt.
pub const SUMMARY_HEADING: &str = "Summary of the earlier part of this conversation (those \
turns are not repeated below):";

/// The system prompt of a summarising call.
pub const SUMMARISER_PROMPT: &str = "You keep the running summary of a conversation between \
a user and an AI assistant, so that the assistant can go on with the conversation after its \
oldest turns are removed from view.";

/// The instruction that opens a summarising request.
pub const SUMMARISE_INSTRUCTION: &str = "Summarise the oldest turns of this conversation, \
given below.";

/// A summarising call is not worth making for a summary shorter than this (estimated tokens).
const MIN_SUMMARY_TOKENS: usize = 32;
/// One message's share of a transcript, at most (estimated tokens): a huge tool result is cut
/// rather than crowding out every other turn.
const MAX_TRANSCRIPT_MESSAGE_TOKENS: usize = 1_000;

/// History ready for the model: the summary block for the system prompt (if any) and the turns
/// after it.
pub(crate) struct Compacted {
    pub summary_block: Option<String>,
    pub history: Vec<Message>,
    /// Tokens the summarising calls used.
    pub usage: Usage,
}

/// Budget figures, in estimated tokens.
pub(crate) struct Room {
    /// The whole context budget (`ask.context_tokens`).
    pub context_tokens: usize,
    /// What is left for summary + history once the system prompt, tools, the new message and
    /// the reserved output are counted.
    pub available: usize,
    /// The ask's `max_tokens`; a summary is never asked to be longer.
    pub max_output_tokens: usize,
}

pub(crate) struct Compressor<'a> {
    pub store: &'a Store,
    pub provider: &'a dyn Provider,
    pub model: &'a str,
    pub conversation: &'a ConversationId,
}

fn summary_block(text: &str) -> String {
    format!("{SUMMARY_HEADING}\n{}", text.trim())
}

fn block_cost(summary: Option<&ConversationSummary>) -> usize {
    // +1: the blank line that joins it to the system prompt.
    summary.map_or(0, |s| estimate_tokens(&summary_block(&s.text)) + 1)
}

impl Compressor<'_> {
    /// `rows` are the stored messages after `summary` (all of them when there is none), in
    /// order. Summarises the oldest of them when summary + rows exceed `room.available`.
    pub async fn compact(
        &self,
        mut summary: Option<ConversationSummary>,
        mut rows: Vec<StoredMessage>,
        room: &Room,
    ) -> Compacted {
        let mut usage = Usage::default();
        let total: usize = rows
            .iter()
            .map(|r| estimate_message_tokens(&r.message))
            .sum();
        if block_cost(summary.as_ref()) + total > room.available {
            let messages: Vec<Message> = rows.iter().map(|r| r.message.clone()).collect();
            // Keep the newest turns in half the room: the next asks then fit as they are.
            let keep = fit_history(&messages, room.available / 2).len();
            let cut = rows.len() - keep;
            let summary_tokens = (room.available / 4).min(room.max_output_tokens);
            if cut > 0 && summary_tokens >= MIN_SUMMARY_TOKENS {
                let (newest, used) = self
                    .summarise(summary.as_ref(), &rows[..cut], summary_tokens, room)
                    .await;
                usage.add(used);
                if let Some(new) = newest {
                    rows.retain(|r| r.seq > new.through_seq);
                    summary = Some(new);
                }
            }
        }
        // A summary that no longer fits at all (the budget was lowered) is left out rather
        // than making every ask fail; plain truncation handles the turns.
        if block_cost(summary.as_ref()) > room.available / 2 {
            if let Some(s) = &summary {
                tracing::warn!(
                    conversation = %self.conversation,
                    "the summary of messages 1..={} is larger than half the history budget; \
                     left out of this ask",
                    s.through_seq
                );
            }
            summary = None;
        }
        Compacted {
            summary_block: summary.map(|s| summary_block(&s.text)),
            history: rows.into_iter().map(|r| r.message).collect(),
            usage,
        }
    }

    /// Folds `old` turns into `previous`, one model call per batch of turns that fits a
    /// request, storing each new summary. Returns the newest summary stored (or made, if
    /// storing it failed), `None` when the first call already failed.
    async fn summarise(
        &self,
        previous: Option<&ConversationSummary>,
        old: &[StoredMessage],
        summary_tokens: usize,
        room: &Room,
    ) -> (Option<ConversationSummary>, Usage) {
        let mut usage = Usage::default();
        let mut current = previous.cloned();
        let mut newest = None;
        let mut rest = old;
        while !rest.is_empty() {
            // Room for the transcript in one summarising request: the budget minus the
            // prompts, the previous summary and the summary being asked for.
            let overhead = estimate_tokens(SUMMARISER_PROMPT)
                + estimate_tokens(&instruction(current.as_ref(), summary_tokens, ""))
                + summary_tokens
                + 8;
            let room_for_turns = room.context_tokens.saturating_sub(overhead);
            let per_message = MAX_TRANSCRIPT_MESSAGE_TOKENS
                .min(room_for_turns / 4)
                .max(16);
            let mut transcript = String::new();
            let mut taken = 0;
            for row in rest {
                let line = render(&row.message, per_message);
                if taken > 0
                    && estimate_tokens(&transcript) + estimate_tokens(&line) > room_for_turns
                {
                    break;
                }
                transcript.push_str(&line);
                taken += 1;
            }
            let (batch, later) = rest.split_at(taken);
            rest = later;
            let Some(last) = batch.last() else { break };
            let request = CompletionRequest {
                model: self.model.to_owned(),
                system: Some(SUMMARISER_PROMPT.to_owned()),
                messages: vec![Message::user(instruction(
                    current.as_ref(),
                    summary_tokens,
                    &transcript,
                ))],
                tools: Vec::new(),
                max_tokens: u32::try_from(summary_tokens).unwrap_or(u32::MAX),
                temperature: None,
            };
            let response = match self.provider.complete(request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        conversation = %self.conversation,
                        "summarising the oldest turns failed, so they are only dropped from \
                         this ask's context (plain truncation): {e}"
                    );
                    break;
                }
            };
            usage.add(response.usage);
            let text = response.message.content.trim();
            if text.is_empty() {
                tracing::warn!(
                    conversation = %self.conversation,
                    "the model returned an empty summary; plain truncation for this ask"
                );
                break;
            }
            let made = match self
                .store
                .save_summary(self.conversation, last.seq, text, Some(&response.model))
                .await
            {
                Ok(saved) => saved,
                Err(e) => {
                    // Still good for this ask; the next one summarises again.
                    tracing::warn!(conversation = %self.conversation, "summary not stored: {e}");
                    ConversationSummary {
                        conversation_id: self.conversation.clone(),
                        through_seq: last.seq,
                        text: text.to_owned(),
                        model: Some(response.model.clone()),
                        created_at: chrono::Utc::now(),
                    }
                }
            };
            tracing::info!(
                conversation = %self.conversation,
                through = made.through_seq,
                "summarised the oldest turns of the conversation"
            );
            current = Some(made.clone());
            newest = Some(made);
        }
        (newest, usage)
    }
}

/// The user message of a summarising request.
fn instruction(
    previous: Option<&ConversationSummary>,
    summary_tokens: usize,
    turns: &str,
) -> String {
    // About three quarters of a word per token.
    let words = summary_tokens * 3 / 4;
    let mut text = format!(
        "{SUMMARISE_INSTRUCTION} Keep every fact, name, number, date, decision, preference of \
         the user and open question that later turns may need; leave out greetings and \
         repetition. Write short plain sentences or bullet points, at most {words} words, and \
         nothing else.\n"
    );
    if let Some(p) = previous {
        text.push_str("\nSummary of the turns before these (fold it into yours):\n");
        text.push_str(p.text.trim());
        text.push('\n');
    }
    text.push_str("\nTurns to summarise:\n");
    text.push_str(turns);
    text
}

/// One message as a transcript line, cut to about `max_tokens`.
fn render(m: &Message, max_tokens: usize) -> String {
    let mut line = match m.role {
        Role::User => format!("User: {}", m.content.trim()),
        Role::Assistant => {
            let mut s = format!("Assistant: {}", m.content.trim());
            for call in &m.tool_calls {
                s.push_str(&format!(" [called {}({})]", call.name, call.arguments));
            }
            s
        }
        Role::Tool if m.is_error => format!("Tool error: {}", m.content.trim()),
        Role::Tool => format!("Tool result: {}", m.content.trim()),
    };
    let max_bytes = max_tokens * 4;
    if line.len() > max_bytes {
        let mut cut = max_bytes;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" […]");
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_cuts_long_messages_on_char_boundaries() {
        let long = Message::tool_result("c1", "é".repeat(5_000), false);
        let line = render(&long, 100);
        assert!(line.starts_with("Tool result: é"));
        assert!(line.ends_with(" […]\n"));
        assert!(line.len() <= 100 * 4 + 8);
        assert_eq!(render(&Message::user("  hi "), 100), "User: hi\n");
    }

    #[test]
    fn instruction_carries_the_previous_summary_and_the_turns() {
        let previous = ConversationSummary {
            conversation_id: ConversationId::new(),
            through_seq: 4,
            text: "The user is called Ada.".into(),
            model: None,
            created_at: chrono::Utc::now(),
        };
        let text = instruction(Some(&previous), 400, "User: hello\n");
        assert!(text.starts_with(SUMMARISE_INSTRUCTION));
        assert!(text.contains("at most 300 words"));
        assert!(text.contains("The user is called Ada."));
        assert!(text.ends_with("Turns to summarise:\nUser: hello\n"));
        assert!(!instruction(None, 400, "").contains("fold it"));
    }
}
