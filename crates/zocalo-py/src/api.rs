//! The `Runtime` class: one `zocalo_runtime::Runtime` (the same data home, config and
//! database as the CLI) and the calls the Python package makes on it. Each waiting call runs
//! on the process's tokio runtime through [`crate::wait::run`]; structured values cross as
//! JSON text (the Python layer parses them), in the shapes the CLI's `--json` prints.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use serde_json::{json, Value};
use zocalo_agent::{parse_tasks_jsonl, CancellationToken};
use zocalo_memory::{Metadata, NewMemory};
use zocalo_runtime::agents::{prepare, seconds, BatchOptions};
use zocalo_runtime::ask_json::{event_json, outcome_json};
use zocalo_runtime::jobs::Submit;
use zocalo_runtime::{automations, parse_conversation, Ask, ModelChoice, Options};
use zocalo_scheduler::Scheduler;

use crate::errors;
use crate::stream::{AskStream, Item};
use crate::wait::{run, tokio, Cancel};

/// Largest `count` of one `pool_submit` (the CLI's limit).
const MAX_SUBMIT: u64 = 1_000_000;

/// One opened runtime. Cheap to share between threads: every call clones the handle.
#[pyclass(frozen, module = "zocalo._zocalo")]
pub struct Runtime {
    rt: zocalo_runtime::Runtime,
}

