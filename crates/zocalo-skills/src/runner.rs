//! Running a skill's script: a child process in its own process group, the skill directory as
//! working directory, a clean environment, a wall-clock limit and capped output.
//!
//! Writes: each run gets a fresh scratch directory (`TMPDIR`, `ZOCALO_SKILL_SCRATCH`), removed
//! afterwards. With a [`RunLimits::launcher`] (the `zocalo` binary) the script is started
//! through [`crate::sandbox`], which restricts its writes to that directory with Landlock where
//! the kernel allows it; [`RunOutput::sandbox`] says what was enforced.
//!
//! What this does NOT isolate (see docs/skills.md): reading files (a script can read whatever
//! the user can), the network, memory and CPU; and writes, when Landlock is unavailable. It
//! keeps provider keys and the rest of zocalo's environment away from scripts, and it bounds
//! time and output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::paths::resolve_inside;
use crate::{Skill, SkillError};

/// Limits for one script run.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Wall-clock limit; then the whole process group is killed.
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr each; the rest is counted and dropped.
    pub max_output: usize,
    /// The sandbox launcher: a program that takes [`crate::sandbox::SUBCOMMAND`] as its first
    /// argument (the `zocalo` binary, i.e. `std::env::current_exe()`). `None` runs scripts
    /// without write restrictions (logged once as a warning).
    pub launcher: Option<PathBuf>,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_output: 64 * 1024,
            launcher: None,
        }
    }
}

impl RunLimits {
    /// The defaults, with scripts sandboxed through `launcher`.
    pub fn sandboxed(launcher: impl Into<PathBuf>) -> Self {
        Self {
            launcher: Some(launcher.into()),
            ..Self::default()
        }
    }
}

/// What a script did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunOutput {
    /// The program and arguments actually started.
    pub command: Vec<String>,
    /// `None` when killed by a signal (including at the time limit).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Captured output, cut at the limit with a `[... truncated ...]` line.
    pub stdout: String,
    pub stderr: String,
    /// Bytes the script wrote, including the dropped part.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub elapsed_ms: u64,
    /// What restricted the script's writes: `landlock-vN` (the Landlock ABI in force) or
    /// `none` (no launcher, or a kernel without Landlock).
    pub sandbox: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// A compact text for the model.
    pub fn render(&self) -> String {
        let status = if self.timed_out {
            format!("killed at the time limit after {} ms", self.elapsed_ms)
        } else {
            match self.exit_code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            }
        };
        let mut out = format!("[{status}]\n");
        if !self.stdout.is_empty() {
            out.push_str("--- stdout ---\n");
            out.push_str(&self.stdout);
            if !self.stdout.ends_with('\n') {
                out.push('\n');
            }
        }
        if !self.stderr.is_empty() {
            out.push_str("--- stderr ---\n");
            out.push_str(&self.stderr);
        }
        out
    }
}

/// How a script is started: program + arguments before the script path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
}

