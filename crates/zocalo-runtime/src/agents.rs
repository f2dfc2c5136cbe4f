//! Sub-agent batches as the runtime runs them: here (the ask loop of the chosen provider) or
//! on the compute pool (one `ask` job per agent, waited for).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_agent::{
    AgentAnswer, AgentRun, AgentRunner, Batches, CancellationToken, RunError, SpawnOptions, Spawner,
};
use zocalo_pool::{Job, JobQueue, JobState, NewJob, SqlQueue};

use crate::errors::usage;
use crate::{ModelChoice, Runtime};

/// A positive number of seconds (a usage error names `flag` otherwise).
pub fn seconds(flag: &str, v: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(usage(format!(
            "--{flag} must be a positive number of seconds, got {s}"
        ))),
    }
}

/// What both spawn commands need, checked and built before any agent starts.
pub struct Prepared {
    pub spawner: Spawner,
    pub options: SpawnOptions,
    pub store: zocalo_store::Store,
    /// For agents on the pool: stop it when the batch is done.
    pub pool_waiter: Option<Arc<JobWaiter>>,
}

impl Prepared {
    /// Runs the batch: `on_event` sees each agent start and finish. When `interrupt` completes
    /// first, the batch is cancelled (running agents stop, the rest never start, all are
    /// recorded) and the report says so with `true`.
    pub async fn run(
        self,
        tasks: Vec<zocalo_agent::AgentTask>,
        interrupt: impl std::future::Future<Output = ()> + Send + 'static,
        on_event: impl FnMut(zocalo_agent::AgentEvent) + Send,
    ) -> anyhow::Result<(zocalo_agent::BatchReport, bool)> {
        let cancel = self.options.cancel.clone();
        let token = cancel.clone();
        let interrupted = tokio::spawn(async move {
            tokio::select! {
                () = interrupt => { token.cancel(); true }
                () = token.cancelled() => false,
            }
        });
        let report = self.spawner.spawn_all(tasks, self.options, on_event).await;
        cancel.cancel();
        let interrupted = interrupted.await.unwrap_or(false);
        if let Some(w) = self.pool_waiter {
            w.stop();
        }
        Ok((report?, interrupted))
    }
}

/// `agents list`: the `limit` most recent batches, newest first.
pub async fn list(ctx: &Runtime, limit: i64) -> anyhow::Result<Vec<zocalo_agent::BatchSummary>> {
    if limit < 0 {
        return Err(usage("--limit must be at least 0"));
    }
    Ok(Batches::new(ctx.store().await?).list(limit).await?)
}

/// `agents show ID`: one batch and its agents in input order; a malformed or unknown id is
/// bad input.
pub async fn show(ctx: &Runtime, id: &str) -> anyhow::Result<zocalo_agent::BatchDetail> {
    let valid = id.strip_prefix("batch_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid {
        return Err(usage(format!(
            "invalid batch id {id:?}: ids look like batch_0192f… (see `zocalo agents list`)"
        )));
    }
    let detail = Batches::new(ctx.store().await?).show(id).await?;
    detail.ok_or_else(|| {
        usage(format!(
            "no batch {id}: list them with `zocalo agents list`"
        ))
    })
}

/// How to run a batch of agents.
#[derive(Clone, Debug, Default)]
pub struct BatchOptions {
    pub model: ModelChoice,
    /// One agent's time limit (default `[agents] timeout_secs`).
    pub timeout: Option<Duration>,
    /// The whole batch's time limit.
    pub deadline: Option<Duration>,
    /// Run each agent as an `ask` job on the compute pool.
    pub on_pool: bool,
}

/// Checks the options and builds the spawner (here, or on the pool) before any agent starts.
pub async fn prepare(
    ctx: &Runtime,
    flags: &BatchOptions,
    concurrency: usize,
) -> anyhow::Result<Prepared> {
    let timeout = match flags.timeout {
        Some(t) => Some(t),
        None => seconds("timeout", ctx.config.agents.timeout_secs)?,
    };
    let deadline = flags.deadline;
    if concurrency == 0 {
        return Err(usage("--concurrency must be at least 1"));
    }
    let (spawner, model, store, pool_waiter) = if flags.on_pool {
        // The workers resolve providers and keys themselves; check here only that the name
        // is known, so a typo fails before anything is queued.
        if let Some(p) = &flags.model.provider {
            if p != zocalo_local::PROVIDER_NAME {
                ctx.registry()?.spec(p)?;
            }
        }
        let store = ctx.store().await?;
        let queue = SqlQueue::new(store.clone());
        let waiter = JobWaiter::start(queue.clone());
        let runner = PoolRunner {
            queue,
            batches: Batches::new(store.clone()),
            provider: flags.model.provider.clone(),
            model: flags.model.model.clone(),
            timeout,
            waiter: Arc::clone(&waiter),
        };
        let spawner = Spawner::new(Arc::new(runner)).with_store(store.clone());
        (spawner, None, store, Some(waiter))
    } else {
        let (provider, model) = ctx.provider(&flags.model)?;
        let store = ctx.store().await?;
        let asker = ctx.agent_asker(&store, provider, !flags.model.no_tools);
        let spawner = Spawner::new(asker).with_store(store.clone());
        (spawner, model, store, None)
    };
    let options = SpawnOptions {
        concurrency,
        timeout,
        deadline,
        cancel: CancellationToken::new(),
        model,
        parent: None,
    };
    Ok(Prepared {
        spawner,
        options,
        store,
        pool_waiter,
    })
}

