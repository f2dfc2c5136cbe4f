//! `zocalo agents`: spawn one or thousands of sub-agents, here or on the pool, and look at
//! past batches. A thin layer over `zocalo_agent::Spawner`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use zocalo_agent::{
    parse_tasks_jsonl, AgentEvent, AgentResult, AgentTask, BatchReport, Batches, CancellationToken,
};
use zocalo_runtime::agents::{prepare, seconds, BatchOptions, Prepared};
use zocalo_runtime::Runtime;

use crate::cli::ModelArgs;
use crate::exit::usage;

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

pub async fn run(ctx: &Runtime, cmd: AgentsCmd) -> anyhow::Result<()> {
    match cmd {
        AgentsCmd::Spawn(args) => spawn_one(ctx, args).await,
        AgentsCmd::SpawnAll(args) => spawn_all(ctx, args).await,
        AgentsCmd::List { limit, json } => list(ctx, limit, json).await,
        AgentsCmd::Show { id, json } => show(ctx, &id, json).await,
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

async fn spawn_one(ctx: &Runtime, args: SpawnArgs) -> anyhow::Result<()> {
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

async fn spawn_all(ctx: &Runtime, args: SpawnAllArgs) -> anyhow::Result<()> {
    // Every line is checked before anything connects or runs.
    let text = read_input(&args.file)?;
    let tasks =
        parse_tasks_jsonl(&text).map_err(|e| usage(format!("{}: {e}", args.file.display())))?;
    let concurrency = args.concurrency.unwrap_or(ctx.config.agents.concurrency);
    let prepared = prepare(ctx, &batch_options(&args.flags)?, concurrency).await?;
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

async fn list(ctx: &Runtime, limit: i64, json_out: bool) -> anyhow::Result<()> {
    if limit < 0 {
        return Err(usage("--limit must be at least 0"));
    }
    let store = ctx.store().await?;
    let batches = Batches::new(store.clone()).list(limit).await?;
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

async fn show(ctx: &Runtime, id: &str, json_out: bool) -> anyhow::Result<()> {
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
