//! zocalo-agent: the ask loop.
//!
//! - [`ask`]: one user message in, one persisted answer out — context under a token budget,
//!   streaming, tool rounds, a single commit at the end.
//! - [`compress`]: when the history no longer fits, the model summarises the oldest turns
//!   (stored with the conversation) and later asks send summary + recent turns.
//! - [`context`]: fitting history into the budget without orphaning tool results.
//! - [`tools`]: the tool registry and the built-in tools (`current_time`).

pub mod ask;
pub mod compress;
pub mod context;
pub mod error;
pub mod tools;

pub use ask::{AskEvent, AskOutcome, AskRequest, AskSettings, Asker, ContextSource};
pub use error::AgentError;
pub use tools::{CurrentTime, ToolRegistry};

/// The system prompt used when the config gives none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are zocalo, a personal AI assistant running on \
the user's own computer. Answer concisely and accurately. When a tool can give a better answer \
(for example the current time somewhere), call it instead of guessing.";
