//! `zocalo agents`: spawn one or thousands of sub-agents, here or on the pool, and look at
//! past batches (`zocalo_runtime::agents`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use zocalo_agent::{parse_tasks_jsonl, AgentEvent, AgentTask, BatchReport};
use zocalo_runtime::agents::{self, prepare, seconds, BatchOptions, Prepared};
use zocalo_runtime::Runtime;

use super::print_json;
use crate::cli::ModelArgs;
use crate::exit::usage;

#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Run one agent on PROMPT and print its answer (--json: one object).
    Spawn(SpawnArgs),
    /// Run one agent per line of FILE.jsonl ({"id","prompt"}), in parallel; results in input
    /// order (--json: one array).
    SpawnAll(SpawnAllArgs),
    /// Past batches, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One batch and its agents, in input order.
    Show {
        /// A batch id (batch_…), as spawn-all prints it.
        id: String,
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

pub async fn run(ctx: &Runtime, cmd: AgentsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        AgentsCmd::Spawn(args) => spawn_one(ctx, args, json).await,
        AgentsCmd::SpawnAll(args) => spawn_all(ctx, args, json).await,
        AgentsCmd::List { limit } => list(ctx, limit, json).await,
        AgentsCmd::Show { id } => show(ctx, &id, json).await,
    }
}

/// The runtime's batch options from the flags.
fn batch_options(flags: &RunFlags) -> anyhow::Result<BatchOptions> {
    Ok(BatchOptions {
        model: flags.model.choice(),
        timeout: seconds("timeout", flags.timeout)?,
        deadline: seconds("deadline", flags.deadline)?,
        on_pool: flags.on_pool,
    })
}

/// Runs the batch with a progress bar on a terminal; Ctrl-C cancels it (running agents
/// stop, the rest never start, all are recorded).
async fn execute(
    prepared: Prepared,
    tasks: Vec<AgentTask>,
    progress: bool,
) -> anyhow::Result<(BatchReport, bool)> {
    let template = "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} done ({msg})";
    let bar = super::progress_bar(if progress { tasks.len() } else { 0 }, template);
    if let Some(bar) = &bar {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling: stopping running agents (they are recorded as cancelled)");
        } else {
            std::future::pending::<()>().await
        }
    };
    let (mut running, mut failed) = (0usize, 0usize);
    let r = prepared
        .run(tasks, ctrl_c, |event| {
            match &event {
                AgentEvent::Started { .. } => running += 1,
                AgentEvent::Finished(r) => {
                    running = running.saturating_sub(1);
                    failed += usize::from(!r.is_ok());
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
    r
}

async fn spawn_one(ctx: &Runtime, args: SpawnArgs, json: bool) -> anyhow::Result<()> {
    let prompt = args.prompt.join(" ");
    if prompt.trim().is_empty() {
        return Err(usage("the prompt is empty: say what the agent should do"));
    }
    let prepared = prepare(ctx, &batch_options(&args.flags)?, 1).await?;
    let task = AgentTask::new("agent", prompt);
    let (report, interrupted) = execute(prepared, vec![task], false).await?;
    let Some(r) = report.results.first() else {
        anyhow::bail!("the agent left no result");
    };
    if json {
        let mut v = serde_json::to_value(r)?;
        v["batch_id"] = Value::from(report.batch_id.clone());
        print_json(&v)?;
    } else if let Some(out) = &r.output {
        println!("{out}");
    }
    if interrupted {
        std::process::exit(130);
    }
    if !r.is_ok() {
        let error = r.error.as_deref().unwrap_or("unknown error");
        anyhow::bail!("the agent failed: {error}");
    }
    Ok(())
}

async fn spawn_all(ctx: &Runtime, args: SpawnAllArgs, json: bool) -> anyhow::Result<()> {
    // Every line is checked before anything connects or runs.
    let text = super::read_input(&args.file)?;
    let tasks =
        parse_tasks_jsonl(&text).map_err(|e| usage(format!("{}: {e}", args.file.display())))?;
    let concurrency = args.concurrency.unwrap_or(ctx.config.agents.concurrency);
    let prepared = prepare(ctx, &batch_options(&args.flags)?, concurrency).await?;
    if tasks.is_empty() {
        eprintln!("{}: no tasks", args.file.display());
    }
    let (report, interrupted) = execute(prepared, tasks, true).await?;
    if json {
        print_json(&report.results)?;
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
    let (id, ok) = (&report.batch_id, report.ok_count());
    eprintln!(
        "batch {id}: {ok} ok, {} error, {:.3} s (details: zocalo agents show {id})",
        report.results.len() - ok,
        report.elapsed_ms as f64 / 1000.0,
    );
    if interrupted {
        std::process::exit(130);
    }
    Ok(())
}

async fn list(ctx: &Runtime, limit: i64, json: bool) -> anyhow::Result<()> {
    let batches = agents::list(ctx, limit).await?;
    if json {
        return print_json(&batches);
    }
    if batches.is_empty() {
        eprintln!("no batches yet: start one with `zocalo agents spawn-all FILE.jsonl`");
    }
    for b in &batches {
        let provider = b.provider.as_deref().map(|p| format!(", {p}"));
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
            provider.unwrap_or_default()
        );
    }
    Ok(())
}

async fn show(ctx: &Runtime, id: &str, json: bool) -> anyhow::Result<()> {
    let detail = agents::show(ctx, id).await?;
    if json {
        return print_json(&detail);
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
        let ms = a.elapsed_ms.map(|ms| format!(" {ms} ms"));
        println!(
            "  [{}] {}{}  {detail}",
            a.id,
            a.status,
            ms.unwrap_or_default()
        );
    }
    Ok(())
}
