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
    zocalo_runtime::logging::init(0);
}
