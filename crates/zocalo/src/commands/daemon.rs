//! `zocalo daemon start|stop|status|install|uninstall|run`: the background process that
//! supervises services, fires automations and runs pool jobs (`zocalo_runtime::daemon`).

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use zocalo_runtime::daemon::{self, UNIT_NAME};
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Start the daemon in the background (no-op when it runs); output in logs/daemon.log.
    Start,
    /// Stop the daemon: its services are stopped, and started again by the next daemon.
    Stop,
    /// Whether a daemon runs for this data home: {"running","pid",...}.
    Status,
    /// Write a systemd unit that starts the daemon at boot (and enable it where systemd
    /// runs); without systemd, print the unit and where to put it.
    Install,
    /// Remove the unit `daemon install` wrote (disabling it first where systemd runs).
    Uninstall,
    /// Run the daemon in the foreground until SIGTERM, Ctrl-C or `zocalo daemon stop`.
    Run {
        /// Detach from the terminal's session (what `daemon start` uses).
        #[arg(long, hide = true)]
        detach: bool,
    },
}

pub async fn run(ctx: &Runtime, cmd: DaemonCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        DaemonCmd::Start => {
            let (pid, already) = daemon::start(ctx).await?;
            if json {
                return print_json(
                    &json!({"running": true, "pid": pid, "already_running": already}),
                );
            }
            let how = if already {
                "already running"
            } else {
                "started"
            };
            println!("daemon {how} (pid {pid})");
        }
        DaemonCmd::Stop => match daemon::stop(ctx).await? {
            None if json => print_json(&json!({"running": false, "stopped": false}))?,
            None => println!("no daemon running"),
            Some(pid) if json => {
                print_json(&json!({"running": false, "stopped": true, "pid": pid}))?
            }
            Some(pid) => println!("daemon stopped (pid {pid})"),
        },
        DaemonCmd::Status => {
            let status = daemon::status(ctx).await?;
            if json {
                return print_json(&status);
            }
            if status["running"].as_bool() != Some(true) {
                println!("no daemon running (start one with `zocalo daemon start`)");
                return Ok(());
            }
            let s = &status["services"];
            let on_off = |v: &serde_json::Value| if v == true { "on" } else { "off" };
            println!(
                "daemon running (pid {}, up {} s) on {}\nservices: {} total, {} running, {} starting, {} unhealthy, {} failed\nscheduler: {}  worker: {}",
                status["pid"],
                status["uptime_secs"],
                status["database"].as_str().unwrap_or_default(),
                s["total"], s["running"], s["starting"], s["unhealthy"], s["failed"],
                on_off(&status["scheduler"]),
                on_off(&status["worker"]),
            );
        }
        DaemonCmd::Install => {
            let r = daemon::install(ctx, &std::env::current_exe()?)?;
            if json {
                return print_json(&r);
            }
            let user = if r.unit.system { "" } else { " --user" };
            if !r.installed {
                // Nothing here would start it: show the unit and say where it goes.
                print!("{}", r.unit.text);
                eprintln!(
                    "systemd is not running on this machine, so nothing was installed. Save the unit \
                     above as {} on a machine with systemd, then `systemctl{user} enable --now \
                     {UNIT_NAME}`; or start `zocalo daemon run` from your init system.",
                    r.unit.path.display(),
                );
                return Ok(());
            }
            println!("wrote {}", r.unit.path.display());
            if r.enabled {
                println!(
                    "enabled: the daemon starts at boot (now: `systemctl{user} start {UNIT_NAME}`)"
                );
            }
        }
        DaemonCmd::Uninstall => {
            let (removed, path) = daemon::uninstall(ctx, &std::env::current_exe()?)?;
            if json {
                return print_json(&json!({"removed": removed, "path": path}));
            }
            match removed {
                true => println!("removed {}", path.display()),
                false => println!("no unit at {}: nothing to remove", path.display()),
            }
        }
        DaemonCmd::Run { detach } => {
            if detach {
                // A session of its own: the terminal's hang-up and Ctrl-C do not reach it.
                let _ = nix::unistd::setsid();
            }
            daemon::run(ctx, |socket| {
                let pid = std::process::id();
                eprintln!("daemon running (pid {pid}), socket {}", socket.display())
            })
            .await?;
            eprintln!("daemon stopped");
        }
    }
    Ok(())
}
