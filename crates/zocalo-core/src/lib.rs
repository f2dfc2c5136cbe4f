//! zocalo-core: the plain types every other crate speaks.
//!
//! - [`ids`]: prefixed, time-sortable identifiers (`conv_…`, `msg_…`).
//! - [`secret`]: [`Secret`], a string that never prints itself.
//! - [`paths`]: the data home (`$ZOCALO_HOME` or `~/.zocalo`) and what lives in it.
//! - [`config`]: `config.toml` plus environment overrides.
//! - [`protocol`]: chat messages, tool specs and calls, stream events, usage.
//! - [`tool`]: the object-safe [`Tool`] trait the ask loop calls.
//! - [`embed`]: the [`Embedder`](embed::Embedder) seam memory uses for dense vectors.
//! - [`context`]: the [`ContextSource`] seam the ask loop gets extra context through.
//!
//! Nothing here talks to the network or a database.

pub mod config;
pub mod context;
pub mod embed;
pub mod error;
pub mod ids;
pub mod paths;
pub mod protocol;
pub mod secret;
pub mod tool;

pub use config::{Config, DaemonConfig, Decision, EmbedderSetting};
pub use context::ContextSource;
pub use error::CoreError;
pub use ids::{ConversationId, MessageId};
pub use protocol::{
    CompletionRequest, CompletionResponse, Message, Role, StopReason, StreamEvent, ToolCall,
    ToolSpec, Usage,
};
pub use secret::Secret;
pub use tool::{Tool, ToolContext, ToolError};