/// Seed-style Python scripts define `run()` or `execute()` and are called through this shim:
/// `key=value` arguments become keyword arguments when the function takes them, the rest are
/// positional (a one-parameter function that cannot take them gets the whole list); a return
/// value is printed (JSON for non-strings).
pub const PYTHON_SHIM: &str = r#"
import asyncio, importlib.util, inspect, json, os, sys
path, args = sys.argv[1], sys.argv[2:]
sys.argv = [path] + args
sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
spec = importlib.util.spec_from_file_location("skill_script", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
fn = getattr(mod, "run", None) or getattr(mod, "execute", None)
if not callable(fn):
    sys.exit("zocalo: %s defines neither run() nor execute()" % path)
sig = inspect.signature(fn)
kwargs, positional = {}, []
for a in args:
    k, sep, v = a.partition("=")
    if sep and k.isidentifier():
        kwargs[k] = v
    else:
        positional.append(a)
takes_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
if kwargs and not takes_kw and not all(k in sig.parameters for k in kwargs):
    kwargs, positional = {}, list(args)
try:
    sig.bind(*positional, **kwargs)
except TypeError:
    if len(sig.parameters) == 1:
        kwargs, positional = {}, [list(args)]
result = fn(*positional, **kwargs)
if inspect.iscoroutine(result):
    result = asyncio.run(result)
if result is not None:
    print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
"#;

/// Pick the interpreter: seed-style Python through the shim, else the `#!` line, else the
/// extension (python3, bash, node), else run the file itself if it is executable.
pub fn invocation_for(path: &Path) -> Result<Invocation, SkillError> {
    let head = crate::validate::read_capped(path, 64 * 1024)
        .ok()
        .flatten()
        .unwrap_or_default();
    let head = String::from_utf8_lossy(&head);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "py" && is_seed_style_python(&head) {
        return Ok(Invocation {
            program: "python3".into(),
            args: vec!["-c".into(), PYTHON_SHIM.into()],
        });
    }
    if let Some(line) = head.strip_prefix("#!") {
        let line = line.lines().next().unwrap_or_default();
        let mut parts = line.split_whitespace().map(str::to_owned);
        if let Some(program) = parts.next() {
            return Ok(Invocation {
                program,
                args: parts.collect(),
            });
        }
    }
    let program = match ext.as_str() {
        "py" => "python3",
        "sh" | "bash" => "bash",
        "js" | "mjs" | "cjs" => "node",
        _ => {
            return Err(SkillError::NoInterpreter {
                path: path.display().to_string(),
            })
        }
    };
    Ok(Invocation {
        program: program.into(),
        args: Vec::new(),
    })
}

/// A module with a top-level `run()`/`execute()` and no `__main__` block.
fn is_seed_style_python(source: &str) -> bool {
    let defines = source.lines().any(|l| {
        l.starts_with("def run(")
            || l.starts_with("def execute(")
            || l.starts_with("async def run(")
            || l.starts_with("async def execute(")
    });
    defines && !source.contains("__main__")
}

/// Find the script to run: `script` (a path inside the skill, or a bare name looked up in
/// `scripts/`), or when `None` the skill's only script, or `scripts/<skill name>.*`.
pub fn find_script(skill: &Skill, script: Option<&str>) -> Result<PathBuf, SkillError> {
    let scripts = list_scripts(&skill.dir);
    match script {
        Some(s) => match resolve_inside(&skill.dir, s, &skill.name) {
            Ok(p) if p.is_file() => Ok(p),
            Ok(_) => Err(SkillError::NoSuchFile {
                skill: skill.name.clone(),
                path: s.into(),
            }),
            Err(SkillError::NoSuchFile { .. }) if !s.contains('/') => {
                let stemmed = scripts.iter().find(|rel| {
                    Path::new(rel).parent() == Some(Path::new("scripts"))
                        && (Path::new(rel).file_name() == Some(s.as_ref())
                            || Path::new(rel).file_stem() == Some(s.as_ref()))
                });
                match stemmed {
                    Some(rel) => Ok(skill.dir.join(rel)),
                    None => Err(SkillError::NoSuchFile {
                        skill: skill.name.clone(),
                        path: s.into(),
                    }),
                }
            }
            Err(e) => Err(e),
        },
        None => {
            let top: Vec<&String> = scripts
                .iter()
                .filter(|rel| Path::new(rel).parent() == Some(Path::new("scripts")))
                .collect();
            if let Some(rel) = top
                .iter()
                .find(|rel| Path::new(rel.as_str()).file_stem() == Some(skill.name.as_ref()))
            {
                return Ok(skill.dir.join(rel.as_str()));
            }
            match top.as_slice() {
                [only] => Ok(skill.dir.join(only.as_str())),
                _ => Err(SkillError::NoScript {
                    skill: skill.name.clone(),
                    scripts,
                }),
            }
        }
    }
}

/// Files under `scripts/`, relative to the skill dir, sorted.
pub fn list_scripts(dir: &Path) -> Vec<String> {
    crate::paths::list_files(dir, 500)
        .0
        .into_iter()
        .filter(|p| p.starts_with("scripts/") && !p.ends_with("__init__.py"))
        .collect()
}

/// Run `script` of `skill` with `args` under `limits`.
pub async fn run_script(
    skill: &Skill,
    script: Option<&str>,
    args: &[String],
    limits: &RunLimits,
) -> Result<RunOutput, SkillError> {
    let path = find_script(skill, script)?;
    let inv = invocation_for(&path)?;
    let mut command = vec![inv.program.clone()];
    command.extend(inv.args.iter().cloned());
    command.push(path.display().to_string());
    command.extend(args.iter().cloned());

    // A fresh scratch directory per run, the only place a sandboxed script may write; the
    // status file beside it is where the launcher reports what it enforced.
    let run_dir = tempfile::Builder::new()
        .prefix("zocalo-skill-")
        .tempdir()
        .map_err(|e| SkillError::io(std::env::temp_dir(), e))?;
    let scratch = run_dir.path().join("scratch");
    std::fs::create_dir(&scratch).map_err(|e| SkillError::io(&scratch, e))?;
    let status_file = run_dir.path().join("sandbox-status");

    let mut cmd = match &limits.launcher {
        Some(launcher) => {
            let mut c = tokio::process::Command::new(launcher);
            c.arg(crate::sandbox::SUBCOMMAND)
                .arg("--status")
                .arg(&status_file)
                .arg("--write")
                .arg(&scratch)
                .arg("--")
                .arg(&inv.program);
            c
        }
        None => tokio::process::Command::new(&inv.program),
    };
    cmd.args(&inv.args)
        .arg(&path)
        .args(args)
        .current_dir(&skill.dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env(
            "LANG",
            std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        )
        .env("ZOCALO_SKILL_DIR", &skill.dir)
        .env("ZOCALO_SKILL_SCRATCH", &scratch)
        .env("TMPDIR", &scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    #[cfg(unix)]
    cmd.process_group(0);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| SkillError::Spawn {
        program: match &limits.launcher {
            Some(l) => l.display().to_string(),
            None => inv.program.clone(),
        },
        source,
    })?;
    let pid = child.id();
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(capture(s, limits.max_output)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(capture(s, limits.max_output)));

    let (status, timed_out) = match tokio::time::timeout(limits.timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            kill_group(pid);
            (child.wait().await.ok(), true)
        }
    };
    // Anything the script left running in its group goes with it; this also frees the pipes.
    kill_group(pid);
    let elapsed_ms = started.elapsed().as_millis() as u64;

    let (stdout, stdout_bytes) = join_capture(out).await;
    let (stderr, stderr_bytes) = join_capture(err).await;

    let (sandbox, reason) = match &limits.launcher {
        Some(_) => {
            let text = crate::validate::read_capped(&status_file, 4096)
                .ok()
                .flatten()
                .unwrap_or_default();
            let (label, reason, exec_errno) =
                crate::sandbox::read_status(&String::from_utf8_lossy(&text));
            if let Some(errno) = exec_errno {
                return Err(SkillError::Spawn {
                    program: inv.program.clone(),
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            (label, reason)
        }
        None => (
            "none".to_owned(),
            Some("no sandbox launcher was configured".to_owned()),
        ),
    };
    if sandbox == "none" {
        warn_unsandboxed(reason.as_deref().unwrap_or("unknown reason"));
    }
    Ok(RunOutput {
        command,
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        stdout,
        stderr,
        stdout_bytes,
        stderr_bytes,
        elapsed_ms,
        sandbox,
    })
}

/// Once per process: scripts run with the user's full write access.
fn warn_unsandboxed(reason: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "skill scripts run without write restrictions ({reason}); see docs/skills.md"
        );
    }
}

/// What the sandbox would enforce here: runs `true` through `launcher` and returns its label
/// (`landlock-vN` or `none`) and, for `none`, why.
pub async fn probe_sandbox(launcher: &Path) -> (String, Option<String>) {
    let dir = match tempfile::Builder::new().prefix("zocalo-probe-").tempdir() {
        Ok(d) => d,
        Err(e) => return ("none".into(), Some(format!("no temporary directory: {e}"))),
    };
    let status_file = dir.path().join("status");
    let run = tokio::process::Command::new(launcher)
        .arg(crate::sandbox::SUBCOMMAND)
        .arg("--status")
        .arg(&status_file)
        .arg("--write")
        .arg(dir.path())
        .arg("--")
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    if let Err(e) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        return (
            "none".into(),
            Some(format!("cannot start {}: {e}", launcher.display())),
        );
    }
    let text = std::fs::read_to_string(&status_file).unwrap_or_default();
    let (label, reason, _) = crate::sandbox::read_status(&text);
    (label, reason)
}

fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // ESRCH (already gone) is the normal case.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A [`capture`] running in a task of its own.
pub type Capture = tokio::task::JoinHandle<(Vec<u8>, u64)>;

/// What a [`Capture`] kept and the bytes it saw, once the process has ended. A process that
/// left the group (setsid) may hold the pipe open: this waits for it at most 2 s.
pub async fn collect(mut handle: Capture) -> (Vec<u8>, u64) {
    match tokio::time::timeout(Duration::from_secs(2), &mut handle).await {
        Ok(Ok(r)) => r,
        _ => {
            handle.abort();
            (Vec::new(), 0)
        }
    }
}

async fn join_capture(handle: Option<Capture>) -> (String, u64) {
    let Some(handle) = handle else {
        return (String::new(), 0);
    };
    let (kept, total) = collect(handle).await;
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if total > kept.len() as u64 {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[... output truncated: {} of {total} bytes shown ...]\n",
            kept.len()
        ));
    }
    (text, total)
}

/// Keep the first `limit` bytes, count and drop the rest (draining so the child never blocks
/// on a full pipe).
pub async fn capture(mut reader: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            invocation_for(&p)
        };
        assert_eq!(w("a.py", "print(1)\n").unwrap().program, "python3");
        assert_eq!(w("a.sh", "echo\n").unwrap().program, "bash");
        assert_eq!(w("a.js", "1\n").unwrap().program, "node");
        let i = w("a", "#!/usr/bin/env -S python3 -u\nprint(1)\n").unwrap();
        assert_eq!(i.program, "/usr/bin/env");
        assert_eq!(i.args, ["-S", "python3", "-u"]);
        assert!(w("a.txt", "hi").is_err());
        let seed = w("s.py", "def run(city):\n    return city\n").unwrap();
        assert_eq!(seed.args[0], "-c");
        let main = w(
            "m.py",
            "def run():\n    pass\nif __name__ == '__main__':\n    run()\n",
        )
        .unwrap();
        assert!(main.args.is_empty());
    }
}
