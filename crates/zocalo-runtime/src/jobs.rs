//! The pool's job kinds this build runs: `noop` and `shell` (built into zocalo-pool), `ask`
//! (the ask loop with the configured providers) and `skill` (a skill's script in the sandbox),
//! and the workers that run them (`zocalo worker`, the daemon's local worker).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use zocalo_agent::AskRequest;
use zocalo_core::ConversationId;
use zocalo_pool::{
    parse_labels, Enqueued, Handler, JobError, JobQueue, JobRun, NewJob, Registry, RetryPolicy,
    SqlQueue, Worker, WorkerConfig,
};
use zocalo_store::Store;

use crate::errors::usage;

use crate::{ModelChoice, Runtime};

/// The kinds `pool submit` accepts: the built-in runners plus the kinds the CLI's workers run
/// (`ask`) or that other nodes may run (`skill`).
pub fn submit_registry() -> Registry {
    let mut r = Registry::builtin();
    r.declare("ask", |p| AskPayload::parse(p).map(drop));
    r.declare("skill", validate_skill);
    r.declare("deliver", crate::channels::validate_deliver);
    r
}

/// A submission of `count` identical jobs (`pool submit`, MCP `pool_submit`, the model's
/// `pool_submit` tool).
#[derive(Clone, Debug)]
pub struct Submit {
    pub kind: String,
    pub payload: Value,
    /// -1000 to 1000; higher runs first.
    pub priority: i32,
    /// Only nodes with all of these labels run the jobs.
    pub labels: Vec<String>,
    /// With `count` > 1 the jobs get the keys KEY#1 ... KEY#N.
    pub key: Option<String>,
    pub count: u64,
    pub max_attempts: Option<i32>,
    pub timeout: Option<Duration>,
}

impl Submit {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            priority: 0,
            labels: Vec::new(),
            key: None,
            count: 1,
            max_attempts: None,
            timeout: None,
        }
    }

    /// Every job, checked (kind, payload shape, priority, labels, count up to `max_count`)
    /// before anything is enqueued.
    pub fn jobs(&self, max_count: u64) -> anyhow::Result<Vec<NewJob>> {
        submit_registry().validate(&self.kind, &self.payload)?;
        if self.count == 0 || self.count > max_count {
            return Err(usage(format!(
                "count {} out of range: use 1 to {max_count}",
                self.count
            )));
        }
        let mut template = NewJob::new(self.kind.clone(), self.payload.clone());
        template.priority = self.priority;
        template.labels = parse_labels(&self.labels.join(","))?;
        if let Some(n) = self.max_attempts {
            template.max_attempts = n;
        }
        if let Some(t) = self.timeout {
            template.timeout = t;
        }
        template.key = self.key.clone();
        template.validate()?;
        let count = usize::try_from(self.count)?;
        Ok((1..=count)
            .map(|i| {
                let mut j = template.clone();
                if count > 1 {
                    j.key = self.key.as_ref().map(|k| format!("{k}#{i}"));
                }
                j
            })
            .collect())
    }
}

/// Checks and enqueues a [`Submit`] in one batch.
pub async fn submit(store: &Store, s: &Submit, max_count: u64) -> anyhow::Result<Vec<Enqueued>> {
    let jobs = s.jobs(max_count)?;
    Ok(SqlQueue::new(store.clone()).enqueue(&jobs).await?)
}

