//! `zocalo agents`: spawn one or thousands of sub-agents, here or on the pool, and look at
//! past batches. A thin layer over `zocalo_agent::Spawner`.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zocalo_agent::{
    parse_tasks_jsonl, AgentAnswer, AgentEvent, AgentResult, AgentRun, AgentRunner, AgentTask,
    BatchReport, Batches, CancellationToken, SpawnOptions, Spawner,
};
use zocalo_pool::{Job, JobQueue, JobState, NewJob, SqlQueue};

use crate::cli::ModelArgs;
use crate::exit::usage;
use crate::wiring::Ctx;

#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Run one agent on PROMPT and print its answer.
    Spawn(SpawnArgs),
    /// Run one agent per line of FILE.jsonl ({"id","prompt"}), in parallel; results in input
    /// order.
    SpawnAll(SpawnAllArgs),
    /// Past batches, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One batch and its agents, in input order.
    Show {
        /// A batch id (batch_…), as spawn-all prints it.
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Flags shared by `spawn` and `spawn-all`.
#[derive(Debug, Args)]
pub struct RunFlags {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Seconds one agent may run (default: `[agents] timeout_secs` in config.toml, else none).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Seconds the whole batch may run; agents still running then stop.
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<f64>,
    /// Run each agent as an `ask` job on the compute pool (workers anywhere run them).
    #[arg(long)]
    pub on_pool: bool,
    /// Print JSON: one object for spawn, one array in input order for spawn-all.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpawnArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// The prompt.
    #[arg(required = true, num_args = 1.., value_name = "PROMPT")]
    pub prompt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SpawnAllArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// Agents running at once (default: `[agents] concurrency` in config.toml, else 16).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// JSONL file, one {"id": "...", "prompt": "..."} per line; `-` reads stdin.
    #[arg(value_name = "FILE.jsonl")]
    pub file: PathBuf,
}

pub async fn run(ctx: &Ctx, cmd: AgentsCmd) -> anyhow::Result<()> {
    match cmd {
        AgentsCmd::Spawn(args) => spawn_one(ctx, args).await,
        AgentsCmd::SpawnAll(args) => spawn_all(ctx, args).await,
        AgentsCmd::List { limit, json } => list(ctx, limit, json).await,
        AgentsCmd::Show { id, json } => show(ctx, &id, json).await,
    }
}

fn seconds(flag: &str, v: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(usage(format!(
            "--{flag} must be a positive number of seconds, got {s}"
        ))),
    }
}

/// What both spawn commands need, checked and built before any agent starts.
struct Prepared {
    spawner: Spawner,
    options: SpawnOptions,
    store: zocalo_store::Store,
    pool_waiter: Option<Arc<JobWaiter>>,
}

async fn prepare(ctx: &Ctx, flags: &RunFlags, concurrency: usize) -> anyhow::Result<Prepared> {
    let timeout =
        seconds("timeout", flags.timeout)?.or(seconds("timeout", ctx.config.agents.timeout_secs)?);
    let deadline = seconds("deadline", flags.deadline)?;
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
        let asker = ctx.agent_asker(store.clone(), provider, !flags.model.no_tools);
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

/// Ctrl-C cancels the batch: running agents stop, the rest never start, all are recorded.
fn cancel_on_ctrl_c(token: &CancellationToken) -> tokio::task::JoinHandle<bool> {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if r.is_ok() {
                    eprintln!("\ncancelling: stopping running agents (they are recorded as cancelled)");
                    token.cancel();
                    return true;
                }
                false
            }
            _ = token.cancelled() => false,
        }
    })
}

