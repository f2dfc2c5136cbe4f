//! Fitting conversation history into the token budget.

use zocalo_core::protocol::estimate_message_tokens;
use zocalo_core::{Message, Role};

/// The longest suffix of `history` that fits in `available` estimated tokens and starts with
/// a user message. Starting at a user turn guarantees that no tool result is sent without the
/// assistant call it answers (providers reject such orphans) and no reply without its
/// question.
pub fn fit_history(history: &[Message], available: usize) -> &[Message] {
    let mut used = 0usize;
    let mut start = history.len();
    for (i, m) in history.iter().enumerate().rev() {
        let cost = estimate_message_tokens(m);
        if used + cost > available {
            break;
        }
        used += cost;
        start = i;
    }
    while start < history.len() && history[start].role != Role::User {
        start += 1;
    }
    &history[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use zocalo_core::ToolCall;

    fn exchange(i: usize) -> Vec<Message> {
        let mut call = Message::assistant("");
        call.tool_calls.push(ToolCall {
            id: format!("c{i}"),
            name: "current_time".into(),
            arguments: serde_json::json!({"timezone": "UTC"}),
        });
        vec![
            Message::user(format!("question {i} {}", "x".repeat(40))),
            call,
            Message::tool_result(format!("c{i}"), "12:00", false),
            Message::assistant(format!("answer {i} {}", "y".repeat(40))),
        ]
    }

    #[test]
    fn everything_fits_when_budget_is_large() {
        let h: Vec<Message> = (0..3).flat_map(exchange).collect();
        assert_eq!(fit_history(&h, 1_000_000).len(), h.len());
    }

    #[test]
    fn nothing_fits_in_zero() {
        let h: Vec<Message> = (0..3).flat_map(exchange).collect();
        assert!(fit_history(&h, 0).is_empty());
    }

    #[test]
    fn cut_always_starts_at_a_user_turn_and_fits() {
        let h: Vec<Message> = (0..5).flat_map(exchange).collect();
        let total: usize = h.iter().map(estimate_message_tokens).sum();
        for budget in 0..=total + 1 {
            let kept = fit_history(&h, budget);
            let cost: usize = kept.iter().map(estimate_message_tokens).sum();
            assert!(cost <= budget, "budget {budget}: kept {cost}");
            if let Some(first) = kept.first() {
                assert_eq!(first.role, Role::User, "budget {budget}");
            }
            // every tool result kept has its call kept
            for m in kept.iter().filter(|m| m.role == Role::Tool) {
                let id = m.tool_call_id.as_deref().unwrap();
                assert!(kept.iter().any(|a| a.tool_calls.iter().any(|c| c.id == id)));
            }
        }
    }
}
