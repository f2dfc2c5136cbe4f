//! The exceptions Python sees: a small hierarchy under `zocalo.Error`, chosen by the runtime's
//! one classification (`zocalo_runtime::is_usage`), with the text the CLI prints after
//! `error: ` (the whole cause chain, every known secret scrubbed).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use zocalo_agent::AgentError;
use zocalo_llm::LlmError;

create_exception!(
    zocalo,
    Error,
    PyException,
    "Every zocalo failure; the message is the one the CLI prints."
);
create_exception!(
    zocalo,
    UsageError,
    Error,
    "Bad input: what the CLI reports with exit code 2 (an empty message, an unknown provider, a malformed rule, ...)."
);
create_exception!(
    zocalo,
    ProviderError,
    Error,
    "The model provider failed: a rejected key, a refused request, a cut stream, retries exhausted."
);
create_exception!(
    zocalo,
    BudgetExceeded,
    Error,
    "The ask does not fit its token budget (the context budget, `ask.context_tokens`)."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("ProviderError", py.get_type::<ProviderError>())?;
    m.add("BudgetExceeded", py.get_type::<BudgetExceeded>())?;
    Ok(())
}

/// The CLI's message for `e`: `format!("{e:#}")`, scrubbed of secrets.
pub fn message(e: &anyhow::Error) -> String {
    zocalo_llm::redact::scrub_str(&format!("{e:#}"))
}

/// The Python exception for a runtime error.
pub fn to_py(e: &anyhow::Error) -> PyErr {
    let msg = message(e);
    if zocalo_runtime::is_usage(e) {
        return UsageError::new_err(msg);
    }
    // `AgentError::Llm` is transparent: the `LlmError` inside is not in the chain itself.
    let agent = || e.chain().filter_map(|c| c.downcast_ref::<AgentError>());
    if agent().any(|a| {
        matches!(
            a,
            AgentError::ContextTooLarge { .. } | AgentError::Budget(_)
        )
    }) {
        return BudgetExceeded::new_err(msg);
    }
    let llm =
        e.chain().any(|c| c.is::<LlmError>()) || agent().any(|a| matches!(a, AgentError::Llm(_)));
    if llm {
        return ProviderError::new_err(msg);
    }
    Error::new_err(msg)
}

/// A plain `zocalo.Error` with `msg`.
pub fn error(msg: impl Into<String>) -> PyErr {
    Error::new_err(msg.into())
}

/// A `zocalo.UsageError` with `msg`.
pub fn usage(msg: impl Into<String>) -> PyErr {
    UsageError::new_err(msg.into())
}
