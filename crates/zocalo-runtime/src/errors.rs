//! One classification of errors for every front end: bad input (the CLI's exit 2, a Python
//! `UsageError`, an HTTP 400) or a failure of the environment (exit 1).

/// An error in what the user typed or passed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A [`UsageError`] as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// True when any cause in the chain is bad input rather than the environment failing. Each
/// crate's error says for itself (`is_usage`); this is the one place that knows them all.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<zocalo_core::CoreError>()
            || cause
                .downcast_ref::<zocalo_agent::AgentError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_store::StoreError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_llm::LlmError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_skills::SkillError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_pool::PoolError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_memory::MemoryError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_scheduler::SchedulerError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_browser::BrowserError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_services::ServicesError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_channels::ChannelError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<zocalo_ops::OpsError>()
                .is_some_and(|e| e.is_usage())
    })
}