/// Runs each agent as an `ask` job on the pool and waits for its result. A stopped agent
/// (timeout, cancel) cancels its job.
struct PoolRunner {
    queue: SqlQueue,
    batches: Batches,
    provider: Option<String>,
    model: Option<String>,
    timeout: Option<Duration>,
    waiter: Arc<JobWaiter>,
}

/// Cancels the job if the agent stops before the job ended.
struct CancelOnDrop {
    queue: SqlQueue,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let queue = self.queue.clone();
            let id = std::mem::take(&mut self.id);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = queue.cancel(&id).await {
                        tracing::warn!(job = %id, "cannot cancel the job of a stopped agent: {e}");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl AgentRunner for PoolRunner {
    fn kind(&self) -> &'static str {
        "pool"
    }

    fn provider(&self) -> Option<String> {
        self.provider.clone()
    }

    async fn run(&self, run: &AgentRun) -> Result<AgentAnswer, RunError> {
        // The depth travels with the job: the worker runs the ask at it, so a pooled agent
        // that calls `spawn_agents` is held to the same depth limit as a local one.
        let mut payload = json!({"message": run.prompt, "depth": run.depth});
        if let Some(p) = &self.provider {
            payload["provider"] = Value::from(p.as_str());
        }
        if let Some(m) = &self.model {
            payload["model"] = Value::from(m.as_str());
        }
        let mut job = NewJob::new("ask", payload);
        // The idempotency key makes a retried enqueue of this agent find its job.
        job.key = Some(format!("{}:{}", run.batch_id, run.index));
        if let Some(t) = self.timeout {
            job.timeout = t;
        }
        let enqueued = self
            .queue
            .enqueue(&[job])
            .await
            .map_err(|e| format!("cannot queue the ask job: {e}"))?;
        let Some(id) = enqueued.into_iter().next().map(|e| e.id) else {
            return Err("the pool returned no job id".into());
        };
        let mut guard = CancelOnDrop {
            queue: self.queue.clone(),
            id: id.clone(),
            armed: true,
        };
        if let Err(e) = self.batches.set_job(&run.batch_id, run.index, &id).await {
            tracing::warn!(job = %id, "cannot note the job of agent {}: {e}", run.task_id);
        }
        let job = self.waiter.wait(&id).await?;
        guard.armed = false;
        match job.state {
            JobState::Succeeded => {
                let result = job.result.unwrap_or(Value::Null);
                Ok(AgentAnswer {
                    text: result["text"].as_str().unwrap_or_default().to_owned(),
                    conversation_id: result["conversation_id"]
                        .as_str()
                        .and_then(|c| c.parse().ok()),
                    job_id: Some(id),
                })
            }
            state => Err(format!(
                "pool job {id} {state}: {}",
                job.error.unwrap_or_else(|| "no error recorded".into())
            )
            .into()),
        }
    }
}

/// Waits for many pool jobs with one query per tick, not one per job.
pub struct JobWaiter {
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Job>>>,
    stop: CancellationToken,
}

const POLL: Duration = Duration::from_millis(100);

impl JobWaiter {
    fn start(queue: SqlQueue) -> Arc<Self> {
        let waiter = Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        let w = Arc::clone(&waiter);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = w.stop.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => {}
                }
                let ids: Vec<String> = w.lock().keys().cloned().collect();
                if ids.is_empty() {
                    continue;
                }
                match queue.get_many(&ids).await {
                    Ok(jobs) => {
                        let mut waiting = w.lock();
                        for job in jobs.into_iter().filter(|j| j.state.is_final()) {
                            if let Some(tx) = waiting.remove(&job.id) {
                                let _ = tx.send(job);
                            }
                        }
                    }
                    Err(e) => tracing::warn!("cannot read the state of pool jobs: {e}"),
                }
            }
        });
        waiter
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::sync::oneshot::Sender<Job>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait(&self, id: &str) -> Result<Job, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock().insert(id.to_owned(), tx);
        let r = rx
            .await
            .map_err(|_| "stopped waiting for the pool".to_string());
        self.lock().remove(id);
        r
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}
