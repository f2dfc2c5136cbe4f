//! The [`Tool`] trait: something the model can call with JSON arguments.

use async_trait::async_trait;

use crate::ids::ConversationId;
use crate::protocol::ToolSpec;

/// On whose behalf a tool runs. The ask loop passes one to [`Tool::call_with`]; a tool that
/// keeps state per conversation (a browser tab, say) keys it by `conversation`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolContext {
    /// The conversation that asked, when the call comes from the ask loop.
    pub conversation: Option<ConversationId>,
}

/// How a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad arguments or a failure the model can react to: the text goes back to the model as
    /// the tool's result (flagged as an error) and the loop continues.
    #[error("{0}")]
    Recoverable(String),
    /// Something is broken beyond the model's reach: the ask fails and nothing is persisted.
    #[error("{0}")]
    Fatal(String),
}

/// A tool the ask loop offers to the model. Object-safe, so registries hold `Arc<dyn Tool>`.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and JSON Schema of the arguments.
    fn spec(&self) -> ToolSpec;

    /// Run with the arguments the model sent. The result text goes back to the model.
    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError>;

    /// Run for the conversation in `ctx`. The default ignores the context and calls
    /// [`Tool::call`]; override it to keep state per conversation.
    async fn call_with(
        &self,
        ctx: &ToolContext,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError> {
        let _ = ctx;
        self.call(arguments).await
    }
}
