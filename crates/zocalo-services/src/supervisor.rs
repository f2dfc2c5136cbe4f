//! [`Supervisor`]: the in-process handle that starts, watches, restarts and stops services.
//!
//! Each running service has one actor task that owns its child process and is the only writer
//! of its runtime state: it spawns the command in a process group of its own, pumps stdout and
//! stderr into the log, feeds health-check results into the state, and on exit applies the
//! restart policy with exponential backoff. A service that keeps dying soon after it started
//! (more than `max_retries` times in a row) is `failed` instead of restarted forever.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zocalo_store::Store;

use crate::logs::{self, LogFile, Stream};
use crate::procs;
use crate::spec::{split_command, HealthCheck, RestartPolicy, ServiceSpec};
use crate::store::{Runtime, ServiceRow, ServiceState, ServiceStore};
use crate::{health, ServicesError};

/// Timings and limits. The defaults suit real services; tests shorten them.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// `logs/`: `NAME.log` per service.
    pub logs_dir: PathBuf,
    /// Working directory of services defined without one.
    pub default_cwd: PathBuf,
    /// First restart delay; doubles per consecutive crash up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A process that stayed up this long resets the backoff and the crash count.
    pub reset_after: Duration,
    /// Consecutive quick crashes restarted before the service is `failed`.
    pub max_retries: u32,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// Time between health checks once one passed (checks run 4x as often until then).
    pub health_interval: Duration,
    pub health_timeout: Duration,
    /// Failed checks in a row that turn `running` into `unhealthy`.
    pub unhealthy_after: u32,
    /// A log file is rotated before it grows past this.
    pub log_max_bytes: u64,
    /// Rotated log files kept (`NAME.log.1` …).
    pub log_keep: usize,
}

impl SupervisorConfig {
    pub fn new(logs_dir: impl Into<PathBuf>, default_cwd: impl Into<PathBuf>) -> Self {
        Self {
            logs_dir: logs_dir.into(),
            default_cwd: default_cwd.into(),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            reset_after: Duration::from_secs(10),
            max_retries: 5,
            stop_grace: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(5),
            unhealthy_after: 3,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
        }
    }

    /// The delay before restart number `n` (1-based) of a crash streak.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(30));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// What `status` and `list` show. `env` lists variable names only: values may be secrets.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    pub pid: Option<i32>,
    /// Automatic restarts since the service was last started by hand.
    pub restarts: u32,
    /// What the user asked for: "running" or "stopped".
    pub desired: &'static str,
    pub command: String,
    pub restart: RestartPolicy,
    pub health: Option<HealthStatus>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// How the last process ended.
    pub last_exit: Option<String>,
    /// Why the service failed.
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub uptime_secs: Option<u64>,
    pub log: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthStatus {
    /// "http" or "cmd".
    pub kind: &'static str,
    pub check: String,
    /// "passing", "failing", or null before the first check.
    pub status: Option<String>,
    pub error: Option<String>,
}

/// What [`Supervisor::resume`] found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResumeReport {
    /// Services started again because they were wanted running.
    pub started: Vec<String>,
    /// Process groups left by a supervisor that died, stopped so nothing runs twice:
    /// (service, pid).
    pub stopped_leftovers: Vec<(String, i32)>,
}

enum Ctl {
    Stop(oneshot::Sender<()>),
}

struct ActorHandle {
    ctl: mpsc::Sender<Ctl>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Slot {
    actor: Option<ActorHandle>,
}

struct Inner {
    db: ServiceStore,
    cfg: Arc<SupervisorConfig>,
    /// One lock per service, so a slow stop of one never blocks commands on another.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    logs: Mutex<HashMap<String, Arc<LogFile>>>,
    http: reqwest::Client,
    closed: AtomicBool,
}

/// The supervisor. Cheap to clone; every clone drives the same services. Use one per
/// database and machine: the daemon (or `zocalo serve`) owns it.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor over `store`'s services table. Starts nothing: call [`Supervisor::resume`]
    /// to bring back what was running.
    pub fn new(store: Store, config: SupervisorConfig) -> Self {
        // Health checks target the service itself, usually on loopback: never via a proxy.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                db: ServiceStore::new(store),
                cfg: Arc::new(config),
                slots: Mutex::new(HashMap::new()),
                logs: Mutex::new(HashMap::new()),
                http,
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.cfg
    }

    pub fn services(&self) -> &ServiceStore {
        &self.inner.db
    }

