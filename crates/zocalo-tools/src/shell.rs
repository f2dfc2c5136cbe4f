//! `shell`: `sh -c COMMAND` in the workspace, through the skills sandbox.
//!
//! Each call gets:
//! - the workspace root as working directory and as `HOME`;
//! - a fresh scratch directory as `TMPDIR`, removed when the call ends;
//! - a clean environment: `PATH`, `HOME`, `LANG`, `TMPDIR` and nothing else, so provider keys
//!   and the rest of zocalo's environment never reach the command;
//! - with a launcher (the `zocalo` binary), Landlock write confinement through
//!   `zocalo __skill-sandbox --write WORKSPACE --write SCRATCH` (see
//!   [`zocalo_skills::sandbox`]): the command and its children may write only there and to
//!   `/dev/null`, where the kernel has Landlock;
//! - its own process group, killed (SIGKILL) at the time limit and again when the command
//!   ends, so background children do not outlive the call;
//! - stdout and stderr on one pipe, in the order they were written, kept up to a cap.
//!
//! This mirrors [`zocalo_skills::run_script`], which is bound to a skill (its directory, its
//! interpreter, a scratch directory as the only writable place) and so cannot run a command
//! line in the workspace as is; the launcher and its status file are shared.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use zocalo_core::{Tool, ToolError, ToolSpec};
use zocalo_skills::runner::{capture, collect, Capture};

use crate::args::{model_err, parse, spec_for};
use crate::Workspace;

/// How the shell tool runs commands.
#[derive(Clone, Debug)]
pub struct ShellConfig {
    /// The sandbox launcher: a program taking `__skill-sandbox` as its first argument (the
    /// `zocalo` binary). `None` runs commands without write confinement (logged once).
    pub launcher: Option<PathBuf>,
    /// Time limit of a call that gives no `timeout_s`.
    pub default_timeout: Duration,
    /// The largest `timeout_s` accepted.
    pub max_timeout: Duration,
    /// Bytes of output kept; the rest is read, counted and dropped.
    pub max_output: usize,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            launcher: None,
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
            max_output: 64 * 1024,
        }
    }
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct ShellOutput {
    /// `None` when killed by a signal (including at the time limit).
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved, cut at the cap with a `[... output truncated ...]` line.
    pub output: String,
    /// Bytes written in all, including the dropped part.
    pub output_bytes: u64,
    pub elapsed: Duration,
    /// What confined the command's writes: `landlock-vN` or `none`.
    pub sandbox: String,
}

impl ShellOutput {
    /// The text the model sees: a status line, then the output.
    pub fn render(&self, timeout: Duration) -> String {
        let secs = self.elapsed.as_secs_f64();
        let status = if self.timed_out {
            format!(
                "timed out after {} s: the command and its children were killed",
                timeout.as_secs()
            )
        } else {
            match (self.exit_code, self.signal) {
                (Some(c), _) => format!("exit code {c}, {secs:.1} s"),
                (None, Some(s)) => format!("killed by signal {s}, {secs:.1} s"),
                (None, None) => format!("killed, {secs:.1} s"),
            }
        };
        let mut out = format!("[{status}]\n");
        if self.output.is_empty() {
            out.push_str("(no output)\n");
        } else {
            out.push_str(&self.output);
        }
        out
    }
}

/// Run a shell command in the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellArgs {
    /// The command line, run with `sh -c` in the workspace directory.
    pub command: String,
    /// Seconds before the command is killed (default 60, at most 600).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// The `shell` tool.
pub struct Shell {
    ws: Arc<Workspace>,
    config: ShellConfig,
}

impl Shell {
    pub fn new(ws: Arc<Workspace>, config: ShellConfig) -> Self {
        Self { ws, config }
    }

    /// Run `command` with a time limit of `timeout`.
    pub async fn run(&self, command: &str, timeout: Duration) -> Result<ShellOutput, ToolError> {
        let fatal = |what: &str, e: std::io::Error| ToolError::Fatal(format!("shell: {what}: {e}"));
        let run_dir = tempfile::Builder::new()
            .prefix("zocalo-shell-")
            .tempdir()
            .map_err(|e| fatal("cannot create a scratch directory", e))?;
        let scratch = run_dir.path().join("scratch");
        std::fs::create_dir(&scratch).map_err(|e| fatal("cannot create a scratch directory", e))?;
        let status_file = run_dir.path().join("sandbox-status");
        let root = self.ws.root();

        let mut cmd = match &self.config.launcher {
            Some(launcher) => {
                let mut c = tokio::process::Command::new(launcher);
                c.arg(zocalo_skills::sandbox::SUBCOMMAND)
                    .arg("--status")
                    .arg(&status_file)
                    .arg("--write")
                    .arg(root)
                    .arg("--write")
                    .arg(&scratch)
                    .arg("--")
                    .arg("sh");
                c
            }
            None => tokio::process::Command::new("sh"),
        };
        // One pipe for both streams keeps their order, as a terminal would show it.
        let (tx, rx) =
            tokio::net::unix::pipe::pipe().map_err(|e| fatal("cannot create a pipe", e))?;
        let write_end = tx
            .into_blocking_fd()
            .map_err(|e| fatal("cannot create a pipe", e))?;
        let write_end2 = write_end
            .try_clone()
            .map_err(|e| fatal("cannot create a pipe", e))?;
        cmd.arg("-c")
            .arg(command)
            .current_dir(root)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env(
                "LANG",
                std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
            )
            .env("HOME", root)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::from(write_end2))
            .kill_on_drop(true)
            .process_group(0);

