//! `zocalo pool submit|jobs|show|cancel|nodes|stats`: the compute pool's queue from the
//! command line. Submitting validates everything (kind, payload shape, priority, labels,
//! count) before the database is touched, so bad input enqueues nothing.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zocalo_pool::{parse_labels, Cancelled, JobQueue, JobState, PoolError, SqlQueue};

use zocalo_runtime::jobs::Submit;

use crate::exit::usage;
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Enqueue jobs: noop, shell ({"cmd":[prog,args...]}), ask ({"message",...}), skill.
    Submit(SubmitArgs),
    /// List jobs, newest first.
    Jobs {
        /// Only jobs in this state: queued, running, succeeded, failed, dead, cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One job, with its payload, result and last error.
    Show { id: String },
    /// Cancel a job: a queued one at once, a running one is stopped by its worker.
    Cancel { id: String },
    /// The worker nodes that joined the pool.
    Nodes,
    /// Jobs per state.
    Stats,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job kind: noop, shell, ask or skill.
    pub kind: String,
    /// The job's input as JSON (shell: {"cmd": ["prog", "arg", ...], "cwd"?, "env"?}).
    #[arg(long)]
    pub payload: Option<String>,
    /// -1000 to 1000; higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Only nodes with all of these labels run it (comma-separated).
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Enqueue this many identical jobs.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Idempotency key: submitting again with the same key returns the existing job. With
    /// --count N the jobs get the keys KEY#1 ... KEY#N.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Attempts before a failing job is dead (1 to 100).
    #[arg(long, default_value_t = zocalo_pool::job::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// Seconds one attempt may run before it is stopped and retried.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub timeout: f64,
}

/// Largest `--count` in one submit.
const MAX_COUNT: u64 = 1_000_000;

pub async fn run(ctx: &Runtime, cmd: PoolCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        PoolCmd::Submit(args) => submit(ctx, args, json).await,
        PoolCmd::Jobs { state, limit } => {
            let state = state.map(|s| s.parse::<JobState>()).transpose()?;
            if limit < 1 {
                return Err(usage("--limit must be at least 1"));
            }
            let q = queue(ctx).await?;
            let jobs = q.list(state, limit).await?;
            if json {
                return super::print_json(&jobs);
            }
            for j in jobs {
                println!(
                    "{}  {:<9}  {:<6}  {}/{}  {}{}",
                    j.id,
                    j.state.as_str(),
                    j.kind,
                    j.attempts,
                    j.max_attempts,
                    j.node.unwrap_or_else(|| "-".into()),
                    j.error.map(|e| format!("  {e}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        PoolCmd::Show { id } => {
            let q = queue(ctx).await?;
            let job = q.get(&id).await;
            q.store().close().await;
            // The whole job, as JSON either way.
            super::print_json(&job?.ok_or(PoolError::NoSuchJob(id))?)
        }
        PoolCmd::Cancel { id } => {
            let q = queue(ctx).await?;
            let r = q.cancel(&id).await;
            q.store().close().await;
            let was = match r? {
                Cancelled::Queued => "queued",
                Cancelled::Running => "running",
            };
            if json {
                return super::print_json(&json!({"id": id, "cancelled": true, "was": was}));
            }
            if was == "running" {
                println!("cancelled {id}; its worker stops it at its next heartbeat");
            } else {
                println!("cancelled {id}");
            }
            Ok(())
        }
        PoolCmd::Nodes => {
            let q = queue(ctx).await?;
            let nodes = q.nodes(1000).await?;
            if json {
                return super::print_json(&nodes);
            }
            for n in nodes {
                println!(
                    "{}  {}  pid {}  {:<8}  {}/{} running  labels [{}]  last seen {}",
                    n.id,
                    n.hostname,
                    n.pid,
                    n.state,
                    n.running,
                    n.capacity,
                    n.labels.join(","),
                    n.last_seen.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
            Ok(())
        }
        PoolCmd::Stats => {
            let q = queue(ctx).await?;
            let stats = q.stats().await;
            q.store().close().await;
            let s = stats?;
            if json {
                return super::print_json(&s);
            }
            for (name, n) in [
                ("queued", s.queued),
                ("running", s.running),
                ("succeeded", s.succeeded),
                ("failed", s.failed),
                ("dead", s.dead),
                ("cancelled", s.cancelled),
            ] {
                println!("{name:<10} {n}");
            }
            Ok(())
        }
    }
}

async fn queue(ctx: &Runtime) -> anyhow::Result<SqlQueue> {
    Ok(SqlQueue::new(ctx.store().await?))
}

async fn submit(ctx: &Runtime, args: SubmitArgs, json: bool) -> anyhow::Result<()> {
    let payload: Value = match &args.payload {
        None => Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|e| usage(format!("--payload is not valid JSON: {e}")))?,
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(usage("--timeout must be a positive number of seconds"));
    }
    let submit = Submit {
        priority: args.priority,
        labels: parse_labels(&args.labels)?,
        key: args.key.clone(),
        count: args.count,
        max_attempts: Some(args.max_attempts),
        timeout: Some(std::time::Duration::from_secs_f64(args.timeout.min(1e9))),
        ..Submit::new(args.kind.clone(), payload)
    };
    // Everything is checked before the database is opened.
    if args.count == 0 || args.count > MAX_COUNT {
        return Err(usage(format!(
            "--count {} out of range: use 1 to {MAX_COUNT}",
            args.count
        )));
    }
    submit.jobs(MAX_COUNT)?;
    let store = ctx.store().await?;
    let result = zocalo_runtime::jobs::submit(&store, &submit, MAX_COUNT).await;
    ctx.close().await;
    let ids = result?;
    if json {
        let ids: Vec<&str> = ids.iter().map(|e| e.id.as_str()).collect();
        return super::print_json(&json!({ "ids": ids }));
    }
    if ids.len() <= 20 {
        for e in &ids {
            if e.created {
                println!("{}", e.id);
            } else {
                println!("{} (already submitted with this key)", e.id);
            }
        }
    } else {
        println!("enqueued {} jobs", ids.iter().filter(|e| e.created).count());
    }
    Ok(())
}
