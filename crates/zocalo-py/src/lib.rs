//! zocalo's Python bindings: the `zocalo._zocalo` extension module. The public API is the
//! pure-Python package around it (python/zocalo): this module is a thin layer over the
//! runtime's library API (`zocalo_runtime::Runtime` and its use-cases), the same calls the CLI
//! makes, with structured values crossing as JSON text.
//!
//! - [`wait`]: the process's tokio runtime; waiting without the GIL; Ctrl-C and cancellation.
//! - [`errors`]: the exception hierarchy and the CLI's messages.
//! - [`api`]: the `Runtime` class (ask, memory, schedules, pool, agents, skills).
//! - [`stream`]: `ask_stream`'s iterator.

mod api;
mod errors;
mod stream;
mod wait;

use pyo3::prelude::*;

#[pymodule]
fn _zocalo(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<api::Runtime>()?;
    m.add_class::<stream::AskStream>()?;
    m.add_class::<wait::Cancel>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// Logs as the CLI writes them: `ZOCALO_LOG` (default warnings only) to stderr, every known
/// secret scrubbed. Once per process; a host that set up `tracing` itself keeps its own.
pub(crate) fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("ZOCALO_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,chromiumoxide=error"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(zocalo_llm::redact::RedactingWriter::new(std::io::stderr))
            .try_init();
    });
    // Keys set in the environment since the last call are scrubbed from messages too.
    zocalo_llm::redact::register_env();
}