fn to_json(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn parse_json(what: &str, text: &str) -> PyResult<Value> {
    serde_json::from_str(text).map_err(|e| errors::usage(format!("{what} is not JSON: {e}")))
}

fn choice(provider: Option<String>, model: Option<String>, no_tools: bool) -> ModelChoice {
    ModelChoice {
        provider,
        model,
        no_tools,
    }
}

/// The keyword arguments `ask` and `ask_stream` share.
struct AskArgs {
    message: String,
    conv_key: Option<String>,
    conversation_id: Option<String>,
    model: ModelChoice,
    persona: Option<String>,
    allow: Option<Vec<String>>,
    yes: bool,
}

/// The runtime's [`Ask`] from a Python call. Nobody can approve a tool from inside a
/// program: `ask` tools are refused unless allowed up front (`allow`, `yes`).
fn ask_of(a: AskArgs) -> PyResult<Ask> {
    Ok(Ask {
        message: a.message,
        conversation: parse_conversation(a.conversation_id.as_deref())
            .map_err(|e| errors::to_py(&e))?,
        conv_key: a.conv_key,
        model: a.model,
        persona: a.persona,
        allow: a.allow.unwrap_or_default(),
        yes: a.yes,
        approver: None,
        ..Ask::default()
    })
}

/// Cancels a batch's agents when the call waiting for it is dropped (Ctrl-C, cancellation).
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[pymethods]
impl Runtime {
    /// Opens the data home and the database (migrations run), as `zocalo` would.
    #[new]
    #[pyo3(signature = (home=None, database_url=None, cancel=None))]
    fn new(
        py: Python<'_>,
        home: Option<PathBuf>,
        database_url: Option<String>,
        cancel: Option<Cancel>,
    ) -> PyResult<Self> {
        crate::init_logging();
        let options = Options { home, database_url };
        let rt = run(py, cancel.as_ref(), zocalo_runtime::Runtime::open(options))?;
        Ok(Self { rt })
    }

    /// The data home in use.
    #[getter]
    fn home(&self) -> PathBuf {
        self.rt.home.root().to_path_buf()
    }

    /// The database in use, as shown to users (no password).
    #[getter]
    fn database(&self) -> String {
        self.rt.database_label()
    }

    /// One ask; returns `ask --json`'s document as JSON text.
    #[pyo3(signature = (message, conv_key=None, conversation_id=None, provider=None, model=None, no_tools=false, persona=None, allow=None, yes=false, cancel=None))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
    fn ask(
        &self,
        py: Python<'_>,
        message: String,
        conv_key: Option<String>,
        conversation_id: Option<String>,
        provider: Option<String>,
        model: Option<String>,
        no_tools: bool,
        persona: Option<String>,
        allow: Option<Vec<String>>,
        yes: bool,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let ask = ask_of(AskArgs {
            message,
            conv_key,
            conversation_id,
            model: choice(provider, model, no_tools),
            persona,
            allow,
            yes,
        })?;
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let outcome = rt.ask(ask, &mut |_| {}).await?;
            to_json(&outcome_json(&outcome))
        })
    }

    /// One ask whose events stream through the returned iterator.
    #[pyo3(signature = (message, conv_key=None, conversation_id=None, provider=None, model=None, no_tools=false, persona=None, allow=None, yes=false, cancel=None))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
    fn ask_stream(
        &self,
        message: String,
        conv_key: Option<String>,
        conversation_id: Option<String>,
        provider: Option<String>,
        model: Option<String>,
        no_tools: bool,
        persona: Option<String>,
        allow: Option<Vec<String>>,
        yes: bool,
        cancel: Option<Cancel>,
    ) -> PyResult<AskStream> {
        let ask = ask_of(AskArgs {
            message,
            conv_key,
            conversation_id,
            model: choice(provider, model, no_tools),
            persona,
            allow,
            yes,
        })?;
        let rt = self.rt.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio()?.spawn(async move {
            let events = tx.clone();
            let mut on_event = move |e: zocalo_agent::AskEvent| {
                let _ = events.send(Item::Event(event_json(&e).to_string()));
            };
            let result = match rt.ask(ask, &mut on_event).await {
                Ok(outcome) => to_json(&outcome_json(&outcome)),
                Err(e) => Err(e),
            };
            let _ = tx.send(Item::Done(result));
        });
        Ok(AskStream::new(rx, task.abort_handle(), cancel))
    }

    /// Remembers `text` in `scope` with `metadata` (a JSON object); returns the memory's id.
    #[pyo3(signature = (text, scope, metadata=None, cancel=None))]
    fn memory_add(
        &self,
        py: Python<'_>,
        text: String,
        scope: String,
        metadata: Option<String>,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let mut new = NewMemory::new(scope, text).with_source("python");
        if let Some(m) = metadata {
            new.metadata = match parse_json("metadata", &m)? {
                Value::Object(map) => map,
                Value::Null => Metadata::new(),
                _ => return Err(errors::usage("metadata must be a dict")),
            };
        }
        new.validate().map_err(|e| errors::to_py(&e.into()))?;
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let memory = rt.memory().await?;
            Ok(memory.memorize(new).await?.id)
        })
    }

    /// Hybrid search in `scopes`; JSON `[{"id","text","score","scope","metadata"}]`.
    #[pyo3(signature = (query, scopes, limit=10, cancel=None))]
    fn memory_search(
        &self,
        py: Python<'_>,
        query: String,
        scopes: Vec<String>,
        limit: usize,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let memory = rt.memory().await?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let hits = memory.recall(&query, &scopes, limit).await?;
            to_json(&zocalo_runtime::memory::hits_json(&hits))
        })
    }

    /// Deletes a memory for good.
    #[pyo3(signature = (id, cancel=None))]
    fn memory_forget(&self, py: Python<'_>, id: String, cancel: Option<Cancel>) -> PyResult<()> {
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            rt.memory().await?.forget(&id).await?;
            Ok(())
        })
    }

    /// `memory stats --json`.
    #[pyo3(signature = (cancel=None))]
    fn memory_stats(&self, py: Python<'_>, cancel: Option<Cancel>) -> PyResult<String> {
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            to_json(&rt.memory().await?.stats().await?)
        })
    }

    /// `schedule add`: the automation as JSON, and a warning when no worker runs its jobs.
    #[pyo3(signature = (name, rrule, start, tz, ask=None, skill=None, args=Vec::new(), shell=None, conversation_id=None, misfire=None, persona=None, deliver=None, cancel=None))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
    fn schedule_add(
        &self,
        py: Python<'_>,
        name: String,
        rrule: String,
        start: String,
        tz: String,
        ask: Option<String>,
        skill: Option<String>,
        args: Vec<String>,
        shell: Option<String>,
        conversation_id: Option<String>,
        misfire: Option<String>,
        persona: Option<String>,
        deliver: Option<String>,
        cancel: Option<Cancel>,
    ) -> PyResult<(String, Option<String>)> {
        let spec = automations::AddSpec {
            name,
            rrule,
            start,
            tz,
            action: automations::ActionSpec {
                ask,
                conversation: conversation_id,
                skill,
                skill_args: args,
                shell,
                persona,
                deliver,
            },
            misfire,
            catch_up: None,
        };
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let (added, warning) = automations::add(&rt, spec).await?;
            Ok((to_json(&added)?, warning))
        })
    }

    /// `schedule list --json`.
    #[pyo3(signature = (cancel=None))]
    fn schedule_list(&self, py: Python<'_>, cancel: Option<Cancel>) -> PyResult<String> {
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            to_json(&Scheduler::new(rt.store().await?).list().await?)
        })
    }

    /// `schedule rm|pause|resume NAME`; pause and resume return the automation as JSON.
    #[pyo3(signature = (verb, name, cancel=None))]
    fn schedule_change(
        &self,
        py: Python<'_>,
        verb: String,
        name: String,
        cancel: Option<Cancel>,
    ) -> PyResult<Option<String>> {
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let s = Scheduler::new(rt.store().await?);
            let now = chrono_now();
            Ok(match verb.as_str() {
                "remove" => {
                    s.remove(&name).await?;
                    None
                }
                "pause" => Some(to_json(&s.pause(&name, now).await?)?),
                "resume" => Some(to_json(&s.resume(&name, now).await?)?),
                other => anyhow::bail!("unknown schedule change {other:?}"),
            })
        })
    }

    /// `schedule runs NAME --json`.
    #[pyo3(signature = (name, limit=50, cancel=None))]
    fn schedule_runs(
        &self,
        py: Python<'_>,
        name: String,
        limit: i64,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        if limit < 1 {
            return Err(errors::usage("limit must be at least 1"));
        }
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            to_json(&Scheduler::new(rt.store().await?).runs(&name, limit).await?)
        })
    }

    /// `pool submit`: the jobs' ids, in order.
    #[pyo3(signature = (kind, payload, priority=0, labels=Vec::new(), count=1, key=None, max_attempts=None, timeout=None, cancel=None))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
    fn pool_submit(
        &self,
        py: Python<'_>,
        kind: String,
        payload: String,
        priority: i32,
        labels: Vec<String>,
        count: u64,
        key: Option<String>,
        max_attempts: Option<i32>,
        timeout: Option<f64>,
        cancel: Option<Cancel>,
    ) -> PyResult<Vec<String>> {
        let submit = Submit {
            priority,
            labels,
            key,
            count,
            max_attempts,
            timeout: seconds("timeout", timeout).map_err(|e| errors::to_py(&e))?,
            ..Submit::new(kind, parse_json("payload", &payload)?)
        };
        // Checked before the database is opened, as `pool submit` does.
        submit.jobs(MAX_SUBMIT).map_err(|e| errors::to_py(&e))?;
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let store = rt.store().await?;
            let enqueued = zocalo_runtime::jobs::submit(&store, &submit, MAX_SUBMIT).await?;
            Ok(enqueued.into_iter().map(|e| e.id).collect())
        })
    }

    /// `pool show ID --json`, or None.
    #[pyo3(signature = (id, cancel=None))]
    fn pool_get(
        &self,
        py: Python<'_>,
        id: String,
        cancel: Option<Cancel>,
    ) -> PyResult<Option<String>> {
        use zocalo_pool::JobQueue;
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let q = zocalo_pool::SqlQueue::new(rt.store().await?);
            q.get(&id).await?.map(|j| to_json(&j)).transpose()
        })
    }

    /// `pool stats --json`.
    #[pyo3(signature = (cancel=None))]
    fn pool_stats(&self, py: Python<'_>, cancel: Option<Cancel>) -> PyResult<String> {
        use zocalo_pool::JobQueue;
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            to_json(
                &zocalo_pool::SqlQueue::new(rt.store().await?)
                    .stats()
                    .await?,
            )
        })
    }

    /// `agents spawn-all --json` over JSONL tasks: one result per task, in input order.
    #[pyo3(signature = (tasks_jsonl, concurrency=None, provider=None, model=None, no_tools=false, timeout=None, deadline=None, on_pool=false, cancel=None))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
    fn agents_spawn_all(
        &self,
        py: Python<'_>,
        tasks_jsonl: String,
        concurrency: Option<usize>,
        provider: Option<String>,
        model: Option<String>,
        no_tools: bool,
        timeout: Option<f64>,
        deadline: Option<f64>,
        on_pool: bool,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let tasks = parse_tasks_jsonl(&tasks_jsonl).map_err(|e| errors::to_py(&e.into()))?;
        let options = BatchOptions {
            model: choice(provider, model, no_tools),
            timeout: seconds("timeout", timeout).map_err(|e| errors::to_py(&e))?,
            deadline: seconds("deadline", deadline).map_err(|e| errors::to_py(&e))?,
            on_pool,
        };
        let concurrency = concurrency.unwrap_or(self.rt.config.agents.concurrency);
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let prepared = prepare(&rt, &options, concurrency).await?;
            let _stop = CancelOnDrop(prepared.options.cancel.clone());
            let (report, _) = prepared.run(tasks, std::future::pending(), |_| {}).await?;
            to_json(&report.results)
        })
    }

    /// `skills list --json`: the skills of the data home, `~/.agents/skills` and
    /// `./.agents/skills`.
    fn skills_list(&self, py: Python<'_>) -> PyResult<String> {
        let rt = self.rt.clone();
        run(py, None, async move {
            let skills = rt.skills().list();
            to_json(&skills.iter().map(|s| s.as_ref()).collect::<Vec<_>>())
        })
    }

    /// Runs a skill's script: JSON `{"exit_code","stdout","stderr","timed_out","elapsed_ms"}`.
    #[pyo3(signature = (name, args=Vec::new(), script=None, timeout=60.0, cancel=None))]
    fn skills_run(
        &self,
        py: Python<'_>,
        name: String,
        args: Vec<String>,
        script: Option<String>,
        timeout: f64,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let timeout = seconds("timeout", Some(timeout))
            .map_err(|e| errors::to_py(&e))?
            .unwrap_or(Duration::from_secs(60));
        let rt = self.rt.clone();
        run(py, cancel.as_ref(), async move {
            let out = rt
                .run_skill(&rt.skills(), &name, script.as_deref(), &args, timeout)
                .await?;
            to_json(&json!({
                "exit_code": out.exit_code,
                "stdout": out.stdout,
                "stderr": out.stderr,
                "timed_out": out.timed_out,
                "elapsed_ms": out.elapsed_ms,
            }))
        })
    }

    /// Closes the database connections; calls that need the database fail after this.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let rt = self.rt.clone();
        run(py, None, async move {
            rt.close().await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Zocalo(home={:?}, database={:?})",
            self.rt.home.root().display().to_string(),
            self.rt.database_label()
        )
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
