//! [`ContextSource`]: the seam through which the ask loop gets extra context for a turn
//! (recalled memories, for example) without knowing where it comes from.

use crate::ids::ConversationId;

/// Extra context for a turn and a hook once the turn is stored. Failures are logged and the
/// ask goes on without the extra context.
#[async_trait::async_trait]
pub trait ContextSource: Send + Sync {
    /// Text appended to the system prompt for this turn, at most `budget_tokens` (estimated
    /// as [`crate::protocol::estimate_tokens`] does); `None` for nothing.
    async fn context_for(
        &self,
        conversation: &ConversationId,
        message: &str,
        budget_tokens: usize,
    ) -> Result<Option<String>, String>;

    /// Called after the turn (user message and answer) is committed.
    async fn turn_committed(
        &self,
        conversation: &ConversationId,
        message: &str,
    ) -> Result<(), String>;
}