pub fn validate_skill(p: &Value) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SkillPayload {
        name: String,
        #[serde(default)]
        args: Vec<String>,
    }
    if !p.is_object() {
        return Err(r#"expected an object {"name": "skill-name", "args"?: [...]}"#.into());
    }
    let s: SkillPayload = serde_json::from_value(p.clone())
        .map_err(|e| format!(r#"{e}; expected {{"name": "skill-name", "args"?: [...]}}"#))?;
    if s.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    Ok(())
}

/// A pool worker on `store` with every job kind this build runs (noop, shell, ask, skill);
/// the daemon's local worker is one of these.
pub fn pool_worker(
    ctx: &Runtime,
    store: zocalo_store::Store,
    config: WorkerConfig,
) -> anyhow::Result<Worker> {
    pool_worker_with(ctx, store, config, Duration::from_secs(1))
}

pub fn pool_worker_with(
    ctx: &Runtime,
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
            ctx: ctx.clone(),
            store,
        }),
    );
    registry.register("skill", Arc::new(SkillHandler { ctx: ctx.clone() }));
    registry.register(
        "deliver",
        Arc::new(crate::channels::DeliverHandler { ctx: ctx.clone() }),
    );
    Ok(Worker::new(queue, registry, config)?)
}

/// `zocalo worker`: joins the pool as a node with every job kind this build runs, until
/// SIGTERM / Ctrl-C (or, with `config.drain`, until nothing is left); `joined` is told the
/// node id. The store is closed (at most 5 s) before the report is returned.
pub async fn run_worker(
    ctx: &Runtime,
    config: WorkerConfig,
    retry_base: Duration,
    joined: impl FnOnce(&str),
) -> anyhow::Result<zocalo_pool::WorkerReport> {
    config.validate()?;
    if retry_base.is_zero() {
        return Err(usage("--retry-base-ms must be at least 1"));
    }
    let store = ctx.store().await?;
    let worker = pool_worker_with(ctx, store.clone(), config, retry_base)?;
    joined(worker.node_id());
    let report = worker.run(crate::signals::terminated()).await;
    // Bounded like the worker's own stop: a stalled database must not keep the process alive.
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("closing the database connections took over 5 s; exiting without");
    }
    Ok(report?)
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
    /// `[personas.NAME]` to ask as (an automation's `--persona`).
    #[serde(default)]
    pub persona: Option<String>,
    /// Or: the conversation of this key (an automation's own, `automation:NAME`), so each
    /// run sees what the earlier runs said.
    #[serde(default)]
    pub conv_key: Option<String>,
    /// Where the answer goes once made (`telegram:42`, `email:me@x.org`, `webhook:NAME`):
    /// a `deliver` job, retried with backoff on its own.
    #[serde(default)]
    pub deliver: Option<String>,
}

impl AskPayload {
    pub fn parse(p: &Value) -> Result<AskPayload, String> {
        const SHAPE: &str = r#"expected {"message": "...", "conversation_id"?, "conv_key"?, "provider"?, "model"?, "depth"?, "persona"?, "deliver"?}"#;
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
            if a.conv_key.is_some() {
                return Err("give `conversation_id` or `conv_key`, not both".into());
            }
        }
        if let Some(t) = &a.deliver {
            t.parse::<zocalo_channels::Target>()
                .map_err(|e| format!("`deliver`: {e}"))?;
        }
        Ok(a)
    }
}

/// Runs the ask loop: payload {"message","conversation_id"?,"provider"?,"model"?} → result
/// {"conversation_id","text"}. A missing key or unknown provider fails the job for good;
/// provider outages are retried.
///
/// The ask loop is the runtime's, shared by every job of this process (and rebuilt only when
/// the skills change).
struct AskHandler {
    ctx: Runtime,
    store: zocalo_store::Store,
}

impl AskHandler {
    /// The ask loop and the model to ask (None: the provider's default).
    fn asker(
        &self,
        p: &AskPayload,
    ) -> Result<(Arc<zocalo_agent::Asker>, Option<String>), JobError> {
        let (provider, model) = self
            .ctx
            .provider(&ModelChoice {
                provider: p.provider.clone(),
                model: p.model.clone(),
                no_tools: false,
            })
            .map_err(|e| JobError::fatal(format!("{e:#}")))?;
        let asker = self
            .ctx
            .job_asker(&self.store, provider, p.persona.as_deref())
            .map_err(|e| JobError::fatal(format!("{e:#}")))?;
        Ok((asker, model))
    }
}

