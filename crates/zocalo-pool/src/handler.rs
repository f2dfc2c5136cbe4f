//! Job kinds: the [`Handler`] trait, the [`Registry`] that maps kinds to handlers, and the two
//! built-in kinds, `noop` and `shell`. Other kinds (`ask`, `skill`) are registered by whoever
//! wires the crates together (the CLI).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::PoolError;

/// Why a running job is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A user cancelled it.
    Cancelled,
    /// It ran past its timeout.
    TimedOut,
    /// This node lost its lease (it could not heartbeat in time; another node may run it).
    Lost,
    /// The worker is shutting down and hands the job back.
    Shutdown,
}

/// Tells a running handler to stop. Handlers that run for long should select on
/// [`StopSignal::stopped`] and return soon after it fires; the worker stops waiting for them
/// after a grace period either way.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<Option<StopReason>>);

/// The sending half, kept by the worker.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<Option<StopReason>>);

/// A new stop signal and its handle.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(None);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    /// Signals `reason` (the first reason given wins).
    pub fn stop(&self, reason: StopReason) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.0.borrow()
    }
}

impl StopSignal {
    /// Resolves when the job must stop. Never resolves if the worker dropped the handle
    /// without stopping (the job then simply runs to its end).
    pub async fn stopped(&mut self) -> StopReason {
        loop {
            if let Some(r) = *self.0.borrow_and_update() {
                return r;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.0.borrow()
    }
}

/// One attempt of one job, as a handler sees it.
#[derive(Debug)]
pub struct JobRun {
    pub id: String,
    pub kind: String,
    /// 1 on the first attempt.
    pub attempt: i32,
    pub payload: Value,
    pub stop: StopSignal,
}

/// An attempt that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    /// Worth another attempt (after backoff); false ends the job as `failed`.
    pub retryable: bool,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What is wrong with a job's payload (a handler's [`Handler::validate`]); submitting
/// reports it as [`PoolError::BadPayload`], a usage error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl From<String> for PayloadError {
    fn from(s: String) -> Self {
        PayloadError(s)
    }
}

/// Runs the jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Checks a payload before it is enqueued; the error says what is wrong with it.
    fn validate(&self, payload: &Value) -> Result<(), PayloadError>;
    /// Runs one attempt; the value is stored as the job's result.
    async fn run(&self, job: JobRun) -> Result<Value, JobError>;
}

type Validator = Arc<dyn Fn(&Value) -> Result<(), PayloadError> + Send + Sync>;

/// Job kinds by name: those this process can run ([`Registry::register`]) and those it only
/// knows how to validate for submission ([`Registry::declare`]), so that `pool submit` can
/// check an `ask` payload on a machine that will never run one.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
    declared: BTreeMap<String, Validator>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("runs", &self.handlers.keys().collect::<Vec<_>>())
            .field("knows", &self.declared.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// `noop` and `shell`.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.register("noop", Arc::new(Noop));
        r.register("shell", Arc::new(Shell::default()));
        r
    }

    pub fn register(&mut self, kind: &str, handler: Arc<dyn Handler>) -> &mut Self {
        self.handlers.insert(kind.to_owned(), handler);
        self
    }

    /// A kind this process validates but does not run.
    pub fn declare<E: Into<PayloadError>>(
        &mut self,
        kind: &str,
        validate: impl Fn(&Value) -> Result<(), E> + Send + Sync + 'static,
    ) -> &mut Self {
        let validate = move |p: &Value| validate(p).map_err(Into::into);
        self.declared.insert(kind.to_owned(), Arc::new(validate));
        self
    }

    /// The kinds this process runs, sorted.
    pub fn runnable(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }

    pub fn handler(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    /// Every kind known here, sorted.
    pub fn known(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .handlers
            .keys()
            .chain(self.declared.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Checks that `kind` is known and `payload` fits it.
    pub fn validate(&self, kind: &str, payload: &Value) -> Result<(), PoolError> {
        let result = if let Some(h) = self.handlers.get(kind) {
            h.validate(payload)
        } else if let Some(v) = self.declared.get(kind) {
            v(payload)
        } else {
            return Err(PoolError::UnknownKind {
                kind: kind.to_owned(),
                known: self.known().join(", "),
            });
        };
        result.map_err(|e| PoolError::BadPayload {
            kind: kind.to_owned(),
            reason: e.0,
        })
    }
}

/// `noop`: succeeds at once with a null result (for benchmarks and smoke tests). Takes any
/// payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    fn validate(&self, _payload: &Value) -> Result<(), PayloadError> {
        Ok(())
    }

    async fn run(&self, _job: JobRun) -> Result<Value, JobError> {
        Ok(Value::Null)
    }
}

