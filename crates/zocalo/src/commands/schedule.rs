//! `zocalo schedule add|list|rm|pause|resume|runs|preview` (and a hidden `tick`): automations
//! from the command line. Everything the user typed is checked before the database is opened,
//! so bad input (exit 2) writes nothing.

use std::time::Duration;

use chrono::Utc;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;
use zocalo_runtime::automations;
use zocalo_scheduler::{fmt_utc, Automation, Schedule, Scheduler};

use crate::exit::usage;
use zocalo_runtime::Runtime;

/// Most occurrences `preview` prints.
const MAX_PREVIEW: usize = 10_000;

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Add an automation: a recurrence (RRULE, local start, IANA zone) and what it does.
    Add(Box<AddArgs>),
    /// Every automation with its next run.
    List,
    /// Remove an automation and its run history.
    Rm { name: String },
    /// Stop firing an automation until it is resumed.
    Pause { name: String },
    /// Fire again from now on (occurrences during the pause are skipped).
    Resume { name: String },
    /// The runs of an automation, newest first: scheduled_for, started_at, finished_at,
    /// status, output.
    Runs {
        name: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// The next occurrences of a rule as UTC instants; touches no database.
    Preview(PreviewArgs),
    /// Fire what is due now (what the daemon does periodically). For tests and cron.
    #[command(hide = true)]
    Tick {
        /// Pretend it is this instant (RFC 3339), instead of the clock.
        #[arg(long, conflicts_with = "run")]
        now: Option<String>,
        /// Keep ticking (waking at each due instant, at least every --interval-ms) until
        /// SIGTERM or Ctrl-C: the daemon's scheduler loop on its own.
        #[arg(long = "loop")]
        run: bool,
        #[arg(long, default_value_t = 1000, requires = "run")]
        interval_ms: u64,
    },
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// RFC 5545 recurrence rule, e.g. "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"; further lines
    /// "EXDATE:20260310T090000,..." / "RDATE:..." add or remove instants.
    #[arg(long, value_name = "R")]
    pub rrule: String,
    /// The first occurrence, local wall time: YYYY-MM-DDTHH:MM:SS.
    #[arg(long, value_name = "LOCAL")]
    pub start: String,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long, value_name = "ZONE")]
    pub tz: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["ask", "skill", "shell"])))]
pub struct AddArgs {
    /// A unique name: letters, digits, '-', '_', '.'.
    pub name: String,
    #[command(flatten)]
    pub rule: RuleArgs,
    /// Ask the model this message (a pool `ask` job).
    #[arg(long, value_name = "MSG")]
    pub ask: Option<String>,
    /// Continue this conversation with each ask.
    #[arg(long = "conv", value_name = "ID", requires = "ask")]
    pub conversation: Option<String>,
    /// Ask as this `[personas.NAME]`: its prompt, tools and permissions. The runs are
    /// unattended, so a tool runs only where it or `[permissions]` says `allow`.
    #[arg(long, value_name = "NAME", requires = "ask")]
    pub persona: Option<String>,
    /// Send each run's answer to telegram:CHAT_ID, email:ADDRESS or webhook:NAME (once per
    /// run, retried on failure; `schedule runs` shows how it went).
    #[arg(long, value_name = "TARGET", requires = "ask")]
    pub deliver: Option<String>,
    /// Run this skill (a pool `skill` job); arguments after `--`.
    #[arg(long, value_name = "NAME")]
    pub skill: Option<String>,
    /// Run this command with `sh -c` (a pool `shell` job).
    #[arg(long, value_name = "CMD")]
    pub shell: Option<String>,
    /// Occurrences missed while no scheduler ran: skip (fire nothing more than a minute
    /// late), run-once (the latest, once), run-all (each, up to --catch-up).
    #[arg(long, value_name = "POLICY", default_value = "run-once")]
    pub misfire: String,
    /// With --misfire run-all: fire at most this many missed occurrences (the latest).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub catch_up: u32,
    /// Arguments for --skill.
    #[arg(last = true, requires = "skill")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub rule: RuleArgs,
    /// How many occurrences.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub limit: usize,
}

