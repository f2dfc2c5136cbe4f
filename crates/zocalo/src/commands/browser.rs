//! `zocalo browser run|screenshot|snapshot`: headless Chromium from the command line.
//!
//! Input is checked before Chromium starts (exit 2). While a browser runs, Ctrl-C, SIGTERM
//! and SIGHUP cancel the work; cancelling drops the browser, which kills Chromium's whole
//! process group, so no Chromium outlives the command.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use zocalo_browser::{
    parse_script, png_size, run_script, validate_url, Browser, LaunchOptions, StepReport,
    DEFAULT_STEP_TIMEOUT,
};

use crate::commands::print_json;
use crate::exit::usage;

#[derive(Debug, Subcommand)]
pub enum BrowserCmd {
    /// Run a JSON script of steps: goto, click, type, wait_for, eval, screenshot, snapshot
    /// (see docs/browser.md). Stops at the first failing step, exit 1.
    Run {
        /// The script: {"steps": [...]} or a bare array of steps.
        script: PathBuf,
        /// Print one JSON document {"ok","steps":[{"step","ok","value"?,"error"?}],"url","title"}.
        #[arg(long)]
        json: bool,
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
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List a page's interactive and landmark elements with refs (e1, e2, ...).
    Snapshot {
        url: String,
        /// Seconds to wait for the page to load.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        #[arg(long)]
        json: bool,
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
        for (name, v) in [("--width", self.width), ("--height", self.height)] {
            if !(16..=8192).contains(&v) {
                return Err(usage(format!(
                    "{name} must be from 16 to 8192 pixels, not {v}"
                )));
            }
        }
        Ok(LaunchOptions {
            width: self.width,
            height: self.height,
            ..LaunchOptions::default()
        })
    }
}

fn step_timeout(secs: Option<f64>) -> anyhow::Result<Duration> {
    match secs {
        None => Ok(DEFAULT_STEP_TIMEOUT),
        Some(s) if s.is_finite() && s > 0.0 && s <= 600.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(usage(format!(
            "--timeout must be between 0 and 600 seconds, not {s}"
        ))),
    }
}

pub async fn run(cmd: BrowserCmd) -> anyhow::Result<()> {
    match cmd {
        BrowserCmd::Run { script, json, view } => {
            let text = std::fs::read_to_string(&script)
                .map_err(|e| usage(format!("cannot read {}: {e}", script.display())))?;
            let parsed =
                parse_script(&text).map_err(|e| usage(format!("{}: {e}", script.display())))?;
            let opts = view.launch_options()?;
            let base = std::env::current_dir().context("cannot read the working directory")?;
            let report = interruptible(async {
                let browser = Browser::launch(&opts).await?;
                let mut tab = browser.new_tab().await?;
                let report = run_script(&mut tab, &parsed, &base, |s| {
                    if !json {
                        print_step(s)
                    }
                })
                .await;
                drop(tab);
                drop(browser);
                Ok(report)
            })
            .await?;
            if json {
                print_json(&serde_json::to_value(&report)?)?;
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
            json,
            view,
        } => {
            validate_url(&url).map_err(|e| usage(e.to_string()))?;
            let timeout = step_timeout(timeout)?;
            let opts = view.launch_options()?;
            let (nav, png) = interruptible(async {
                let browser = Browser::launch(&opts).await?;
                let mut tab = browser.new_tab().await?;
                let nav = tab.goto(&url, timeout).await?;
                let png = tab.screenshot(full_page).await?;
                Ok((nav, png))
            })
            .await?;
            std::fs::write(&out, &png)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let (width, height) = png_size(&png).unwrap_or((0, 0));
            if json {
                print_json(&json!({
                    "path": out.display().to_string(),
                    "width": width,
                    "height": height,
                    "bytes": png.len(),
                    "url": nav.url,
                    "title": nav.title,
                    "status": nav.status,
                }))?;
            } else {
                println!(
                    "{} ({width}x{height} PNG, {} bytes) of {}",
                    out.display(),
                    png.len(),
                    nav.url
                );
            }
            Ok(())
        }
        BrowserCmd::Snapshot {
            url,
            timeout,
            json,
            view,
        } => {
            validate_url(&url).map_err(|e| usage(e.to_string()))?;
            let timeout = step_timeout(timeout)?;
            let opts = view.launch_options()?;
            let snap = interruptible(async {
                let browser = Browser::launch(&opts).await?;
                let mut tab = browser.new_tab().await?;
                tab.goto(&url, timeout).await?;
                tab.snapshot().await
            })
            .await?;
            if json {
                print_json(&serde_json::to_value(&snap)?)?;
            } else {
                print!("{}", snap.render());
            }
            Ok(())
        }
    }
}

/// Run `work` until it ends or a signal (Ctrl-C, SIGTERM, SIGHUP) arrives. On a signal the
/// work is dropped, and with it the browser: Chromium's process group is killed.
async fn interruptible<T>(
    work: impl Future<Output = Result<T, zocalo_browser::BrowserError>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::select! {
        r = work => Ok(r?),
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C): the browser was closed")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated (SIGTERM): the browser was closed")),
        _ = hup.recv() => Err(anyhow::anyhow!("hung up (SIGHUP): the browser was closed")),
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