    /// Stores a new service (stopped). Duplicate names and bad specs are usage errors.
    pub async fn add(&self, spec: ServiceSpec) -> Result<ServiceStatus, ServicesError> {
        self.open()?;
        let row = self.inner.db.insert(&spec).await?;
        Ok(self.status_of(&row))
    }

    /// Starts the service (no-op when it already runs) and waits for its first process to be
    /// spawned or to fail spawning. It is wanted running from now on, across daemon restarts.
    pub async fn start(&self, name: &str) -> Result<ServiceStatus, ServicesError> {
        self.open()?;
        let row = self.inner.db.get(name).await?;
        self.inner.db.set_wanted(name, true).await?;
        let slot = self.slot(name);
        let mut slot = slot.lock().await;
        if slot.actor.as_ref().is_some_and(|a| !a.task.is_finished()) {
            return self.status(name).await;
        }
        let rt = Runtime {
            restarts: 0,
            ..Runtime::default()
        };
        slot.actor = Some(self.spawn_actor(row.spec, rt).await);
        drop(slot);
        self.status(name).await
    }

    /// Stops the service: SIGTERM to its process group, SIGKILL after the grace period. It
    /// stays stopped across daemon restarts.
    pub async fn stop(&self, name: &str) -> Result<ServiceStatus, ServicesError> {
        self.inner.db.set_wanted(name, false).await?;
        self.halt(name).await?;
        // Stopped by hand: a failure before is history (`last_exit` keeps how it ended).
        let mut row = self.inner.db.get(name).await?;
        if row.runtime.state == ServiceState::Failed {
            row.runtime.state = ServiceState::Stopped;
            row.runtime.error = None;
            self.inner.db.save_runtime(name, &row.runtime).await?;
        }
        Ok(self.status_of(&row))
    }

    /// Stop (if running), then start.
    pub async fn restart(&self, name: &str) -> Result<ServiceStatus, ServicesError> {
        self.open()?;
        self.inner.db.get(name).await?;
        self.halt(name).await?;
        self.start(name).await
    }

    /// Stops the service and deletes its definition. Its log files stay.
    pub async fn rm(&self, name: &str) -> Result<(), ServicesError> {
        self.inner.db.get(name).await?;
        self.halt(name).await?;
        self.inner.db.delete(name).await?;
        lock(&self.inner.slots).remove(name);
        lock(&self.inner.logs).remove(name);
        Ok(())
    }

    pub async fn status(&self, name: &str) -> Result<ServiceStatus, ServicesError> {
        let row = self.inner.db.get(name).await?;
        Ok(self.status_of(&row))
    }

    pub async fn list(&self) -> Result<Vec<ServiceStatus>, ServicesError> {
        let rows = self.inner.db.list().await?;
        Ok(rows.iter().map(|r| self.status_of(r)).collect())
    }

