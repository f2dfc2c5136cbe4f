//! `zocalo worker`: join the compute pool as a node. Runs `noop`, `shell` and `ask` jobs
//! (the ask loop with the configured providers) until SIGTERM / Ctrl-C, or with `--drain`
//! until nothing is left. On SIGTERM it stops claiming, lets running jobs finish for the
//! shutdown grace, and hands the rest back to the queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use zocalo_agent::AskRequest;
use zocalo_core::ConversationId;
use zocalo_pool::{
    parse_labels, Handler, JobError, JobRun, Registry, RetryPolicy, SqlQueue, Worker, WorkerConfig,
};

use crate::cli::ModelArgs;
use crate::exit::usage;
use crate::wiring::Ctx;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// This node's labels (comma-separated): it runs jobs whose labels it all has.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Exit when no job this node could run is queued or running.
    #[arg(long)]
    pub drain: bool,
    /// Seconds this node may be silent before its running jobs are reclaimed by others.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub node_timeout: f64,
    /// Seconds running jobs may take to finish on SIGTERM before they are handed back.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub shutdown_grace: f64,
    /// Milliseconds between looks for work when idle (SQLite has no wake-up; Postgres uses
    /// LISTEN/NOTIFY and polls only as a fallback).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// First retry delay in milliseconds; it doubles per attempt (with jitter), up to an hour.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Print a JSON report {"node_id","succeeded","failed",...} on exit.
    #[arg(long)]
    pub json: bool,
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e7) {
        return Err(usage(format!(
            "--{flag} must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

pub async fn run(ctx: &Ctx, args: WorkerArgs) -> anyhow::Result<()> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        labels: parse_labels(&args.labels)?,
        drain: args.drain,
        node_timeout: seconds("node-timeout", args.node_timeout)?,
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        shutdown_grace: seconds("shutdown-grace", args.shutdown_grace)?,
        stop_grace: Duration::from_secs(10),
    };
    config.validate()?;
    if args.retry_base_ms == 0 {
        return Err(usage("--retry-base-ms must be at least 1"));
    }
    let store = ctx.store().await?;
    let worker = pool_worker_with(
        ctx,
        store.clone(),
        config,
        Duration::from_millis(args.retry_base_ms),
    )?;
    eprintln!(
        "worker {} joined the pool (concurrency {})",
        worker.node_id(),
        args.concurrency
    );
    let report = worker.run(shutdown_signal()).await;
    // Bounded like the worker's own stop: a stalled database must not keep the process alive.
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("closing the database connections took over 5 s; exiting without");
    }
    let report = report?;
    eprintln!(
        "worker {} stopped: {} succeeded, {} failed, {} cancelled, {} handed back",
        report.node_id, report.succeeded, report.failed, report.cancelled, report.released
    );
    if args.json {
        return super::print_json(&serde_json::to_value(&report)?);
    }
    Ok(())
}

/// The worker settings `zocalo worker` uses without flags.
pub fn default_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        labels: Vec::new(),
        drain: false,
        node_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(250),
        shutdown_grace: Duration::from_secs(10),
        stop_grace: Duration::from_secs(10),
    }
}

/// A pool worker on `store` with every job kind this build runs (noop, shell, ask, skill);
/// the daemon's local worker is one of these.
pub fn pool_worker(
    ctx: &Ctx,
    store: zocalo_store::Store,
    config: WorkerConfig,
) -> anyhow::Result<Worker> {
    pool_worker_with(ctx, store, config, Duration::from_secs(1))
}

