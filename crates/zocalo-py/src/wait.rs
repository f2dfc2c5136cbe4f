//! One tokio runtime per process, and waiting on it from Python: without the GIL, waking
//! every 50 ms to run Python's signal handlers (so Ctrl-C raises `KeyboardInterrupt`) and to
//! look at a [`Cancel`] flag (how an `a*` twin's cancelled asyncio task stops the work). Either
//! aborts the task: its future is dropped, so an ask in flight stores nothing.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors;

/// How often a waiting call looks at signals and its cancel flag.
pub const TICK: Duration = Duration::from_millis(50);

static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The process's tokio runtime (multi-thread: the runtime's blocking sections need it).
pub fn tokio() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = TOKIO.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zocalo")
        .build()
        .map_err(|e| errors::error(format!("cannot start the async runtime: {e}")))?;
    // A racing thread may have set one first: keep that, drop ours.
    let _ = TOKIO.set(rt);
    TOKIO
        .get()
        .ok_or_else(|| errors::error("the async runtime is gone"))
}

/// A flag the Python layer sets to stop a call that waits in another thread.
#[pyclass(frozen, from_py_object, module = "zocalo._zocalo")]
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

#[pymethods]
impl Cancel {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Stop the call this flag was given to (at its next check, within 50 ms).
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.is_set()
    }
}

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a waiting call should stop now: a pending signal's exception (KeyboardInterrupt), or
/// the cancel flag.
pub fn interrupted(py: Python<'_>, cancel: Option<&Cancel>) -> Option<PyErr> {
    if let Err(e) = py.check_signals() {
        return Some(e);
    }
    cancel
        .filter(|c| c.is_set())
        .map(|_| errors::error("cancelled"))
}

/// Runs `fut` on the process's runtime and waits for it; see the module docs.
pub fn run<T, F>(py: Python<'_>, cancel: Option<&Cancel>, fut: F) -> PyResult<T>
where
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = tokio()?;
    let mut task = rt.spawn(fut);
    loop {
        let polled =
            py.detach(|| rt.block_on(async { tokio::time::timeout(TICK, &mut task).await }));
        match polled {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(e))) => return Err(errors::to_py(&e)),
            Ok(Err(join)) => return Err(errors::error(format!("the call failed: {join}"))),
            Err(_still_running) => {}
        }
        if let Some(e) = interrupted(py, cancel) {
            task.abort();
            // Wait for the abort to land, so nothing of the call runs on after this returns.
            py.detach(|| {
                rt.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                })
            });
            return Err(e);
        }
    }
}