async fn execute(
    prepared: Prepared,
    tasks: Vec<AgentTask>,
    progress: bool,
) -> anyhow::Result<(BatchReport, bool)> {
    let Prepared {
        spawner,
        options,
        store,
        pool_waiter,
    } = prepared;
    let cancel = options.cancel.clone();
    let interrupted = cancel_on_ctrl_c(&cancel);
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(tasks.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} done ({msg})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let (mut running, mut failed) = (0usize, 0usize);
    let report = spawner
        .spawn_all(tasks, options, |event| {
            match &event {
                AgentEvent::Started { .. } => running += 1,
                AgentEvent::Finished(r) => {
                    running = running.saturating_sub(1);
                    if !r.is_ok() {
                        failed += 1;
                    }
                }
            }
            if let Some(bar) = &bar {
                if matches!(event, AgentEvent::Finished(_)) {
                    bar.inc(1);
                }
                bar.set_message(format!("{running} running, {failed} failed"));
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    cancel.cancel();
    let interrupted = interrupted.await.unwrap_or(false);
    if let Some(w) = pool_waiter {
        w.stop();
    }
    store.close().await;
    Ok((report?, interrupted))
}

fn result_json(r: &AgentResult) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

async fn spawn_one(ctx: &Ctx, args: SpawnArgs) -> anyhow::Result<()> {
    let prompt = args.prompt.join(" ");
    if prompt.trim().is_empty() {
        return Err(usage("the prompt is empty: say what the agent should do"));
    }
    let prepared = prepare(ctx, &args.flags, 1).await?;
    let task = AgentTask::new("agent", prompt);
    let (report, interrupted) = execute(prepared, vec![task], false).await?;
    let Some(r) = report.results.first() else {
        anyhow::bail!("the agent left no result");
    };
    if args.flags.json {
        let mut v = result_json(r);
        v["batch_id"] = Value::from(report.batch_id.clone());
        super::print_json(&v)?;
    } else if let Some(out) = &r.output {
        println!("{out}");
    }
    if interrupted {
        std::process::exit(130);
    }
    if !r.is_ok() {
        anyhow::bail!(
            "the agent failed: {}",
            r.error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(())
}

fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read the tasks from stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

async fn spawn_all(ctx: &Ctx, args: SpawnAllArgs) -> anyhow::Result<()> {
    // Every line is checked before anything connects or runs.
    let text = read_input(&args.file)?;
    let tasks =
        parse_tasks_jsonl(&text).map_err(|e| usage(format!("{}: {e}", args.file.display())))?;
    let concurrency = args.concurrency.unwrap_or(ctx.config.agents.concurrency);
    let prepared = prepare(ctx, &args.flags, concurrency).await?;
    if tasks.is_empty() {
        eprintln!("{}: no tasks", args.file.display());
    }
    let progress = std::io::stderr().is_terminal() && !tasks.is_empty();
    let (report, interrupted) = execute(prepared, tasks, progress).await?;
    if args.flags.json {
        let all: Vec<Value> = report.results.iter().map(result_json).collect();
        super::print_json(&Value::Array(all))?;
    } else {
        for r in &report.results {
            match (&r.output, &r.error) {
                (Some(out), _) => println!("[{}] ok, {} ms\n{out}\n", r.id, r.elapsed_ms),
                (None, err) => println!(
                    "[{}] error ({}), {} ms: {}\n",
                    r.id,
                    r.error_kind.map(|k| k.as_str()).unwrap_or("failed"),
                    r.elapsed_ms,
                    err.as_deref().unwrap_or("")
                ),
            }
        }
    }
    let ok = report.ok_count();
    eprintln!(
        "batch {}: {ok} ok, {} error, {:.3} s (details: zocalo agents show {})",
        report.batch_id,
        report.results.len() - ok,
        report.elapsed_ms as f64 / 1000.0,
        report.batch_id
    );
    if interrupted {
        std::process::exit(130);
    }
    Ok(())
}

async fn list(ctx: &Ctx, limit: i64, json_out: bool) -> anyhow::Result<()> {
    if limit < 0 {
        return Err(usage("--limit must be at least 0"));
    }
    let store = ctx.store().await?;
    let batches = Batches::new(store.clone()).list(limit).await;
    store.close().await;
    let batches = batches?;
    if json_out {
        return super::print_json(&serde_json::to_value(&batches)?);
    }
    if batches.is_empty() {
        eprintln!("no batches yet: start one with `zocalo agents spawn-all FILE.jsonl`");
    }
    for b in &batches {
        println!(
            "{}  {}  {:<9}  {}/{} ok  {} error  {} pending  ({}{})",
            b.id,
            b.created_at,
            b.state.as_str(),
            b.ok,
            b.total,
            b.error,
            b.pending,
            b.runner,
            b.provider
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn show(ctx: &Ctx, id: &str, json_out: bool) -> anyhow::Result<()> {
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
    let store = ctx.store().await?;
    let detail = Batches::new(store.clone()).show(id).await;
    store.close().await;
    let Some(detail) = detail? else {
        return Err(usage(format!(
            "no batch {id}: list them with `zocalo agents list`"
        )));
    };
    if json_out {
        return super::print_json(&serde_json::to_value(&detail)?);
    }
    let b = &detail.batch;
    println!(
        "batch {}  {}  {}: {}/{} ok, {} error, {} pending",
        b.id,
        b.created_at,
        b.state.as_str(),
        b.ok,
        b.total,
        b.error,
        b.pending
    );
    if let Some(parent) = &b.parent_conversation_id {
        println!("spawned by conversation {parent} (depth {})", b.depth);
    }
    for a in &detail.agents {
        let detail = match (&a.output, &a.error) {
            (Some(out), _) => out.lines().next().unwrap_or("").to_owned(),
            (None, Some(err)) => format!("{}: {err}", a.error_kind.as_deref().unwrap_or("error")),
            (None, None) => String::new(),
        };
        println!(
            "  [{}] {}{}  {}",
            a.id,
            a.status,
            a.elapsed_ms
                .map(|ms| format!(" {ms} ms"))
                .unwrap_or_default(),
            detail
        );
    }
    Ok(())
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

    async fn run(&self, run: &AgentRun) -> Result<AgentAnswer, String> {
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
            )),
        }
    }
}

/// Waits for many pool jobs with one query per tick, not one per job.
struct JobWaiter {
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

    fn stop(&self) {
        self.stop.cancel();
    }
}