#[async_trait]
impl Handler for AskHandler {
    fn validate(&self, payload: &Value) -> Result<(), zocalo_pool::PayloadError> {
        Ok(AskPayload::parse(payload).map(drop)?)
    }

    async fn run(&self, mut job: JobRun) -> Result<Value, JobError> {
        let p = AskPayload::parse(&job.payload).map_err(JobError::fatal)?;
        let (asker, model) = self.asker(&p)?;
        let conversation = match (&p.conversation_id, &p.conv_key) {
            (Some(c), _) => Some(
                c.parse::<ConversationId>()
                    .map_err(|e| JobError::fatal(e.to_string()))?,
            ),
            (None, Some(key)) => Some(
                self.store
                    .conversation_for_key(key)
                    .await
                    .map_err(|e| JobError::retry(e.to_string()))?
                    .0,
            ),
            (None, None) => None,
        };
        let request = AskRequest {
            conversation,
            message: p.message,
            model,
        };
        let mut ignore = |_| {};
        // Nobody is there to approve: a tool whose decision is `ask` is denied, and the run
        // has the automation budget (`[budgets] automation_run_tokens`).
        let options = zocalo_agent::AskOptions {
            approvals: zocalo_agent::Approvals::unattended(),
            token_limit: zocalo_agent::TokenLimit::automation_run(&self.ctx.config.budgets),
        };
        let ask = zocalo_agent::at_depth(
            p.depth.unwrap_or(0),
            asker.ask_with(request, &options, &mut ignore),
        );
        let outcome = tokio::select! {
            r = ask => match r {
                Ok(o) => o,
                Err(e) if e.is_usage() => return Err(JobError::fatal(e.to_string())),
                Err(e) => return Err(JobError::retry(e.to_string())),
            },
            reason = job.stop.stopped() => return Err(JobError::retry(format!("stopped ({reason:?})"))),
        };
        let mut result = json!({"conversation_id": outcome.conversation_id, "text": outcome.text});
        if let Some(target) = &p.deliver {
            // Its own job: a failed delivery is retried without asking again. Keyed on this
            // job, so a retried ask delivers once.
            let mut deliver = NewJob::new(
                "deliver",
                json!({"target": target, "text": outcome.text, "source": job.id}),
            );
            deliver.key = Some(format!("deliver:{}", job.id));
            deliver.max_attempts = 5;
            let queued = SqlQueue::new(self.store.clone())
                .enqueue(&[deliver])
                .await
                .map_err(|e| JobError::retry(format!("enqueueing the delivery: {e}")))?;
            result["delivery"] = json!({
                "target": target,
                "job_id": queued.first().map(|q| q.id.clone()),
            });
        }
        Ok(result)
    }
}

/// Runs a skill's script on this worker: payload {"name","args"?} → result {"exit_code",
/// "stdout","stderr","sandbox"}. Skills are discovered as `zocalo skills` finds them on this
/// machine; scripts run through the same sandboxed runner (Landlock launcher, clean
/// environment, time and output limits). A skill this worker does not have fails the job for
/// good; a script that exits non-zero or times out is retried like a shell job.
struct SkillHandler {
    ctx: Runtime,
}

#[derive(Debug, Deserialize)]
struct SkillPayload {
    name: String,
    #[serde(default)]
    args: Vec<String>,
}

#[async_trait]
impl Handler for SkillHandler {
    fn validate(&self, payload: &Value) -> Result<(), zocalo_pool::PayloadError> {
        Ok(validate_skill(payload)?)
    }

    async fn run(&self, mut job: JobRun) -> Result<Value, JobError> {
        validate_skill(&job.payload).map_err(JobError::fatal)?;
        let p: SkillPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::fatal(e.to_string()))?;
        let skill = self
            .ctx
            .skills()
            .get(&p.name)
            .map_err(|e| JobError::fatal(format!("on this worker: {e}")))?;
        let limits = self.ctx.skill_limits();
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