    /// `logs/NAME.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.inner.cfg.logs_dir.join(format!("{name}.log"))
    }

    /// The last `lines` log lines of a service (across rotated files), oldest first.
    pub async fn logs(&self, name: &str, lines: usize) -> Result<Vec<String>, ServicesError> {
        self.inner.db.get(name).await?;
        logs::tail(&self.log_path(name), lines)
    }

    /// Run once when the supervisor takes over a database on this machine (daemon start):
    /// process groups recorded by a supervisor that died are found by pid, start time and boot
    /// and stopped (their output pipes died with it, so they cannot be logged or kept), then
    /// every service wanted running is started again. Nothing ever runs twice.
    pub async fn resume(&self) -> Result<ResumeReport, ServicesError> {
        self.open()?;
        let mut report = ResumeReport::default();
        let boot = procs::boot_id();
        for row in self.inner.db.list().await? {
            let name = row.spec.name.clone();
            let mut rt = row.runtime.clone();
            if let Some(pid) = rt.pid {
                let same_boot = rt.pid_boot.as_deref() == Some(boot.as_str());
                let leader = procs::identity(pid);
                let leader_is_ours = same_boot
                    && leader.as_ref().map(|l| l.start) == rt.pid_start
                    && leader.is_some();
                // With the leader gone, a group with its number can only hold our processes:
                // Linux does not reuse a pid while it still names a process group.
                let stale_group =
                    same_boot && leader.is_none() && !procs::group_members(pid).is_empty();
                if leader_is_ours || stale_group {
                    tracing::info!(service = %name, pid, "stopping processes left by a previous supervisor");
                    procs::stop_group(pid, self.inner.cfg.stop_grace, || {}).await;
                    report.stopped_leftovers.push((name.clone(), pid));
                }
                rt.pid = None;
                rt.pid_start = None;
                rt.pid_boot = None;
            }
            if row.want_running {
                let slot = self.slot(&name);
                let mut slot = slot.lock().await;
                if slot.actor.as_ref().is_some_and(|a| !a.task.is_finished()) {
                    continue;
                }
                rt.error = None;
                slot.actor = Some(self.spawn_actor(row.spec, rt).await);
                report.started.push(name);
            } else if (rt.state != ServiceState::Stopped && rt.state != ServiceState::Failed)
                || row.runtime.pid.is_some()
            {
                rt.state = if rt.state == ServiceState::Failed {
                    ServiceState::Failed
                } else {
                    ServiceState::Stopped
                };
                rt.health_status = None;
                rt.health_error = None;
                self.inner.db.save_runtime(&name, &rt).await?;
            }
        }
        Ok(report)
    }

    /// Stops every service's processes (the definitions keep whether they are wanted
    /// running, so the next supervisor starts them again) and refuses further work.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let names: Vec<String> = lock(&self.inner.slots).keys().cloned().collect();
        let mut tasks = Vec::new();
        for name in names {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = me.halt(&name).await {
                    tracing::warn!(service = %name, "stopping on shutdown: {e}");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn open(&self) -> Result<(), ServicesError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(ServicesError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Stops the actor (and so the processes) without touching what the user wants.
    async fn halt(&self, name: &str) -> Result<(), ServicesError> {
        let slot = self.slot(name);
        let mut slot = slot.lock().await;
        if let Some(actor) = slot.actor.take() {
            let (ack, acked) = oneshot::channel();
            if actor.ctl.send(Ctl::Stop(ack)).await.is_ok() {
                let _ = acked.await;
            }
            let _ = actor.task.await;
        }
        // The actor may have ended on its own (exited under its policy, failed): the row says
        // so already. Anything else without an actor is stale and now stopped.
        let mut row = self.inner.db.get(name).await?;
        if row.runtime.state.has_process() || row.runtime.state == ServiceState::Backoff {
            row.runtime.state = ServiceState::Stopped;
            row.runtime.pid = None;
            self.inner.db.save_runtime(name, &row.runtime).await?;
        }
        Ok(())
    }

    fn slot(&self, name: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        lock(&self.inner.slots)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn log_file(&self, name: &str) -> Arc<LogFile> {
        lock(&self.inner.logs)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(LogFile::new(
                    self.log_path(name),
                    self.inner.cfg.log_max_bytes,
                    self.inner.cfg.log_keep,
                ))
            })
            .clone()
    }

    /// Starts an actor and waits until it spawned its first process (or failed to).
    async fn spawn_actor(&self, spec: ServiceSpec, rt: Runtime) -> ActorHandle {
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let actor = Actor {
            log: self.log_file(&spec.name),
            spec,
            db: self.inner.db.clone(),
            cfg: self.inner.cfg.clone(),
            http: self.inner.http.clone(),
            rt,
            ctl: ctl_rx,
        };
        let task = tokio::spawn(actor.run(ready_tx));
        let _ = ready_rx.await;
        ActorHandle { ctl: ctl_tx, task }
    }

    fn status_of(&self, row: &ServiceRow) -> ServiceStatus {
        let rt = &row.runtime;
        let uptime_secs = match (rt.state.has_process(), rt.started_at) {
            (true, Some(t)) => (Utc::now() - t).to_std().ok().map(|d| d.as_secs()),
            _ => None,
        };
        ServiceStatus {
            name: row.spec.name.clone(),
            state: rt.state,
            pid: rt.pid,
            restarts: rt.restarts,
            desired: if row.want_running {
                "running"
            } else {
                "stopped"
            },
            command: row.spec.command.clone(),
            restart: row.spec.restart,
            health: row.spec.health.as_ref().map(|h| HealthStatus {
                kind: match h {
                    HealthCheck::Http(_) => "http",
                    HealthCheck::Cmd(_) => "cmd",
                },
                check: match h {
                    HealthCheck::Http(u) => u.clone(),
                    HealthCheck::Cmd(c) => c.clone(),
                },
                status: rt.health_status.clone(),
                error: rt.health_error.clone(),
            }),
            env: row.spec.env.keys().cloned().collect(),
            cwd: row.spec.cwd.as_ref().map(|p| p.display().to_string()),
            last_exit: rt.last_exit.clone(),
            error: rt.error.clone(),
            started_at: rt
                .started_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            uptime_secs,
            log: self.log_path(&row.spec.name).display().to_string(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// "exited with code N" or "killed by SIGNAME".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}

/// The one task that owns a running service.
struct Actor {
    spec: ServiceSpec,
    db: ServiceStore,
    cfg: Arc<SupervisorConfig>,
    log: Arc<LogFile>,
    http: reqwest::Client,
    rt: Runtime,
    ctl: mpsc::Receiver<Ctl>,
}

enum Outcome {
    Exited(ExitStatus),
    Stopped(oneshot::Sender<()>),
}

impl Actor {
    async fn save(&self) {
        if let Err(e) = self.db.save_runtime(&self.spec.name, &self.rt).await {
            tracing::warn!(service = %self.spec.name, "cannot record service state: {e}");
        }
    }

    fn cwd(&self) -> PathBuf {
        self.spec
            .cwd
            .clone()
            .unwrap_or_else(|| self.cfg.default_cwd.clone())
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let argv = split_command(&self.spec.command)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(&self.spec.env)
            .current_dir(self.cwd())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: stop signals reach everything it started, and a Ctrl-C meant
            // for a foreground daemon does not reach it.
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
    }

    async fn run(mut self, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut streak: u32 = 0;
        loop {
            let child = self.spawn();
            let mut child = match child.and_then(|c| match c.id() {
                Some(pid) => Ok((c, pid as i32)),
                None => Err(std::io::Error::other(
                    "the process exited before it was seen",
                )),
            }) {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("cannot start `{}`: {e}", self.spec.command);
                    self.log.write_line(Stream::Supervisor, msg.as_bytes());
                    self.rt = Runtime {
                        state: ServiceState::Failed,
                        error: Some(msg),
                        restarts: self.rt.restarts,
                        last_exit: self.rt.last_exit.take(),
                        ..Runtime::default()
                    };
                    self.save().await;
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    return;
                }
            };
            let pid = child.1;
            let ident = procs::identity(pid);
            let pumps = [
                child
                    .0
                    .stdout
                    .take()
                    .map(|s| pump(s, self.log.clone(), Stream::Out)),
                child
                    .0
                    .stderr
                    .take()
                    .map(|s| pump(s, self.log.clone(), Stream::Err)),
            ];
            self.rt.state = if self.spec.health.is_some() {
                ServiceState::Starting
            } else {
                ServiceState::Running
            };
            self.rt.pid = Some(pid);
            self.rt.pid_start = ident.as_ref().map(|i| i.start);
            self.rt.pid_boot = ident.map(|i| i.boot);
            self.rt.error = None;
            self.rt.health_status = None;
            self.rt.health_error = None;
            self.rt.started_at = Some(Utc::now());
            self.save().await;
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            let started = Instant::now();

            let (health_tx, mut health_rx) = mpsc::channel(1);
            let checker = self.spec.health.clone().map(|check| {
                tokio::spawn(check_loop(
                    check,
                    self.http.clone(),
                    self.spec.env.clone(),
                    self.cwd(),
                    self.cfg.clone(),
                    health_tx,
                ))
            });
            let mut failing: u32 = 0;
            let outcome = loop {
                tokio::select! {
                    status = child.0.wait() => match status {
                        Ok(s) => break Outcome::Exited(s),
                        Err(e) => {
                            // Cannot wait on our own child: treat it as gone after stopping it.
                            tracing::error!(service = %self.spec.name, "waiting for pid {pid}: {e}");
                            procs::stop_group(pid, self.cfg.stop_grace, || {}).await;
                            break Outcome::Exited(ExitStatus::from_raw(0x7f00));
                        }
                    },
                    ctl = self.ctl.recv() => match ctl {
                        Some(Ctl::Stop(ack)) => {
                            let c = &mut child.0;
                            procs::stop_group(pid, self.cfg.stop_grace, || { let _ = c.try_wait(); }).await;
                            let _ = child.0.wait().await;
                            break Outcome::Stopped(ack);
                        }
                        // The supervisor is gone: stop the processes rather than orphan them.
                        None => {
                            let c = &mut child.0;
                            procs::stop_group(pid, self.cfg.stop_grace, || { let _ = c.try_wait(); }).await;
                            let _ = child.0.wait().await;
                            return;
                        }
                    },
                    Some(result) = health_rx.recv() => {
                        self.on_health(result, &mut failing).await;
                    }
                }
            };
            if let Some(c) = checker {
                c.abort();
            }
            // Whatever the leader left behind in its group goes with it.
            if !procs::group_members(pid).is_empty() {
                procs::stop_group(pid, self.cfg.stop_grace, || {}).await;
            }
            // Let the readers write the last lines before the state says it ended (a reader
            // whose pipe a stray grandchild keeps open is left to finish on its own).
            for p in pumps.into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
            }
            self.rt.pid = None;
            self.rt.pid_start = None;
            self.rt.pid_boot = None;
            self.rt.health_status = None;
            self.rt.health_error = None;
            let status = match outcome {
                Outcome::Stopped(ack) => {
                    self.rt.state = ServiceState::Stopped;
                    self.rt.last_exit = Some("stopped".into());
                    self.save().await;
                    let _ = ack.send(());
                    return;
                }
                Outcome::Exited(s) => s,
            };
            let exit = describe_exit(status);
            self.rt.last_exit = Some(exit.clone());
            if !self.spec.restart.restarts_after(status.success()) {
                if status.success() {
                    self.rt.state = ServiceState::Stopped;
                } else {
                    self.rt.state = ServiceState::Failed;
                    self.rt.error = Some(format!("{exit} (restart policy: {})", self.spec.restart));
                }
                self.save().await;
                return;
            }
            if started.elapsed() >= self.cfg.reset_after {
                streak = 0;
            }
            streak += 1;
            if streak > self.cfg.max_retries {
                self.rt.state = ServiceState::Failed;
                self.rt.error = Some(format!(
                    "crash loop: ended {streak} times in a row within {} s of starting; last {exit}",
                    self.cfg.reset_after.as_secs_f64()
                ));
                self.save().await;
                return;
            }
            self.rt.state = ServiceState::Backoff;
            self.save().await;
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.backoff(streak)) => {}
                ctl = self.ctl.recv() => {
                    self.rt.state = ServiceState::Stopped;
                    self.save().await;
                    if let Some(Ctl::Stop(ack)) = ctl {
                        let _ = ack.send(());
                    }
                    return;
                }
            }
            self.rt.restarts = self.rt.restarts.saturating_add(1);
        }
    }

    async fn on_health(&mut self, result: Result<(), String>, failing: &mut u32) {
        let before = (
            self.rt.state,
            self.rt.health_status.clone(),
            self.rt.health_error.clone(),
        );
        match result {
            Ok(()) => {
                *failing = 0;
                self.rt.state = ServiceState::Running;
                self.rt.health_status = Some("passing".into());
                self.rt.health_error = None;
            }
            Err(e) => {
                *failing = failing.saturating_add(1);
                if self.rt.state == ServiceState::Running && *failing >= self.cfg.unhealthy_after {
                    self.rt.state = ServiceState::Unhealthy;
                }
                self.rt.health_status = Some("failing".into());
                self.rt.health_error = Some(e);
            }
        }
        if before
            != (
                self.rt.state,
                self.rt.health_status.clone(),
                self.rt.health_error.clone(),
            )
        {
            self.save().await;
        }
    }
}

/// Checks health until aborted: every quarter interval until the first pass, then every
/// interval. Results go to the actor, which owns the state.
async fn check_loop(
    check: HealthCheck,
    http: reqwest::Client,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    cfg: Arc<SupervisorConfig>,
    tx: mpsc::Sender<Result<(), String>>,
) {
    let fast = (cfg.health_interval / 4).max(Duration::from_millis(10));
    let mut passed = false;
    loop {
        tokio::time::sleep(if passed { cfg.health_interval } else { fast }).await;
        let r = health::probe(&check, &http, &env, Path::new(&cwd), cfg.health_timeout).await;
        passed |= r.is_ok();
        if tx.send(r).await.is_err() {
            return;
        }
    }
}

/// Copies a pipe into the log line by line; a line longer than [`logs::MAX_LINE`] is split.
fn pump<R: AsyncRead + Unpin + Send + 'static>(
    pipe: R,
    log: Arc<LogFile>,
    stream: Stream,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line: Vec<u8> = Vec::new();
        while let Ok(buf) = reader.fill_buf().await {
            if buf.is_empty() {
                break;
            }
            let room = logs::MAX_LINE - line.len();
            let (take, complete) = match buf.iter().take(room).position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), buf.len() >= room),
            };
            line.extend_from_slice(&buf[..take]);
            reader.consume(take);
            if complete {
                log.write_line(stream, &line);
                line.clear();
            }
        }
        if !line.is_empty() {
            log.write_line(stream, &line);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = SupervisorConfig::new("/tmp/l", "/tmp");
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(500);
        let got: Vec<u128> = (1..=5).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(c.backoff(1000), Duration::from_millis(500));
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by SIGKILL");
    }
}
