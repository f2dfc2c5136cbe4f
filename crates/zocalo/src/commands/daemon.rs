//! `zocalo daemon start|stop|status|run`: the background process that supervises services,
//! fires automations and (optionally) runs pool jobs. See `crate::daemon`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::json;

use zocalo_runtime::daemon::{self, Client, DaemonPaths, DaemonWork, Request};
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Start the daemon in the background (no-op when it runs); output in logs/daemon.log.
    Start {
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon: its services are stopped, and started again by the next daemon.
    Stop {
        #[arg(long)]
        json: bool,
    },
    /// Whether a daemon runs for this data home: {"running","pid",...}.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Write a systemd unit that starts the daemon at boot (and enable it where systemd
    /// runs); without systemd, print the unit and where to put it.
    Install {
        #[arg(long)]
        json: bool,
    },
    /// Remove the unit `daemon install` wrote (disabling it first where systemd runs).
    Uninstall {
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon in the foreground until SIGTERM, Ctrl-C or `zocalo daemon stop`.
    Run {
        /// Detach from the terminal's session (what `daemon start` uses).
        #[arg(long, hide = true)]
        detach: bool,
    },
}

pub async fn run(ctx: &Runtime, cmd: DaemonCmd) -> anyhow::Result<()> {
    match cmd {
        DaemonCmd::Start { json } => {
            let (pid, already) = match Client::connect(ctx.home.root()).await {
                Some(mut c) => {
                    let s = c.call(&Request::DaemonStatus).await?;
                    (s["pid"].as_u64().unwrap_or_default(), true)
                }
                None => (u64::from(daemon::start_background(ctx).await?), false),
            };
            if json {
                return super::print_json(
                    &json!({"running": true, "pid": pid, "already_running": already}),
                );
            }
            if already {
                println!("daemon already running (pid {pid})");
            } else {
                println!("daemon started (pid {pid})");
            }
            Ok(())
        }
        DaemonCmd::Stop { json } => {
            let Some(mut c) = Client::connect(ctx.home.root()).await else {
                if json {
                    return super::print_json(&json!({"running": false, "stopped": false}));
                }
                println!("no daemon running");
                return Ok(());
            };
            let r = c.call(&Request::DaemonStop).await?;
            let pid = r["pid"].as_i64().unwrap_or_default() as i32;
            // Services get their stop grace; wait for the process itself to be gone.
            let grace = Duration::from_millis(ctx.config.daemon.stop_grace_ms);
            let deadline = Instant::now() + grace + Duration::from_secs(40);
            while process_alive(pid) {
                if Instant::now() >= deadline {
                    anyhow::bail!("the daemon (pid {pid}) is still stopping; see logs/daemon.log");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if json {
                return super::print_json(&json!({"running": false, "stopped": true, "pid": pid}));
            }
            println!("daemon stopped (pid {pid})");
            Ok(())
        }
        DaemonCmd::Status { json } => {
            let status = match Client::connect(ctx.home.root()).await {
                Some(mut c) => c.call(&Request::DaemonStatus).await?,
                None => json!({
                    "running": false,
                    "pid": null,
                    "home": ctx.home.root().display().to_string(),
                    "socket": DaemonPaths::new(ctx.home.root()).socket.display().to_string(),
                }),
            };
            if json {
                return super::print_json(&status);
            }
            if status["running"].as_bool() == Some(true) {
                let s = &status["services"];
                println!(
                    "daemon running (pid {}, up {} s) on {}\nservices: {} total, {} running, {} starting, {} unhealthy, {} failed\nscheduler: {}  worker: {}",
                    status["pid"],
                    status["uptime_secs"],
                    status["database"].as_str().unwrap_or_default(),
                    s["total"], s["running"], s["starting"], s["unhealthy"], s["failed"],
                    on_off(&status["scheduler"]),
                    on_off(&status["worker"]),
                );
            } else {
                println!("no daemon running (start one with `zocalo daemon start`)");
            }
            Ok(())
        }
        DaemonCmd::Install { json } => install(ctx, json),
        DaemonCmd::Uninstall { json } => uninstall(ctx, json),
        DaemonCmd::Run { detach } => {
            if detach {
                // A session of its own: the terminal's hang-up and Ctrl-C do not reach it.
                let _ = nix::unistd::setsid();
            }
            let work = DaemonWork::start(ctx).await?;
            eprintln!(
                "daemon running (pid {}), socket {}",
                std::process::id(),
                DaemonPaths::new(ctx.home.root()).socket.display()
            );
            let stop = work.cancel_token();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = zocalo_runtime::signals::terminated() => {}
            }
            eprintln!("daemon stopping");
            let stopped = work.shutdown().await;
            ctx.close().await;
            stopped?;
            eprintln!("daemon stopped");
            Ok(())
        }
    }
}

fn install(ctx: &Runtime, json: bool) -> anyhow::Result<()> {
    let r = daemon::install(ctx, &std::env::current_exe()?)?;
    if json {
        return super::print_json(&serde_json::to_value(&r)?);
    }
    let unit = &r.unit;
    let user = if unit.system { "" } else { " --user" };
    if !r.installed {
        // Nothing here would start it: show the unit and say where it goes.
        print!("{}", unit.text);
        eprintln!(
            "systemd is not running on this machine, so nothing was installed. Save the unit \
             above as {} on a machine with systemd, then `systemctl{user} enable --now {}`; or \
             start `zocalo daemon run` from your init system.",
            unit.path.display(),
            daemon::UNIT_NAME
        );
        return Ok(());
    }
    println!("wrote {}", unit.path.display());
    if r.enabled {
        println!(
            "enabled: the daemon starts at boot (now: `systemctl{user} start {}`)",
            daemon::UNIT_NAME
        );
    }
    Ok(())
}

fn uninstall(ctx: &Runtime, json: bool) -> anyhow::Result<()> {
    let (removed, path) = daemon::uninstall(ctx, &std::env::current_exe()?)?;
    if json {
        return super::print_json(&json!({"removed": removed, "path": path}));
    }
    if removed {
        println!("removed {}", path.display());
    } else {
        println!("no unit at {}: nothing to remove", path.display());
    }
    Ok(())
}

fn on_off(v: &serde_json::Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "on"
    } else {
        "off"
    }
}

fn process_alive(pid: i32) -> bool {
    pid > 0 && zocalo_services::procs::stat(pid).is_some_and(|s| s.state != 'Z')
}
