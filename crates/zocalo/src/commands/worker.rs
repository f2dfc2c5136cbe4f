//! `zocalo worker`: join the compute pool as a node. Runs `noop`, `shell` and `ask` jobs
//! (the ask loop with the configured providers) until SIGTERM / Ctrl-C, or with `--drain`
//! until nothing is left. On SIGTERM it stops claiming, lets running jobs finish for the
//! shutdown grace, and hands the rest back to the queue. --json: a report {"node_id",
//! "succeeded","failed",...} on exit.

use std::time::Duration;

use clap::Args;
use zocalo_pool::{parse_labels, WorkerConfig};
use zocalo_runtime::Runtime;

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
    /// Claimed jobs that may wait here for a slot while jobs are short (default: 10 x
    /// concurrency, at most 100; 0: claim only what free slots can start).
    #[arg(long, value_name = "N")]
    pub prefetch: Option<usize>,
    /// First retry delay in milliseconds; it doubles per attempt (with jitter), up to an hour.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
}

/// A positive number of seconds from `--FLAG`.
fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Ok(zocalo_runtime::agents::seconds(flag, Some(v))?.unwrap_or_default())
}

pub async fn run(ctx: &Runtime, args: WorkerArgs, json: bool) -> anyhow::Result<()> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        labels: parse_labels(&args.labels)?,
        drain: args.drain,
        node_timeout: seconds("node-timeout", args.node_timeout)?,
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        shutdown_grace: seconds("shutdown-grace", args.shutdown_grace)?,
        stop_grace: Duration::from_secs(10),
        prefetch: args.prefetch,
    };
    let retry_base = Duration::from_millis(args.retry_base_ms);
    let r = zocalo_runtime::jobs::run_worker(ctx, config, retry_base, |node| {
        let n = args.concurrency;
        eprintln!("worker {node} joined the pool (concurrency {n})")
    })
    .await?;
    eprintln!(
        "worker {} stopped: {} succeeded, {} failed, {} cancelled, {} handed back",
        r.node_id, r.succeeded, r.failed, r.cancelled, r.released
    );
    if json {
        return super::print_json(&r);
    }
    Ok(())
}