/// The `shell` payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellPayload {
    /// Program and arguments; no shell is involved.
    pub cmd: Vec<String>,
    /// Working directory (default: the worker's).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ShellPayload {
    pub fn parse(payload: &Value) -> Result<Self, String> {
        if !payload.is_object() {
            return Err(r#"expected an object {"cmd": ["program", "arg", ...]}"#.into());
        }
        let p: ShellPayload = serde_json::from_value(payload.clone()).map_err(|e| {
            format!(r#"{e}; expected {{"cmd": ["program", "arg", ...], "cwd"?, "env"?}}"#)
        })?;
        match p.cmd.first() {
            None => Err("`cmd` is empty: give at least the program".into()),
            Some(prog) if prog.is_empty() => Err("`cmd[0]` (the program) is empty".into()),
            Some(_) => Ok(p),
        }
    }
}

/// `shell`: runs `cmd` as a child process in its own process group, with `ZOCALO_JOB_ID` and
/// `ZOCALO_JOB_ATTEMPT` set. Exit 0 succeeds with `{"exit_code","stdout","stderr"}` (each
/// stream capped); another exit code is a retryable failure; a program that cannot be started
/// fails for good. Told to stop, the whole group gets SIGTERM, then SIGKILL after the grace.
#[derive(Clone, Copy, Debug)]
pub struct Shell {
    /// Bytes kept of stdout and of stderr each.
    pub output_cap: usize,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

impl Default for Shell {
    fn default() -> Self {
        Self {
            output_cap: 64 * 1024,
            kill_grace: Duration::from_secs(5),
        }
    }
}

#[async_trait]
impl Handler for Shell {
    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        Ok(ShellPayload::parse(payload).map(drop)?)
    }

    async fn run(&self, mut job: JobRun) -> Result<Value, JobError> {
        let p = ShellPayload::parse(&job.payload).map_err(JobError::fatal)?;
        let mut cmd = tokio::process::Command::new(&p.cmd[0]);
        cmd.args(&p.cmd[1..])
            .envs(&p.env)
            .env("ZOCALO_JOB_ID", &job.id)
            .env("ZOCALO_JOB_ATTEMPT", job.attempt.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own group, so stopping it reaches whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &p.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::fatal(format!("cannot start {:?}: {e}", p.cmd[0])))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        let cap = self.output_cap;
        let out = child.stdout.take().map(|s| tokio::spawn(capture(s, cap)));
        let err = child.stderr.take().map(|s| tokio::spawn(capture(s, cap)));

        let status = tokio::select! {
            status = child.wait() => status,
            reason = job.stop.stopped() => {
                let status = terminate_group(pgid, self.kill_grace, &mut child).await;
                // A stray grandchild keeps the pipes open: do not wait for the readers.
                abort(out);
                abort(err);
                let how = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(JobError::retry(format!("stopped ({reason:?}); the command {how}")));
            }
        }
        .map_err(|e| JobError::retry(format!("waiting for {:?}: {e}", p.cmd[0])))?;
        // The leader is gone; make sure nothing it started outlives the job.
        signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        let stdout = join_capture(out).await;
        let stderr = join_capture(err).await;
        let code = status.code();
        if status.success() {
            Ok(json!({"exit_code": code, "stdout": stdout, "stderr": stderr}))
        } else {
            let tail: String = {
                let chars: Vec<char> = stderr.chars().collect();
                chars[chars.len().saturating_sub(500)..].iter().collect()
            };
            Err(JobError::retry(format!(
                "{:?} {status}{}{}",
                p.cmd[0],
                if tail.trim().is_empty() { "" } else { ": " },
                tail.trim()
            )))
        }
    }
}

/// SIGTERM to the group; SIGKILL to whatever of it is left after `grace`.
async fn terminate_group(
    pgid: Option<i32>,
    grace: Duration,
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + grace;
    signal_group(pgid, nix::sys::signal::Signal::SIGTERM);
    let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    while tokio::time::Instant::now() < deadline && group_alive(pgid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
    child.wait().await
}

fn group_alive(pgid: Option<i32>) -> bool {
    pgid.is_some_and(|g| nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g), None).is_ok())
}

