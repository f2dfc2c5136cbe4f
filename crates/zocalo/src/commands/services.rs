//! `zocalo services add|start|stop|restart|rm|status|list|logs`: long-running processes the
//! daemon supervises. Every command but `logs` goes through the daemon, which is started on
//! demand; input is checked here first, so bad input never starts one.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;
use zocalo_services::ServiceSpec;

use zocalo_runtime::daemon::{self, ensure_daemon, Request};
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum ServicesCmd {
    /// Define a service (stopped until `services start`, or with --start).
    Add(AddArgs),
    /// Start a service; it is started again whenever the daemon starts, until stopped.
    Start { name: String },
    /// Stop a service: SIGTERM to its process group, SIGKILL after the grace period.
    Stop { name: String },
    /// Stop (if running), then start.
    Restart { name: String },
    /// Stop a service and delete its definition (its log files stay).
    Rm { name: String },
    /// One service: state, pid, restarts, health, last exit, error.
    Status { name: String },
    /// Every service.
    List,
    /// The service's output (logs/NAME.log), timestamped.
    Logs {
        name: String,
        /// Lines from the end.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines as they are written (Ctrl-C to end).
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The command line, split like a shell splits words and run without a shell (use
    /// `sh -c '…'` for pipes or redirections).
    #[arg(long = "cmd", value_name = "CMD")]
    pub command: String,
    /// When to restart it after it exits.
    #[arg(
        long,
        default_value = "on-failure",
        value_name = "always|on-failure|never"
    )]
    pub restart: String,
    /// Healthy when a GET of this URL answers 2xx.
    #[arg(long, value_name = "URL", conflicts_with = "health_cmd")]
    pub health_http: Option<String>,
    /// Healthy when this command exits 0 (run with the service's env and cwd).
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// An environment variable for it (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Its working directory (default: the data home).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Start it right away.
    #[arg(long)]
    pub start: bool,
}

pub async fn run(ctx: &Runtime, cmd: ServicesCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServicesCmd::Add(args) => {
            let health = (args.health_http.clone(), args.health_cmd.clone());
            let (restart, env, cwd) = (&args.restart, &args.env, args.cwd.as_deref());
            let spec =
                ServiceSpec::from_flags(&args.name, &args.command, restart, health, env, cwd)?;
            let mut d = ensure_daemon(ctx).await?;
            let mut status = d.call(&Request::Add { spec }).await?;
            if args.start {
                status = d
                    .call(&Request::Start {
                        name: args.name.clone(),
                    })
                    .await?;
            }
            if json {
                super::print_json(&status)?;
                return failed_start(args.start, &status);
            }
            println!("added service {}", args.name);
            if args.start {
                print_status(&status);
            }
            failed_start(args.start, &status)
        }
        ServicesCmd::Start { name } => one(ctx, Request::Start { name }, json).await,
        ServicesCmd::Stop { name } => one(ctx, Request::Stop { name }, json).await,
        ServicesCmd::Restart { name } => one(ctx, Request::Restart { name }, json).await,
        ServicesCmd::Status { name } => one(ctx, Request::Status { name }, json).await,
        ServicesCmd::Rm { name } => {
            daemon::call(ctx, &Request::Rm { name: name.clone() }).await?;
            println!("removed service {name}");
            Ok(())
        }
        ServicesCmd::List => {
            let list = daemon::call(ctx, &Request::List).await?;
            if json {
                return super::print_json(&list);
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no services (add one with `zocalo services add NAME --cmd CMD`)");
                return Ok(());
            }
            println!(
                "{:<20} {:<10} {:>8} {:>8} {:>9}  COMMAND",
                "NAME", "STATE", "PID", "RESTARTS", "UPTIME"
            );
            for s in rows {
                println!(
                    "{:<20} {:<10} {:>8} {:>8} {:>9}  {}",
                    s["name"].as_str().unwrap_or_default(),
                    s["state"].as_str().unwrap_or_default(),
                    s["pid"].as_i64().map_or("-".into(), |p| p.to_string()),
                    s["restarts"],
                    s["uptime_secs"].as_u64().map_or("-".into(), fmt_uptime),
                    s["command"].as_str().unwrap_or_default(),
                );
            }
            Ok(())
        }
        ServicesCmd::Logs {
            name,
            lines,
            follow,
        } => {
            zocalo_services::spec::validate_name(&name)?;
            let status = daemon::call(ctx, &Request::Status { name: name.clone() }).await?;
            let path = PathBuf::from(status["log"].as_str().unwrap_or_default());
            for line in zocalo_services::logs::tail(&path, lines)? {
                println!("{line}");
            }
            if follow {
                let ctrl_c = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                zocalo_services::logs::follow(&path, ctrl_c, |bytes| {
                    let mut out = std::io::stdout().lock();
                    out.write_all(bytes)?;
                    out.flush()
                })
                .await?;
            }
            Ok(())
        }
    }
}

async fn one(ctx: &Runtime, req: Request, json: bool) -> anyhow::Result<()> {
    let starts = matches!(req, Request::Start { .. } | Request::Restart { .. });
    let status = daemon::call(ctx, &req).await?;
    if json {
        super::print_json(&status)?;
    } else {
        print_status(&status);
    }
    failed_start(starts, &status)
}

/// A start that ended `failed` (the command cannot run) is a runtime failure: exit 1.
fn failed_start(starts: bool, status: &Value) -> anyhow::Result<()> {
    if starts && status["state"] == "failed" {
        anyhow::bail!(
            "service {} failed: {}",
            status["name"].as_str().unwrap_or_default(),
            status["error"]
                .as_str()
                .unwrap_or("see `zocalo services logs`")
        );
    }
    Ok(())
}

fn print_status(s: &Value) {
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
    println!("{}: {}", text("name"), text("state"));
    if let Some(pid) = s["pid"].as_i64() {
        println!("  pid       {pid}");
    }
    if let Some(up) = s["uptime_secs"].as_u64() {
        println!("  uptime    {}", fmt_uptime(up));
    }
    println!("  restarts  {}", s["restarts"]);
    println!("  command   {}", text("command"));
    println!("  restart   {}", text("restart"));
    if let Some(h) = s["health"].as_object() {
        let status = h
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("not checked yet");
        println!(
            "  health    {} {} ({status})",
            h.get("kind").and_then(Value::as_str).unwrap_or_default(),
            h.get("check").and_then(Value::as_str).unwrap_or_default()
        );
        if let Some(e) = h.get("error").and_then(Value::as_str) {
            println!("            {e}");
        }
    }
    if let Some(e) = s["last_exit"].as_str() {
        println!("  last exit {e}");
    }
    if let Some(e) = s["error"].as_str() {
        println!("  error     {e}");
    }
    println!("  log       {}", text("log"));
}

fn fmt_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}