fn pool_worker_with(
    ctx: &Ctx,
    store: zocalo_store::Store,
    config: WorkerConfig,
    retry_base: Duration,
) -> anyhow::Result<Worker> {
    let queue = SqlQueue::new(store.clone()).with_retry(RetryPolicy {
        base: retry_base,
        cap: Duration::from_secs(3600),
    });
    let mut registry = Registry::builtin();
    registry.register(
        "ask",
        Arc::new(AskHandler {
            ctx: Ctx::load(ctx.database_url.clone())?,
            store,
            askers: Default::default(),
        }),
    );
    registry.register(
        "skill",
        Arc::new(SkillHandler {
            home: ctx.home.root().to_path_buf(),
        }),
    );
    Ok(Worker::new(queue, registry, config)?)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The `ask` payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskPayload {
    pub message: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Set by `agents spawn-all --on-pool`: the agent's depth in the agent tree, so the
    /// `spawn_agents` tool's depth limit holds on the worker too.
    #[serde(default)]
    pub depth: Option<u32>,
}

impl AskPayload {
    pub fn parse(p: &Value) -> Result<AskPayload, String> {
        const SHAPE: &str =
            r#"expected {"message": "...", "conversation_id"?, "provider"?, "model"?, "depth"?}"#;
        if !p.is_object() {
            return Err(SHAPE.into());
        }
        let a: AskPayload =
            serde_json::from_value(p.clone()).map_err(|e| format!("{e}; {SHAPE}"))?;
        if a.message.trim().is_empty() {
            return Err("`message` is empty".into());
        }
        if let Some(c) = &a.conversation_id {
            c.parse::<ConversationId>().map_err(|_| {
                format!("`conversation_id` {c:?} is not a conversation id (conv_…)")
            })?;
        }
        Ok(a)
    }
}

/// Runs the ask loop: payload {"message","conversation_id"?,"provider"?,"model"?} → result
/// {"conversation_id","text"}. A missing key or unknown provider fails the job for good;
/// provider outages are retried.
///
/// The ask loop for each (provider, model) is built once per worker and shared by its jobs:
/// building it loads the provider (the local model's weights), the skills and the memory
/// indexes, which would otherwise be repeated for every job.
struct AskHandler {
    ctx: Ctx,
    store: zocalo_store::Store,
    askers: tokio::sync::Mutex<std::collections::HashMap<AskerKey, AskerFor>>,
}

type AskerKey = (Option<String>, Option<String>);
/// An ask loop and the model it should ask (None: the provider's default).
type AskerFor = (Arc<zocalo_agent::Asker>, Option<String>);

impl AskHandler {
    async fn asker(&self, p: &AskPayload) -> Result<AskerFor, JobError> {
        let key = (p.provider.clone(), p.model.clone());
        let mut askers = self.askers.lock().await;
        if let Some(found) = askers.get(&key) {
            return Ok(found.clone());
        }
        let (provider, model) = self
            .ctx
            .provider(&ModelArgs {
                provider: p.provider.clone(),
                model: p.model.clone(),
                no_tools: false,
            })
            .map_err(|e| JobError::fatal(format!("{e:#}")))?;
        let built = (
            // Many ask jobs at once share the provider's rate gate (requests_per_minute).
            self.ctx
                .asker(self.store.clone(), self.ctx.throttled(provider), true),
            model,
        );
        askers.insert(key, built.clone());
        Ok(built)
    }
}

#[async_trait]
impl Handler for AskHandler {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        AskPayload::parse(payload).map(drop)
    }

    async fn run(&self, mut job: JobRun) -> Result<Value, JobError> {
        let p = AskPayload::parse(&job.payload).map_err(JobError::fatal)?;
        let (asker, model) = self.asker(&p).await?;
        let conversation = p
            .conversation_id
            .as_deref()
            .map(str::parse::<ConversationId>)
            .transpose()
            .map_err(|e| JobError::fatal(e.to_string()))?;
        let request = AskRequest {
            conversation,
            message: p.message,
            model,
        };
        let mut ignore = |_| {};
        let ask = zocalo_agent::at_depth(p.depth.unwrap_or(0), asker.ask(request, &mut ignore));
        tokio::select! {
            r = ask => match r {
                Ok(o) => Ok(json!({"conversation_id": o.conversation_id, "text": o.text})),
                Err(e) if e.is_usage() => Err(JobError::fatal(e.to_string())),
                Err(e) => Err(JobError::retry(e.to_string())),
            },
            reason = job.stop.stopped() => Err(JobError::retry(format!("stopped ({reason:?})"))),
        }
    }
}

/// Runs a skill's script on this worker: payload {"name","args"?} → result {"exit_code",
/// "stdout","stderr","sandbox"}. Skills are discovered as `zocalo skills` finds them on this
/// machine; scripts run through the same sandboxed runner (Landlock launcher, clean
/// environment, time and output limits). A skill this worker does not have fails the job for
/// good; a script that exits non-zero or times out is retried like a shell job.
struct SkillHandler {
    home: std::path::PathBuf,
}

#[derive(Debug, Deserialize)]
struct SkillPayload {
    name: String,
    #[serde(default)]
    args: Vec<String>,
}

#[async_trait]
impl Handler for SkillHandler {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        super::pool::validate_skill(payload)
    }

    async fn run(&self, mut job: JobRun) -> Result<Value, JobError> {
        super::pool::validate_skill(&job.payload).map_err(JobError::fatal)?;
        let p: SkillPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::fatal(e.to_string()))?;
        let skills = zocalo_skills::Skills::load(zocalo_skills::default_roots(&self.home, &[]));
        let skill = skills
            .get(&p.name)
            .map_err(|e| JobError::fatal(format!("on this worker: {e}")))?;
        let limits = zocalo_skills::RunLimits {
            launcher: std::env::current_exe().ok(),
            ..zocalo_skills::RunLimits::default()
        };
        let out = tokio::select! {
            r = zocalo_skills::run_script(&skill, None, &p.args, &limits) => {
                r.map_err(|e| JobError::fatal(e.to_string()))?
            }
            reason = job.stop.stopped() => {
                return Err(JobError::retry(format!("stopped ({reason:?})")));
            }
        };
        let result = json!({
            "exit_code": out.exit_code, "stdout": out.stdout, "stderr": out.stderr,
            "timed_out": out.timed_out, "sandbox": out.sandbox, "elapsed_ms": out.elapsed_ms,
        });
        if out.success() {
            Ok(result)
        } else {
            Err(JobError::retry(format!(
                "skill {} {}: {}",
                p.name,
                if out.timed_out {
                    "timed out".to_string()
                } else {
                    format!("exited with {:?}", out.exit_code)
                },
                out.stderr.trim()
            )))
        }
    }
}
