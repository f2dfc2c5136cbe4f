//! `ask_stream`: the ask runs as a task on the process's runtime; its events come through a
//! channel to a Python iterator. Dropping the iterator (or Ctrl-C while it waits) aborts the
//! ask, which then stores nothing.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;

use pyo3::prelude::*;

use crate::errors;
use crate::wait::{interrupted, Cancel, TICK};

/// What the ask's task sends: events as JSON text, then the answer (or the error).
pub enum Item {
    Event(String),
    Done(anyhow::Result<String>),
}

/// The events of one ask as JSON text: `{"type": "text"|"tool_call"|"tool_result", ...}`,
/// then `{"type": "done", "answer": {...}}`.
#[pyclass(module = "zocalo._zocalo")]
pub struct AskStream {
    rx: Mutex<Receiver<Item>>,
    task: tokio::task::AbortHandle,
    cancel: Option<Cancel>,
    done: bool,
}

impl AskStream {
    pub fn new(rx: Receiver<Item>, task: tokio::task::AbortHandle, cancel: Option<Cancel>) -> Self {
        Self {
            rx: Mutex::new(rx),
            task,
            cancel,
            done: false,
        }
    }
}

impl Drop for AskStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[pymethods]
impl AskStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        if self.done {
            return Ok(None);
        }
        let rx = &self.rx;
        loop {
            let got = py.detach(|| match rx.lock() {
                Ok(rx) => rx.recv_timeout(TICK),
                Err(_) => Err(RecvTimeoutError::Disconnected),
            });
            match got {
                Ok(Item::Event(json)) => return Ok(Some(json)),
                Ok(Item::Done(Ok(answer))) => {
                    self.done = true;
                    return Ok(Some(format!(r#"{{"type":"done","answer":{answer}}}"#)));
                }
                Ok(Item::Done(Err(e))) => {
                    self.done = true;
                    return Err(errors::to_py(&e));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Err(errors::error("the ask stopped without an answer"));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(e) = interrupted(py, self.cancel.as_ref()) {
                self.task.abort();
                self.done = true;
                return Err(e);
            }
        }
    }

    /// Stop the ask (nothing is stored); the iterator ends.
    fn close(&mut self) {
        self.task.abort();
        self.done = true;
    }
}
