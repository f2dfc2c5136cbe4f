use zocalo_core::ConversationId;
use zocalo_llm::LlmError;
use zocalo_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the message is empty: say something")]
    EmptyMessage,
    #[error("no conversation {0}: list them with `zocalo conversations` or omit --conv to start a new one")]
    UnknownConversation(ConversationId),
    #[error("the message and system prompt need about {needed} tokens, more than the context budget of {budget}: shorten the message or raise ask.context_tokens in config.toml")]
    ContextTooLarge { needed: usize, budget: usize },
    #[error("the model was still calling tools after {0} steps; stopped (raise ask.max_steps in config.toml)")]
    MaxSteps(usize),
    #[error("tool {tool} failed: {message}")]
    ToolFatal { tool: String, message: String },
    /// A sub-agent task that cannot run (bad JSONL line, empty prompt, duplicate id).
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    BadTask {
        /// 1-based line of the input, when the tasks came from a file.
        line: Option<usize>,
        message: String,
    },
    /// A `[permissions]` key, persona `tools` entry or `--allow` value that is no tool name
    /// or glob.
    #[error("{0}")]
    BadToolPattern(String),
    #[error("no persona {name:?} in config.toml: {}", if defined.is_empty() { "define one under [personas.NAME]".to_owned() } else { format!("defined: {}", defined.join(", ")) })]
    UnknownPersona { name: String, defined: Vec<String> },
    /// A token budget was spent before this ask could make its first model call.
    #[error(transparent)]
    Budget(#[from] crate::budget::BudgetExceeded),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentError {
    /// Bad input the user can fix by changing the command (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            AgentError::EmptyMessage
            | AgentError::UnknownConversation(_)
            | AgentError::BadTask { .. }
            | AgentError::BadToolPattern(_)
            | AgentError::UnknownPersona { .. } => true,
            AgentError::Llm(e) => e.is_usage(),
            AgentError::Store(e) => e.is_usage(),
            _ => false,
        }
    }
}
