//! The [`Tool`] trait: something the model can call with JSON arguments.

use async_trait::async_trait;

use crate::protocol::ToolSpec;

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
}
