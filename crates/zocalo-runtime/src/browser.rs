//! `browser run|screenshot|snapshot`: headless Chromium for one command. Input is checked
//! before Chromium starts (bad input). While a browser runs, Ctrl-C, SIGTERM and SIGHUP
//! cancel the work; cancelling drops the browser, which kills Chromium's whole process
//! group, so no Chromium outlives the command.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use zocalo_browser::{
    parse_script, png_size, run_script, validate_url, Browser, BrowserError, LaunchOptions,
    Navigated, RunReport, Snapshot, StepReport, DEFAULT_STEP_TIMEOUT,
};

use crate::usage;

/// The viewport, in CSS pixels (16 to 8192 each way).
pub fn launch_options(width: u32, height: u32) -> anyhow::Result<LaunchOptions> {
    for (name, v) in [("--width", width), ("--height", height)] {
        if !(16..=8192).contains(&v) {
            return Err(usage(format!(
                "{name} must be from 16 to 8192 pixels, not {v}"
            )));
        }
    }
    Ok(LaunchOptions {
        width,
        height,
        ..LaunchOptions::default()
    })
}

/// A page load's time limit: default, or 0 to 600 seconds.
fn step_timeout(secs: Option<f64>) -> anyhow::Result<Duration> {
    match secs {
        None => Ok(DEFAULT_STEP_TIMEOUT),
        Some(s) if s.is_finite() && s > 0.0 && s <= 600.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(usage(format!(
            "--timeout must be between 0 and 600 seconds, not {s}"
        ))),
    }
}

/// `browser run SCRIPT`: every step of the script file, until one fails; `on_step` sees each.
pub async fn run_file(
    script: &Path,
    opts: &LaunchOptions,
    on_step: impl FnMut(&StepReport),
) -> anyhow::Result<RunReport> {
    let text = std::fs::read_to_string(script)
        .map_err(|e| usage(format!("cannot read {}: {e}", script.display())))?;
    let parsed = parse_script(&text).map_err(|e| usage(format!("{}: {e}", script.display())))?;
    let base = std::env::current_dir().context("cannot read the working directory")?;
    interruptible(async {
        let browser = Browser::launch(opts).await?;
        let mut tab = browser.new_tab().await?;
        Ok(run_script(&mut tab, &parsed, &base, on_step).await)
    })
    .await
}

/// What `browser screenshot` wrote.
#[derive(Debug, Serialize)]
pub struct Shot {
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub url: String,
    pub title: String,
    pub status: Option<u16>,
}

/// `browser screenshot URL --out FILE.png`.
pub async fn screenshot(
    url: &str,
    out: &Path,
    full_page: bool,
    timeout: Option<f64>,
    opts: &LaunchOptions,
) -> anyhow::Result<Shot> {
    validate_url(url).map_err(|e| usage(e.to_string()))?;
    let timeout = step_timeout(timeout)?;
    let (nav, png): (Navigated, Vec<u8>) = interruptible(async {
        let browser = Browser::launch(opts).await?;
        let mut tab = browser.new_tab().await?;
        let nav = tab.goto(url, timeout).await?;
        Ok((nav, tab.screenshot(full_page).await?))
    })
    .await?;
    std::fs::write(out, &png).with_context(|| format!("cannot write {}", out.display()))?;
    let (width, height) = png_size(&png).unwrap_or((0, 0));
    Ok(Shot {
        path: out.display().to_string(),
        width,
        height,
        bytes: png.len(),
        url: nav.url,
        title: nav.title,
        status: nav.status,
    })
}

/// `browser snapshot URL`: the page's interactive and landmark elements with refs.
pub async fn snapshot(
    url: &str,
    timeout: Option<f64>,
    opts: &LaunchOptions,
) -> anyhow::Result<Snapshot> {
    validate_url(url).map_err(|e| usage(e.to_string()))?;
    let timeout = step_timeout(timeout)?;
    interruptible(async {
        let browser = Browser::launch(opts).await?;
        let mut tab = browser.new_tab().await?;
        tab.goto(url, timeout).await?;
        tab.snapshot().await
    })
    .await
}

/// Run `work` until it ends or a signal (Ctrl-C, SIGTERM, SIGHUP) arrives. On a signal the
/// work is dropped, and with it the browser: Chromium's process group is killed.
async fn interruptible<T>(
    work: impl Future<Output = Result<T, BrowserError>>,
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
