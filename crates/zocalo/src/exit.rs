//! Exit codes: 2 for usage / bad input, 1 for runtime failures. Errors go to stderr.

use std::process::ExitCode;

/// An error in what the user typed; maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

fn is_usage(e: &anyhow::Error) -> bool {
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
    })
}

pub fn report(e: &anyhow::Error) -> ExitCode {
    // A vendor may echo a key back inside an error message; scrub every known secret.
    eprintln!(
        "error: {}",
        zocalo_llm::redact::scrub_str(&format!("{e:#}"))
    );
    if is_usage(e) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