fn signal_group(pgid: Option<i32>, signal: nix::sys::signal::Signal) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}

fn abort(task: Option<tokio::task::JoinHandle<String>>) {
    if let Some(t) = task {
        t.abort();
    }
}

async fn join_capture(task: Option<tokio::task::JoinHandle<String>>) -> String {
    match task {
        Some(t) => tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes (and saying how much was dropped).
async fn capture(mut r: impl AsyncRead + Unpin, cap: usize) -> String {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += n.saturating_sub(room);
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n[... {dropped} more bytes not kept]"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_payload_errors_say_what_is_wrong() {
        let r = Registry::builtin();
        let err = |p: Value| r.validate("shell", &p).unwrap_err().to_string();
        assert!(err(json!("ls")).contains("expected an object"));
        assert!(err(json!({})).contains("missing field `cmd`"));
        assert!(err(json!({"cmd": []})).contains("`cmd` is empty"));
        assert!(err(json!({"cmd": "ls"})).contains("invalid type"));
        assert!(err(json!({"cmd": ["ls"], "shell": true})).contains("unknown field `shell`"));
        assert!(r.validate("shell", &json!({"cmd": ["ls", "-l"]})).is_ok());
        assert!(r
            .validate("bogus", &Value::Null)
            .unwrap_err()
            .to_string()
            .contains("unknown job kind `bogus`: known kinds are noop, shell"));
    }

    #[tokio::test]
    async fn shell_runs_with_job_id_and_caps_output() {
        let shell = Shell {
            output_cap: 10,
            kill_grace: Duration::from_secs(1),
        };
        let (_h, stop) = stop_pair();
        let out = shell
            .run(JobRun {
                id: "job_x".into(),
                kind: "shell".into(),
                attempt: 2,
                payload: json!({"cmd": ["sh", "-c", "echo $ZOCALO_JOB_ID-$ZOCALO_JOB_ATTEMPT; echo 0123456789abcdef"]}),
                stop,
            })
            .await
            .unwrap();
        assert_eq!(out["exit_code"], 0);
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("job_x-2\n01"), "{stdout}");
        assert!(stdout.contains("more bytes not kept"), "{stdout}");
    }

    #[tokio::test]
    async fn shell_failure_is_retryable_and_missing_program_is_not() {
        let shell = Shell::default();
        let run = |payload: Value| {
            let (h, stop) = stop_pair();
            let job = JobRun {
                id: "job_y".into(),
                kind: "shell".into(),
                attempt: 1,
                payload,
                stop,
            };
            async move {
                let r = shell.run(job).await;
                drop(h);
                r
            }
        };
        let e = run(json!({"cmd": ["sh", "-c", "echo boom >&2; exit 3"]}))
            .await
            .unwrap_err();
        assert!(e.retryable && e.message.contains("boom"), "{e:?}");
        let e = run(json!({"cmd": ["/nonexistent/prog"]}))
            .await
            .unwrap_err();
        assert!(!e.retryable && e.message.contains("cannot start"), "{e:?}");
    }

    #[tokio::test]
    async fn stop_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild");
        let shell = Shell {
            output_cap: 1024,
            kill_grace: Duration::from_millis(300),
        };
        let (h, stop) = stop_pair();
        // The grandchild ignores SIGTERM; only the group SIGKILL ends it before it writes.
        let script = format!("(trap '' TERM; sleep 2; touch {}) & wait", marker.display());
        let task = tokio::spawn(async move {
            shell
                .run(JobRun {
                    id: "job_z".into(),
                    kind: "shell".into(),
                    attempt: 1,
                    payload: json!({"cmd": ["sh", "-c", script]}),
                    stop,
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.stop(StopReason::Cancelled);
        let e = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("Cancelled"), "{e:?}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a process of the group survived the stop");
    }
}
