//! `zocalo browser run|screenshot|snapshot`: headless Chromium from the command line
//! (`zocalo_runtime::browser`: input checked before Chromium starts, signals close it).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use zocalo_browser::{LaunchOptions, StepReport};
use zocalo_runtime::browser;

use crate::commands::print_json;

#[derive(Debug, Subcommand)]
pub enum BrowserCmd {
    /// Run a JSON script of steps: goto, click, type, wait_for, eval, screenshot, snapshot
    /// (see docs/browser.md). Stops at the first failing step, exit 1. --json: one document
    /// {"ok","steps":[{"step","ok","value"?,"error"?}],"url","title"}.
    Run {
        /// The script: {"steps": [...]} or a bare array of steps.
        script: PathBuf,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Save a PNG of a page.
    Screenshot {
        url: String,
        /// The PNG file to write.
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
        /// The whole scrollable page, not just the viewport.
        #[arg(long)]
        full_page: bool,
        /// Seconds to wait for the page to load.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List a page's interactive and landmark elements with refs (e1, e2, ...).
    Snapshot {
        url: String,
        /// Seconds to wait for the page to load.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        #[command(flatten)]
        view: ViewArgs,
    },
}

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Viewport width in CSS pixels.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Viewport height in CSS pixels.
    #[arg(long, default_value_t = 720)]
    height: u32,
}

impl ViewArgs {
    fn launch_options(&self) -> anyhow::Result<LaunchOptions> {
        browser::launch_options(self.width, self.height)
    }
}

pub async fn run(cmd: BrowserCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        BrowserCmd::Run { script, view } => {
            let opts = view.launch_options()?;
            let report = browser::run_file(&script, &opts, |s| {
                if !json {
                    print_step(s)
                }
            })
            .await?;
            if json {
                print_json(&report)?;
            } else {
                println!("url: {}\ntitle: {}", report.url, report.title);
            }
            match report.failure() {
                Some(f) => Err(anyhow::anyhow!(
                    "{}",
                    f.error
                        .clone()
                        .unwrap_or_else(|| format!("step {} failed", f.step))
                )),
                None => Ok(()),
            }
        }
        BrowserCmd::Screenshot {
            url,
            out,
            full_page,
            timeout,
            view,
        } => {
            let shot = browser::screenshot(&url, &out, full_page, timeout, &view.launch_options()?)
                .await?;
            if json {
                return print_json(&shot);
            }
            println!(
                "{} ({}x{} PNG, {} bytes) of {}",
                shot.path, shot.width, shot.height, shot.bytes, shot.url
            );
            Ok(())
        }
        BrowserCmd::Snapshot { url, timeout, view } => {
            let snap = browser::snapshot(&url, timeout, &view.launch_options()?).await?;
            if json {
                return print_json(&snap);
            }
            print!("{}", snap.render());
            Ok(())
        }
    }
}

fn print_step(s: &StepReport) {
    if !s.ok {
        // The error itself goes to stderr once, when the command fails.
        println!("FAIL step {} {}", s.step, s.action);
        return;
    }
    let detail = match (&s.value, s.action) {
        (None, _) => String::new(),
        (Some(v), "snapshot") => {
            let snap: Result<zocalo_browser::Snapshot, _> = serde_json::from_value(v.clone());
            match snap {
                Ok(snap) => format!(
                    "\n{}",
                    snap.render()
                        .lines()
                        .map(|l| format!("    {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                Err(_) => format!(" {v}"),
            }
        }
        (Some(v), _) => format!(" {v}"),
    };
    println!("ok   step {} {}{detail}", s.step, s.action);
}