        let started = Instant::now();
        let spawned = cmd.spawn();
        // The command holds our copies of the pipe's write end: drop them, or the reader
        // would never see the end of the output.
        drop(cmd);
        let mut child = spawned.map_err(|e| match &self.config.launcher {
            Some(l) => fatal(
                &format!("cannot start the sandbox launcher {}", l.display()),
                e,
            ),
            None => fatal("cannot start sh", e),
        })?;
        let pid = child.id();
        // Declared after `child`, so dropped first: if this call is abandoned (the ask was
        // cancelled), the group dies while its leader is not yet reaped and its id still ours.
        let mut guard = GroupGuard(pid);
        let reader = tokio::spawn(capture(rx, self.config.max_output));

        let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                kill_group(pid);
                (child.wait().await.ok(), true)
            }
        };
        // Whatever the command left running in its group goes with it.
        kill_group(pid);
        guard.0 = None;
        let elapsed = started.elapsed();
        let (output, output_bytes) = join_capture(reader).await;

        let sandbox = match &self.config.launcher {
            Some(launcher) => {
                let text = std::fs::read_to_string(&status_file).unwrap_or_default();
                let st = Status::parse(&text);
                if let Some(errno) = st.exec_errno {
                    return Err(ToolError::Fatal(format!(
                        "shell: cannot start sh: {}",
                        std::io::Error::from_raw_os_error(errno)
                    )));
                }
                match st.label {
                    None => {
                        return Err(ToolError::Fatal(format!(
                            "shell: the sandbox launcher {} did not start the command: {}",
                            launcher.display(),
                            output.trim()
                        )))
                    }
                    Some(_) if st.reason.as_deref().is_some_and(|r| r.starts_with("error:")) => {
                        return Err(ToolError::Fatal(format!(
                            "shell: the sandbox could not be set up, so the command was not run: {}",
                            st.reason.unwrap_or_default()
                        )))
                    }
                    Some(label) => {
                        if label == "none" {
                            warn_unconfined(st.reason.as_deref().unwrap_or("unknown reason"));
                        }
                        label
                    }
                }
            }
            None => {
                warn_unconfined("no sandbox launcher was configured");
                "none".to_owned()
            }
        };
        let (exit_code, signal) = match (timed_out, status) {
            (true, _) | (_, None) => (None, None),
            (false, Some(s)) => {
                use std::os::unix::process::ExitStatusExt;
                (s.code(), s.signal())
            }
        };
        Ok(ShellOutput {
            exit_code,
            signal,
            timed_out,
            output,
            output_bytes,
            elapsed,
            sandbox,
        })
    }

    fn timeout_for(&self, timeout_s: Option<u64>) -> Result<Duration, ToolError> {
        let max = self.config.max_timeout.as_secs().max(1);
        match timeout_s {
            None => Ok(self.config.default_timeout),
            Some(s) if (1..=max).contains(&s) => Ok(Duration::from_secs(s)),
            Some(s) => Err(model_err(format!(
                "timeout_s must be between 1 and {max} seconds (got {s})"
            ))),
        }
    }
}

#[async_trait]
impl Tool for Shell {
    fn spec(&self) -> ToolSpec {
        let (default, max) = (
            self.config.default_timeout.as_secs(),
            self.config.max_timeout.as_secs(),
        );
        let mut spec = spec_for::<ShellArgs>(
            "shell",
            &format!(
                "Run a shell command (sh -c) in the workspace directory and return its exit \
                 code and output (stdout and stderr together, at most {} KiB). Writes are \
                 allowed only inside the workspace and $TMPDIR (emptied after each call). No \
                 stdin: do not run interactive programs. Killed after timeout_s seconds \
                 (default {default}).",
                self.config.max_output / 1024
            ),
        );
        // The limits are configurable: say the ones in force.
        if let Some(t) = spec
            .parameters
            .pointer_mut("/properties/timeout_s/description")
        {
            *t = Value::String(format!(
                "Seconds before the command is killed (default {default}, at most {max})."
            ));
        }
        spec
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: ShellArgs = parse("shell", arguments)?;
        if args.command.trim().is_empty() {
            return Err(model_err("command is empty"));
        }
        if args.command.contains('\0') {
            return Err(model_err("command contains a NUL byte"));
        }
        let timeout = self.timeout_for(args.timeout_s)?;
        Ok(self.run(&args.command, timeout).await?.render(timeout))
    }
}

/// The launcher's status file (see [`zocalo_skills::sandbox`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    label: Option<String>,
    reason: Option<String>,
    exec_errno: Option<i32>,
}

impl Status {
    fn parse(text: &str) -> Self {
        let mut st = Status::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("sandbox=") {
                st.label = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("reason=") {
                st.reason = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("exec_errno=") {
                st.exec_errno = v.parse().ok();
            }
        }
        st
    }
}

/// Once per process: commands run with the user's full write access.
fn warn_unconfined(reason: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the shell tool runs commands without write confinement ({reason}); see docs/tools.md"
        );
    }
}

/// Kills the process group on drop, unless disarmed by clearing it.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // ESRCH (the group is already gone) is the normal case.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The skills runner's capture, with this tool's note when output was cut.
async fn join_capture(handle: Capture) -> (String, u64) {
    let (kept, total) = collect(handle).await;
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if total > kept.len() as u64 {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[... output truncated: the first {} of {total} bytes are shown ...]\n",
            kept.len()
        ));
    }
    (text, total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_file() {
        assert_eq!(
            Status::parse("sandbox=landlock-v6\n"),
            Status {
                label: Some("landlock-v6".into()),
                ..Status::default()
            }
        );
        let st = Status::parse("sandbox=none\nreason=error: bad\nexec_errno=2\n");
        assert_eq!(st.label.as_deref(), Some("none"));
        assert_eq!(st.reason.as_deref(), Some("error: bad"));
        assert_eq!(st.exec_errno, Some(2));
        assert_eq!(Status::parse(""), Status::default());
    }
}
