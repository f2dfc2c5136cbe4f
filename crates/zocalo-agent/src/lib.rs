//! zocalo-agent: the ask loop.
//!
//! - [`ask`]: one user message in, one persisted answer out — context under a token budget,
//!   streaming, tool rounds, a single commit at the end.
//! - [`compress`]: when the history no longer fits, the model summarises the oldest turns
//!   (stored with the conversation) and later asks send summary + recent turns.
//! - [`context`]: fitting history into the budget without orphaning tool results.
//! - [`tools`]: the tool registry and the built-in tools (`current_time`).
//! - Guard rails, met at one decision point ([`guard`]) before every tool call:
//!   [`policy`] (which tools are offered; allow / ask / deny per tool, personas),
//!   [`approval`] (who answers an `ask`; unattended means deny; "always in this
//!   conversation"), [`audit`] (every call recorded, secrets redacted) and [`budget`]
//!   (token limits checked before every model call).
//! - [`spawn`]: sub-agents — [`Spawner`] runs batches of asks, bounded, with timeouts, a
//!   deadline and cancellation, streaming results; [`batches`] records them;
//!   [`spawn_tool`] lets the model fan out with `spawn_agents` (depth and budget limits).

pub mod approval;
pub mod ask;
pub mod audit;
pub mod batches;
pub mod budget;
pub mod compress;
pub mod context;
pub mod error;
mod guard;
pub mod policy;
pub mod spawn;
pub mod spawn_tool;
pub mod tools;

pub use approval::{
    conversation_grants, revoke_grants, Approval, ApprovalRequest, Approvals, Approver, DecidedBy,
};
pub use ask::{
    AskEvent, AskOptions, AskOutcome, AskRequest, AskSettings, Asker, ContextSource, PendingTurn,
    TurnHook,
};
pub use audit::{audit, AuditRow, Outcome};
pub use batches::{BatchDetail, BatchState, BatchSummary, Batches, RunRecord};
pub use budget::{BudgetExceeded, BudgetScope, TokenLimit};
pub use error::AgentError;
pub use policy::{default_decision, Decision, Policy, Rules, ToolPattern, ToolPatterns};
pub use spawn::{
    at_depth, current_depth, parse_tasks_jsonl, validate_tasks, AgentAnswer, AgentEvent,
    AgentResult, AgentRun, AgentRunner, AgentStatus, AgentTask, BatchReport, ErrorKind, RunError,
    RunningBatch, SpawnOptions, Spawner,
};
pub use spawn_tool::{
    MakeRunner, SpawnAgentsTool, SpawnLimits, MAX_CALLER_TIMEOUT_SECS, SPAWN_AGENTS,
};
pub use tokio_util::sync::CancellationToken;
pub use tools::{CurrentTime, ToolRegistry};

/// The system prompt used when the config gives none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are zocalo, a personal AI assistant running on \
the user's own computer. Answer concisely and accurately. When a tool can give a better answer \
(for example the current time somewhere), call it instead of guessing.";
