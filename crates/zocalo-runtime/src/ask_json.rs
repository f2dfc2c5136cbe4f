//! An ask as JSON, one shape for every front end: the answer document `zocalo ask --json`
//! prints (the Python package's `ask` returns the same), and the events of a streamed ask.

use serde_json::{json, Value};
use zocalo_agent::{AskEvent, AskOutcome};

/// `{"conversation_id","text","provider","model","new_conversation","steps","stop_reason",
/// "usage","tool_calls"}`: what `zocalo ask --json` prints.
pub fn outcome_json(o: &AskOutcome) -> Value {
    json!({
        "conversation_id": o.conversation_id,
        "text": o.text,
        "provider": o.provider,
        "model": o.model,
        "new_conversation": o.new_conversation,
        "steps": o.steps,
        "stop_reason": o.stop_reason,
        "usage": o.usage,
        "tool_calls": o.tool_calls,
    })
}

/// One event of a streamed ask: `{"type": "text", "text"}`, `{"type": "tool_call", "id",
/// "name", "arguments"}` or `{"type": "tool_result", "call_id", "name", "is_error",
/// "content"}`.
pub fn event_json(event: &AskEvent) -> Value {
    match event {
        AskEvent::Text(t) => json!({"type": "text", "text": t}),
        AskEvent::ToolCall(call) => json!({
            "type": "tool_call",
            "id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }),
        AskEvent::ToolResult {
            call_id,
            name,
            is_error,
            content,
        } => json!({
            "type": "tool_result",
            "call_id": call_id,
            "name": name,
            "is_error": is_error,
            "content": content,
        }),
    }
}