pub async fn run(ctx: &Runtime, cmd: ScheduleCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ScheduleCmd::Preview(args) => preview(args, json),
        ScheduleCmd::Add(args) => add(ctx, *args, json).await,
        ScheduleCmd::List => {
            let s = scheduler(ctx).await?;
            let list = s.list().await?;
            if json {
                return super::print_json(&list);
            }
            if list.is_empty() {
                println!("no automations (add one with `zocalo schedule add`)");
            }
            for a in &list {
                println!(
                    "{:<20}  {:<6}  next {:<20}  {}  {} ({}, misfire {})",
                    a.name,
                    if a.paused { "paused" } else { "active" },
                    a.next_run_at.map(fmt_utc).unwrap_or_else(|| "-".into()),
                    a.action.kind(),
                    a.rrule.replace('\n', " "),
                    a.tz,
                    a.misfire.as_str()
                );
            }
            Ok(())
        }
        ScheduleCmd::Rm { name } => {
            let s = scheduler(ctx).await?;
            s.remove(&name).await?;
            if json {
                return super::print_json(&serde_json::json!({"removed": name}));
            }
            println!("removed {name}");
            Ok(())
        }
        ScheduleCmd::Pause { name } => {
            let s = scheduler(ctx).await?;
            let r = s.pause(&name, Utc::now()).await?;
            show(&r, json, "paused")
        }
        ScheduleCmd::Resume { name } => {
            let s = scheduler(ctx).await?;
            let r = s.resume(&name, Utc::now()).await?;
            show(&r, json, "resumed")
        }
        ScheduleCmd::Runs { name, limit } => {
            if limit < 1 {
                return Err(usage("--limit must be at least 1"));
            }
            let s = scheduler(ctx).await?;
            let runs = s.runs(&name, limit).await?;
            if json {
                return super::print_json(&runs);
            }
            if runs.is_empty() {
                println!("{name} has not fired yet");
            }
            for r in &runs {
                let output = match &r.output {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                };
                println!(
                    "{}  {:<9}  {}  {}",
                    fmt_utc(r.scheduled_for),
                    r.status,
                    r.job_id.as_deref().unwrap_or("-"),
                    super::one_line(&output, 120)
                );
            }
            Ok(())
        }
        ScheduleCmd::Tick {
            run: true,
            interval_ms,
            ..
        } => automations::tick_loop(ctx, Duration::from_millis(interval_ms)).await,
        ScheduleCmd::Tick { now, .. } => {
            let r = automations::tick(ctx, now.as_deref()).await?;
            if json {
                return super::print_json(&r);
            }
            for f in &r.fired {
                println!(
                    "fired {} for {} ({})",
                    f.automation,
                    fmt_utc(f.occurrence),
                    f.job_id
                );
            }
            Ok(())
        }
    }
}

async fn scheduler(ctx: &Runtime) -> anyhow::Result<Scheduler> {
    Ok(Scheduler::new(ctx.store().await?))
}

fn preview(args: PreviewArgs, json: bool) -> anyhow::Result<()> {
    if args.limit == 0 || args.limit > MAX_PREVIEW {
        return Err(usage(format!("--limit must be 1 to {MAX_PREVIEW}")));
    }
    let s = Schedule::parse(&args.rule.rrule, &args.rule.start, &args.rule.tz)?;
    let out: Vec<String> = s.preview(args.limit).into_iter().map(fmt_utc).collect();
    if json {
        return super::print_json(&out);
    }
    for t in out {
        println!("{t}");
    }
    Ok(())
}

async fn add(ctx: &Runtime, args: AddArgs, json: bool) -> anyhow::Result<()> {
    let spec = automations::AddSpec {
        name: args.name,
        rrule: args.rule.rrule,
        start: args.rule.start,
        tz: args.rule.tz,
        action: automations::ActionSpec {
            ask: args.ask,
            conversation: args.conversation,
            skill: args.skill,
            skill_args: args.args,
            shell: args.shell,
            persona: args.persona,
            deliver: args.deliver,
        },
        misfire: Some(args.misfire),
        catch_up: Some(args.catch_up),
    };
    let (added, warning) = automations::add(ctx, spec).await?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    show(&added, json, "added")
}

fn show(a: &Automation, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return super::print_json(&a);
    }
    match a.next_run_at {
        Some(next) => {
            let local = next.with_timezone(&a.schedule()?.tz());
            println!(
                "{verb} {}: next run {} ({} {})",
                a.name,
                fmt_utc(next),
                local.format("%Y-%m-%d %H:%M:%S %Z"),
                a.tz
            );
        }
        None => println!("{verb} {}: the rule has no more occurrences", a.name),
    }
    Ok(())
}
