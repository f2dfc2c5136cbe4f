//! Finding Chromium and owning its processes.
//!
//! Chromium is a tree of processes (browser, zygotes, renderers, GPU and network services,
//! crash handlers). Three things together make sure none outlives us, whatever way we exit:
//!
//! 1. It runs in a process group of its own, and dropping [`ChromiumProcess`] kills the whole
//!    group with SIGKILL, then reaps the browser process. Errors, early returns, dropped
//!    futures (a Ctrl-C handler that cancels the work) all end in that drop.
//! 2. It is started with `--remote-debugging-pipe` and its pipe end (fd 3) is the read side of
//!    a pipe only we hold. If we die without running any destructor (SIGKILL, abort, a test
//!    binary whose statics are never dropped), the kernel closes our end, Chromium reads EOF
//!    and shuts itself down. We never speak CDP on that pipe; the WebSocket does the talking.
//! 3. A fresh temporary profile, with `XDG_CONFIG_HOME`/`XDG_CACHE_HOME` pointing into it, so
//!    nothing (crash reports included) is written outside it; it is deleted after the kill.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{BrowserError, Result};

/// Binaries tried, in order, after `ZOCALO_CHROMIUM` and `/usr/bin/chromium`.
const CANDIDATES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// How Chromium is started.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The binary; `None` = [`find_chromium`].
    pub executable: Option<PathBuf>,
    /// Viewport in CSS pixels (device scale factor 1): screenshots have exactly this size.
    pub width: u32,
    pub height: u32,
    /// How long to wait for Chromium to offer its DevTools endpoint.
    pub launch_timeout: Duration,
    /// More command-line switches, e.g. `--lang=de`.
    pub extra_args: Vec<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            executable: None,
            width: 1280,
            height: 720,
            launch_timeout: Duration::from_secs(20),
            extra_args: Vec::new(),
        }
    }
}

/// The Chromium binary to use: `ZOCALO_CHROMIUM` (which must then be executable), else
/// `/usr/bin/chromium`, else `chromium`, `chromium-browser`, `google-chrome` on `PATH`.
pub fn find_chromium() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os("ZOCALO_CHROMIUM").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(BrowserError::ChromiumNotFound {
                detail: format!("ZOCALO_CHROMIUM={} is not an executable file", p.display()),
            })
        };
    }
    let usr_bin = Path::new("/usr/bin/chromium");
    if is_executable(usr_bin) {
        return Ok(usr_bin.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in CANDIDATES {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(BrowserError::ChromiumNotFound {
        detail: format!(
            "ZOCALO_CHROMIUM is unset and none of /usr/bin/chromium, {} is on PATH",
            CANDIDATES.join(", ")
        ),
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The switches we always pass. Public so `doctor` and the docs can show them.
pub fn base_args(width: u32, height: u32) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--remote-debugging-port=0",
        "--remote-debugging-pipe",
        // Nothing may go on the network by itself.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        "--metrics-recording-only",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
        // No GPU on servers; software rendering gives the same pixels every run.
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--password-store=basic",
        "--use-mock-keychain",
        "--force-color-profile=srgb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--window-size={width},{height}"));
    // Chromium's sandbox refuses to run as root; elsewhere keep it.
    if nix::unistd::geteuid().is_root() {
        args.push("--no-sandbox".into());
    }
    args
}

/// A running Chromium. Dropping it kills every process Chromium started.
pub(crate) struct ChromiumProcess {
    child: Child,
    /// Write end of the pipe Chromium reads as its DevTools pipe: held, never written.
    _lifeline: Option<ChildStdin>,
    profile: Option<tempfile::TempDir>,
    ws_url: String,
}

impl ChromiumProcess {
    pub async fn spawn(opts: &LaunchOptions) -> Result<Self> {
        let exe = match &opts.executable {
            Some(p) => p.clone(),
            None => find_chromium()?,
        };
        let profile = tempfile::Builder::new()
            .prefix("zocalo-chromium-")
            .tempdir()
            .map_err(|e| BrowserError::Launch(format!("cannot create a temporary profile: {e}")))?;
        let mut args = base_args(opts.width, opts.height);
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(opts.extra_args.iter().cloned());
        args.push("about:blank".into());

        // `sh` maps our stdin pipe to Chromium's fd 3 (the DevTools pipe it reads) and
        // /dev/null to fd 4, then execs Chromium in place (same pid).
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>/dev/null 0</dev/null"#)
            .arg(&exe)
            .args(&args)
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| BrowserError::Launch(format!("cannot run {}: {e}", exe.display())))?;
        let lifeline = child.stdin.take();
        let stderr = child.stderr.take();
        let mut process = ChromiumProcess {
            child,
            _lifeline: lifeline,
            profile: Some(profile),
            ws_url: String::new(),
        };
        tracing::debug!(pid = process.pid(), exe = %exe.display(), "chromium started");

        // Chromium prints `DevTools listening on ws://...` on stderr. A thread reads it, then
        // keeps draining stderr so Chromium never blocks on a full pipe.
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        if let Some(stderr) = stderr {
            let tail = tail.clone();
            std::thread::Builder::new()
                .name("chromium-stderr".into())
                .spawn(move || {
                    let mut tx = Some(tx);
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if let Some(url) = line.strip_prefix("DevTools listening on ") {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(url.trim().to_owned());
                            }
                            continue;
                        }
                        if tx.is_some() {
                            if let Ok(mut t) = tail.lock() {
                                if t.len() == 20 {
                                    t.pop_front();
                                }
                                t.push_back(line);
                            }
                        } else {
                            tracing::trace!(target: "chromium", "{line}");
                        }
                    }
                })
                .map_err(|e| BrowserError::Launch(format!("cannot start a thread: {e}")))?;
        }
        let stderr_tail = |process: &mut ChromiumProcess| {
            let lines: Vec<String> = tail
                .lock()
                .map(|t| {
                    t.iter()
                        // D-Bus noise from a desktop-less machine says nothing useful.
                        .filter(|l| !l.contains("dbus"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let status = match process.child.try_wait() {
                Ok(Some(s)) => format!("it exited ({s})"),
                _ => "it is still running".into(),
            };
            if lines.is_empty() {
                status
            } else {
                format!("{status}; its last output:\n{}", lines.join("\n"))
            }
        };
        match tokio::time::timeout(opts.launch_timeout, rx).await {
            Ok(Ok(url)) => {
                process.ws_url = url;
                Ok(process)
            }
            Ok(Err(_)) => {
                // stderr closed before the line came: Chromium is gone. Reap it first so the
                // message can say how it ended.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while matches!(process.child.try_wait(), Ok(None)) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await;
                Err(BrowserError::Launch(format!(
                    "{} gave no DevTools endpoint: {}",
                    exe.display(),
                    stderr_tail(&mut process)
                )))
            }
            Err(_) => Err(BrowserError::Launch(format!(
                "{} gave no DevTools endpoint within {}: {}",
                exe.display(),
                crate::error::fmt_duration(opts.launch_timeout),
                stderr_tail(&mut process)
            ))),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The group id is the browser's pid (process_group(0)). Until we reap the browser its
        // pid cannot be reused, so this never hits a stranger.
        if let Ok(pgid) = i32::try_from(pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(profile) = self.profile.take() {
            let _ = profile.close();
        }
        tracing::debug!(pid, "chromium stopped");
    }
}
