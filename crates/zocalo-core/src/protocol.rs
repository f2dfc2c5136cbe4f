//! The chat protocol every provider is translated to and from.
//!
//! A conversation is a list of [`Message`]s. The system prompt travels separately in
//! [`CompletionRequest::system`] because Anthropic wants it top-level and OpenAI as the first
//! message; each provider places it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// The result of one tool call, answering the assistant message that made it.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (`call_…`, `toolu_…`); the result must carry it back.
    pub id: String,
    pub name: String,
    /// Parsed JSON arguments (an object for well-behaved models).
    pub arguments: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text content; empty for an assistant message that only calls tools.
    pub content: String,
    /// Calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a tool message: whether the tool failed (the text is then the error).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::plain(Role::Assistant, content)
    }

    pub fn tool_result(
        call_id: impl Into<String>,
        content: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
            is_error,
        }
    }

    fn plain(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }
}

/// What a tool looks like to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// Why an answer ended. Serialises as a plain string: `"end_turn"`, `"tool_use"`,
/// `"max_tokens"`, or the text of [`StopReason::Other`] (`"budget"`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// The model wants tool results before it goes on.
    ToolUse,
    /// `max_tokens` cut the answer.
    MaxTokens,
    /// A stop sequence or anything else the provider reported, or a reason of the ask loop
    /// itself ([`StopReason::BUDGET`]).
    #[serde(untagged)]
    Other(String),
}

impl StopReason {
    /// The ask loop stopped because a token budget (`[budgets]`) was spent.
    ///
    /// A string under [`StopReason::Other`] rather than a variant of its own, so matches on
    /// this enum elsewhere keep compiling; it serialises as `"budget"` all the same.
    pub const BUDGET: &'static str = "budget";

    /// [`StopReason::BUDGET`] as a stop reason.
    pub fn budget() -> Self {
        StopReason::Other(Self::BUDGET.to_owned())
    }

    pub fn is_budget(&self) -> bool {
        matches!(self, StopReason::Other(s) if s == Self::BUDGET)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

/// One event of a streamed completion. Providers assemble tool-call fragments themselves and
/// emit each call whole, once its arguments are complete.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// A piece of answer text, in order.
    TextDelta(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    /// Token usage (may come more than once; later values replace earlier ones per field
    /// that is non-zero).
    Usage(Usage),
    /// The terminal event: the stream ended properly. A stream that ends without it was cut.
    Done {
        stop_reason: StopReason,
        model: String,
    },
}

/// A whole completion, as returned by a non-streaming call or collected from a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionResponse {
    pub message: Message,
    pub usage: Usage,
    pub stop_reason: StopReason,
    pub model: String,
}

/// Rough token count for budgeting: about four bytes of English per token, rounded up, plus a
/// small per-message overhead. Deliberately conservative; providers report real usage.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// [`estimate_tokens`] for one message including its tool calls and framing.
pub fn estimate_message_tokens(m: &Message) -> usize {
    let calls: usize = m
        .tool_calls
        .iter()
        .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments.to_string()) + 4)
        .sum();
    4 + estimate_tokens(&m.content) + calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_json_omits_empty_fields() {
        let v = serde_json::to_value(Message::user("hi")).unwrap();
        assert_eq!(v, serde_json::json!({"role": "user", "content": "hi"}));
        let t = serde_json::to_value(Message::tool_result("c1", "boom", true)).unwrap();
        assert_eq!(t["is_error"], true);
        assert_eq!(t["tool_call_id"], "c1");
    }

    #[test]
    fn estimates_grow_with_text() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        let mut m = Message::assistant("");
        let base = estimate_message_tokens(&m);
        m.tool_calls.push(ToolCall {
            id: "c".into(),
            name: "current_time".into(),
            arguments: serde_json::json!({"timezone": "Europe/Berlin"}),
        });
        assert!(estimate_message_tokens(&m) > base);
    }

    #[test]
    fn stop_reasons_serialise_as_plain_strings() {
        for (reason, text) in [
            (StopReason::EndTurn, "end_turn"),
            (StopReason::ToolUse, "tool_use"),
            (StopReason::MaxTokens, "max_tokens"),
            (StopReason::budget(), "budget"),
            (StopReason::Other("stop_sequence".into()), "stop_sequence"),
        ] {
            let v = serde_json::to_value(&reason).unwrap();
            assert_eq!(v, serde_json::json!(text));
            assert_eq!(serde_json::from_value::<StopReason>(v).unwrap(), reason);
        }
        assert!(StopReason::budget().is_budget());
        assert!(!StopReason::EndTurn.is_budget());
    }

    #[test]
    fn role_round_trip() {
        for r in [Role::User, Role::Assistant, Role::Tool] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("system"), None);
    }
}
