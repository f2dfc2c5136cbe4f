//! The daemon: one per data home. It hosts the service [`Supervisor`], the scheduler loop
//! (so automations fire without a terminal open) and, with `[daemon] worker = true`, a local
//! compute-pool worker. The CLI talks to it over `daemon.sock` in the data home (mode 0600):
//! one JSON request per line, one JSON response per line.
//!
//! `zocalo serve` embeds the same work: [`DaemonWork::start`], so a running server is also the
//! daemon that `zocalo services …` talks to.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zocalo_core::DaemonConfig;
use zocalo_services::{ServiceSpec, ServicesError, Supervisor, SupervisorConfig};

use crate::errors::usage;
use crate::Runtime;

/// Longest request line the daemon reads.
const MAX_REQUEST: u64 = 1024 * 1024;

/// Files of the daemon in the data home.
pub struct DaemonPaths {
    pub socket: PathBuf,
    pub lock: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    pub logs_dir: PathBuf,
}

impl DaemonPaths {
    pub fn new(home: &Path) -> Self {
        Self {
            socket: home.join("daemon.sock"),
            lock: home.join("daemon.lock"),
            pid: home.join("daemon.pid"),
            log: home.join("logs").join("daemon.log"),
            logs_dir: home.join("logs"),
        }
    }
}

/// The supervisor's settings from `[daemon]` in config.toml.
pub fn supervisor_config(home: &Path, d: &DaemonConfig) -> SupervisorConfig {
    let ms = Duration::from_millis;
    let mut c = SupervisorConfig::new(home.join("logs"), home);
    c.backoff_base = ms(d.backoff_base_ms);
    c.backoff_max = ms(d.backoff_max_ms);
    c.reset_after = ms(d.reset_after_ms);
    c.max_retries = d.max_retries;
    c.stop_grace = ms(d.stop_grace_ms);
    c.health_interval = ms(d.health_interval_ms);
    c.health_timeout = ms(d.health_timeout_ms);
    c.unhealthy_after = d.unhealthy_after;
    c.log_max_bytes = d.log_max_bytes;
    c.log_keep = d.log_keep;
    c
}

/// A request from the CLI (or any client of the socket).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    DaemonStatus,
    DaemonStop,
    Add { spec: ServiceSpec },
    Start { name: String },
    Stop { name: String },
    Restart { name: String },
    Rm { name: String },
    Status { name: String },
    List,
}

/// The daemon's work, running: the supervisor, the socket, the scheduler loop and the
/// optional worker. Hold it for as long as the daemon (or server) runs, then call
/// [`DaemonWork::shutdown`].
pub struct DaemonWork {
    supervisor: Supervisor,
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    paths: DaemonPaths,
    _lock: std::fs::File,
}

struct Shared {
    supervisor: Supervisor,
    cancel: CancellationToken,
    started_at: DateTime<Utc>,
    home: PathBuf,
    database: String,
    config: DaemonConfig,
}

impl DaemonWork {
    /// Takes the data home's daemon lock (one daemon per home: a second one is refused),
    /// opens the store, takes over services left by a daemon that died (their processes are
    /// stopped, never duplicated), starts every service wanted running, listens on the
    /// socket and starts the scheduler loop and, if configured, the worker.
    pub async fn start(ctx: &Runtime) -> anyhow::Result<DaemonWork> {
        ctx.home.ensure()?;
        let paths = DaemonPaths::new(ctx.home.root());
        create_private_dir(&paths.logs_dir)?;
        let lock = take_lock(&paths)?;
        let store = ctx.store().await?;
        let cfg = &ctx.config.daemon;
        let supervisor = Supervisor::new(store.clone(), supervisor_config(ctx.home.root(), cfg));
        let report = supervisor.resume().await?;
        for (name, pid) in &report.stopped_leftovers {
            tracing::warn!(service = %name, pid, "stopped processes left by a daemon that died");
        }
        if !report.started.is_empty() {
            tracing::info!(services = ?report.started, "services started again");
        }

        // The lock is ours, so a socket file here is stale (its daemon died).
        let _ = std::fs::remove_file(&paths.socket);
        let listener = UnixListener::bind(&paths.socket)
            .with_context(|| format!("listening on {}", paths.socket.display()))?;
        set_mode(&paths.socket, 0o600)?;
        write_private(&paths.pid, &format!("{}\n", std::process::id()))?;

        let cancel = CancellationToken::new();
        let shared = std::sync::Arc::new(Shared {
            supervisor: supervisor.clone(),
            cancel: cancel.clone(),
            started_at: Utc::now(),
            home: ctx.home.root().to_path_buf(),
            database: ctx.database_label(),
            config: cfg.clone(),
        });
        let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        tasks.push(("socket", tokio::spawn(serve_socket(listener, shared))));
        if cfg.scheduler {
            let store = store.clone();
            let stop = cancel.clone();
            let interval = Duration::from_millis(cfg.tick_interval_ms);
            tasks.push((
                "scheduler",
                tokio::spawn(async move {
                    zocalo_scheduler::run_ticker(store, interval, stop.cancelled_owned()).await?;
                    Ok(())
                }),
            ));
        }
        if cfg.worker {
            let config = zocalo_pool::WorkerConfig {
                concurrency: cfg.worker_concurrency,
                ..zocalo_pool::WorkerConfig::default()
            };
            let worker = crate::jobs::pool_worker(ctx, store.clone(), config)?;
            tracing::info!(node = %worker.node_id(), "local worker joined the pool");
            let stop = cancel.clone();
            tasks.push((
                "worker",
                tokio::spawn(async move {
                    worker.run(stop.cancelled_owned()).await?;
                    Ok(())
                }),
            ));
        }
        // The channels (Telegram, email, webhooks' answers): configured ones only; one that
        // cannot run (no token) is reported and skipped, not fatal.
        for task in crate::channels::spawn_channels(ctx, cancel.clone()).await? {
            tasks.push(("channel", task));
        }
        Ok(DaemonWork {
            supervisor,
            cancel,
            tasks,
            paths,
            _lock: lock,
        })
    }

    /// The supervisor, for in-process callers (the HTTP server's services endpoints).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Cancelled when the work should end: by `zocalo daemon stop`, or by the owner.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops everything: no more requests, the scheduler and worker end (running jobs get
    /// the worker's grace), every service's processes are stopped (they stay wanted
    /// running, so the next daemon starts them again), the socket and pid file go. The
    /// store stays open: it is the runtime's ([`Runtime::close`]).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.supervisor.shutdown().await;
        let mut first_error = None;
        for (name, task) in self.tasks {
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::error!("daemon {name} failed: {e:#}");
                    first_error.get_or_insert(e);
                }
                Ok(Err(e)) => tracing::error!("daemon {name} task: {e}"),
                Err(_) => tracing::error!("daemon {name} did not stop within 30 s"),
            }
        }
        let _ = std::fs::remove_file(&self.paths.socket);
        let _ = std::fs::remove_file(&self.paths.pid);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Another process (`zocalo daemon` or `zocalo serve`) holds the data home's daemon lock.
/// [`DaemonWork::start`] fails with it; `zocalo serve` tells it apart to serve HTTP anyway.
#[derive(Debug, thiserror::Error)]
#[error("a daemon already runs for this data home (pid {pid}): `zocalo daemon stop` first")]
pub struct AlreadyRunning {
    /// As written in daemon.pid (empty when unreadable).
    pub pid: String,
}

fn take_lock(paths: &DaemonPaths) -> anyhow::Result<std::fs::File> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create(true).truncate(false);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open
        .open(&paths.lock)
        .with_context(|| format!("opening {}", paths.lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&paths.pid).unwrap_or_default();
            Err(AlreadyRunning {
                pid: pid.trim().to_owned(),
            }
            .into())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", paths.lock.display()))
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f = open
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

async fn serve_socket(
    listener: UnixListener,
    shared: std::sync::Arc<Shared>,
) -> anyhow::Result<()> {
    loop {
        let conn = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(()),
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &shared).await {
                        tracing::debug!("daemon connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("daemon socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        let n = (&mut reader)
            .take(MAX_REQUEST + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let too_long = n as u64 > MAX_REQUEST;
        let response = if too_long {
            error_response("request line too long", true)
        } else if line.trim().is_empty() {
            continue;
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => handle(req, shared).await,
                Err(e) => error_response(&format!("bad request: {e}"), true),
            }
        };
        let mut text = response.to_string();
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
        if too_long {
            return Ok(());
        }
    }
}

fn error_response(message: &str, is_usage: bool) -> Value {
    json!({"ok": false, "error": message, "usage": is_usage})
}

fn services_result(r: Result<Value, ServicesError>) -> Value {
    match r {
        Ok(v) => json!({"ok": true, "result": v}),
        Err(e) => error_response(&e.to_string(), e.is_usage()),
    }
}

fn to_value<T: Serialize>(v: T) -> Result<Value, ServicesError> {
    serde_json::to_value(v).map_err(|e| ServicesError::Invalid(e.to_string()))
}

async fn handle(req: Request, shared: &Shared) -> Value {
    let sup = &shared.supervisor;
    match req {
        Request::DaemonStatus => {
            let services = sup.list().await.unwrap_or_default();
            let count = |s: &str| services.iter().filter(|x| x.state.as_str() == s).count();
            json!({"ok": true, "result": {
                "running": true,
                "pid": std::process::id(),
                "started_at": shared.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "uptime_secs": (Utc::now() - shared.started_at).num_seconds().max(0),
                "home": shared.home.display().to_string(),
                "socket": DaemonPaths::new(&shared.home).socket.display().to_string(),
                "database": shared.database,
                "scheduler": shared.config.scheduler,
                "worker": shared.config.worker,
                "services": {
                    "total": services.len(),
                    "running": count("running"),
                    "starting": count("starting"),
                    "unhealthy": count("unhealthy"),
                    "failed": count("failed"),
                },
                "version": env!("CARGO_PKG_VERSION"),
            }})
        }
        Request::DaemonStop => {
            shared.cancel.cancel();
            json!({"ok": true, "result": {"stopping": true, "pid": std::process::id()}})
        }
        Request::Add { spec } => services_result(sup.add(spec).await.and_then(to_value)),
        Request::Start { name } => services_result(sup.start(&name).await.and_then(to_value)),
        Request::Stop { name } => services_result(sup.stop(&name).await.and_then(to_value)),
        Request::Restart { name } => services_result(sup.restart(&name).await.and_then(to_value)),
        Request::Rm { name } => {
            services_result(sup.rm(&name).await.map(|()| json!({"removed": name})))
        }
        Request::Status { name } => services_result(sup.status(&name).await.and_then(to_value)),
        Request::List => services_result(sup.list().await.and_then(to_value)),
    }
}

/// A connection to a running daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the daemon of `home`; `None` when none answers.
    pub async fn connect(home: &Path) -> Option<Client> {
        let socket = DaemonPaths::new(home).socket;
        match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(&socket)).await {
            Ok(Ok(stream)) => Some(Client {
                reader: BufReader::new(stream),
            }),
            _ => None,
        }
    }

    /// Sends one request; the daemon's answer, or its error (a usage error maps to exit 2).
    pub async fn call(&mut self, req: &Request) -> anyhow::Result<Value> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        self.reader.get_mut().write_all(line.as_bytes()).await?;
        let mut answer = String::new();
        let n = self.reader.read_line(&mut answer).await?;
        if n == 0 {
            anyhow::bail!(
                "the daemon closed the connection without answering (see logs/daemon.log)"
            );
        }
        let v: Value = serde_json::from_str(&answer)
            .with_context(|| format!("the daemon answered something that is not JSON: {answer}"))?;
        if v["ok"].as_bool() == Some(true) {
            return Ok(v["result"].clone());
        }
        let msg = v["error"]
            .as_str()
            .unwrap_or("the daemon failed")
            .to_owned();
        if v["usage"].as_bool() == Some(true) {
            Err(usage(msg))
        } else {
            Err(anyhow::anyhow!(msg))
        }
    }
}

/// The daemon of this data home, started in the background if none runs. A running daemon
/// on another database than this command's is an error, never silently used.
pub async fn ensure_daemon(ctx: &Runtime) -> anyhow::Result<Client> {
    let mut client = match Client::connect(ctx.home.root()).await {
        Some(c) => c,
        None => {
            start_background(ctx).await?;
            Client::connect(ctx.home.root())
                .await
                .context("the daemon started but does not answer")?
        }
    };
    let status = client.call(&Request::DaemonStatus).await?;
    let theirs = status["database"].as_str().unwrap_or_default();
    let ours = ctx.database_label();
    if theirs != ours {
        anyhow::bail!(
            "the daemon of {} (pid {}) uses {theirs}, this command {ours}: stop it with \
             `zocalo daemon stop` or use the same --database-url",
            ctx.home.root().display(),
            status["pid"]
        );
    }
    Ok(client)
}

/// One request to the daemon of this data home, started if none runs (`services …`).
pub async fn call(ctx: &Runtime, req: &Request) -> anyhow::Result<Value> {
    ensure_daemon(ctx).await?.call(req).await
}

/// Starts `zocalo daemon run --detach` in the background (its output goes to
/// logs/daemon.log) and waits until it answers on the socket. Returns its pid.
pub async fn start_background(ctx: &Runtime) -> anyhow::Result<u32> {
    ctx.home.ensure()?;
    let paths = DaemonPaths::new(ctx.home.root());
    create_private_dir(&paths.logs_dir)?;
    let mut open = std::fs::OpenOptions::new();
    open.create(true).append(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let log = open
        .open(&paths.log)
        .with_context(|| format!("opening {}", paths.log.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("finding the zocalo executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["-v", "daemon", "run", "--detach"])
        .env("ZOCALO_HOME", ctx.home.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // The URL goes through the environment, not argv, which other users can read in ps.
    match &ctx.database_url {
        Some(url) => cmd.env("ZOCALO_DATABASE_URL", url),
        None => cmd.env_remove("ZOCALO_DATABASE_URL"),
    };
    let mut child = cmd.spawn().context("starting the daemon")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited_at: Option<Instant> = None;
    loop {
        if Client::connect(ctx.home.root()).await.is_some() {
            return Ok(pid);
        }
        if exited_at.is_none() && matches!(child.try_wait(), Ok(Some(_))) {
            exited_at = Some(Instant::now());
        }
        // A daemon that exited may have lost a race with another one starting: look for that
        // one a little longer, then report what the log says.
        let gave_up = exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
        if gave_up || Instant::now() >= deadline {
            let text = std::fs::read(&paths.log).unwrap_or_default();
            let from = (log_start as usize).min(text.len());
            let tail = String::from_utf8_lossy(&text[from..]).into_owned();
            anyhow::bail!(
                "the daemon did not start (log {}):\n{}",
                paths.log.display(),
                tail.trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `daemon start`: the running daemon's pid, or a new one's; and whether it ran already.
pub async fn start(ctx: &Runtime) -> anyhow::Result<(u64, bool)> {
    Ok(match Client::connect(ctx.home.root()).await {
        Some(mut c) => {
            let s = c.call(&Request::DaemonStatus).await?;
            (s["pid"].as_u64().unwrap_or_default(), true)
        }
        None => (u64::from(start_background(ctx).await?), false),
    })
}

/// `daemon stop`: asks the daemon to stop and waits until its process is gone (its services
/// get their stop grace first). The pid it had, or None when no daemon ran.
pub async fn stop(ctx: &Runtime) -> anyhow::Result<Option<i32>> {
    let Some(mut c) = Client::connect(ctx.home.root()).await else {
        return Ok(None);
    };
    let r = c.call(&Request::DaemonStop).await?;
    let pid = r["pid"].as_i64().unwrap_or_default() as i32;
    let grace = Duration::from_millis(ctx.config.daemon.stop_grace_ms);
    let deadline = Instant::now() + grace + Duration::from_secs(40);
    while pid > 0 && zocalo_services::procs::stat(pid).is_some_and(|s| s.state != 'Z') {
        if Instant::now() >= deadline {
            anyhow::bail!("the daemon (pid {pid}) is still stopping; see logs/daemon.log");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Some(pid))
}

/// `daemon status`: the running daemon's status document, or `{"running": false, ...}`.
pub async fn status(ctx: &Runtime) -> anyhow::Result<Value> {
    Ok(match Client::connect(ctx.home.root()).await {
        Some(mut c) => c.call(&Request::DaemonStatus).await?,
        None => json!({
            "running": false,
            "pid": null,
            "home": ctx.home.root().display().to_string(),
            "socket": DaemonPaths::new(ctx.home.root()).socket.display().to_string(),
        }),
    })
}

/// `daemon run`: the daemon in this process until SIGTERM, Ctrl-C or `daemon stop`;
/// `started` is told once it answers on its socket.
pub async fn run(ctx: &Runtime, started: impl FnOnce(&Path)) -> anyhow::Result<()> {
    let work = DaemonWork::start(ctx).await?;
    started(&DaemonPaths::new(ctx.home.root()).socket);
    let stop = work.cancel_token();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = crate::signals::terminated() => {}
    }
    tracing::info!("daemon stopping");
    let stopped = work.shutdown().await;
    ctx.close().await;
    stopped
}

/// A systemd unit that starts the daemon at boot (`zocalo daemon install`).
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// Where the unit file goes.
    pub path: PathBuf,
    /// The file holding the database URL (mode 0600), when there is one: a unit file is
    /// readable by every user, a URL may carry a password.
    pub env_file: Option<PathBuf>,
    #[serde(rename = "unit")]
    pub text: String,
    /// A system unit (root) or a user unit (`systemctl --user`).
    pub system: bool,
}

/// The unit's file name.
pub const UNIT_NAME: &str = "zocalo.service";

/// Whether systemd manages this machine (its runtime directory exists).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit for `exe` (the zocalo binary) and this runtime's data home and database. The
/// directory: `ZOCALO_SYSTEMD_DIR` if set, else `/etc/systemd/system` for root and
/// `~/.config/systemd/user` for other users.
pub fn systemd_unit(ctx: &Runtime, exe: &Path) -> Unit {
    let system = nix_is_root();
    let dir = match std::env::var_os("ZOCALO_SYSTEMD_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None if system => PathBuf::from("/etc/systemd/system"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".config/systemd/user"),
    };
    let env_file = ctx
        .database_url
        .as_ref()
        .map(|_| ctx.home.root().join("daemon.env"));
    let mut text = String::from(
        "# Written by `zocalo daemon install`; `zocalo daemon uninstall` removes it.\n\
         [Unit]\n\
         Description=zocalo daemon: automations, pool worker, services\n\
         Wants=network-online.target\n\
         After=network-online.target postgresql.service\n\n\
         [Service]\n\
         Type=simple\n",
    );
    text.push_str(&format!(
        "ExecStart={} daemon run\n",
        systemd_quote(&exe.display().to_string())
    ));
    text.push_str(&format!(
        "Environment={}\n",
        systemd_quote(&format!("ZOCALO_HOME={}", ctx.home.root().display()))
    ));
    if let Some(f) = &env_file {
        text.push_str(&format!("EnvironmentFile={}\n", f.display()));
    }
    text.push_str(
        "Restart=on-failure\nRestartSec=2\n# Services get their stop grace; then the rest.\n\
         KillMode=mixed\nTimeoutStopSec=90\n\n[Install]\n",
    );
    text.push_str(if system {
        "WantedBy=multi-user.target\n"
    } else {
        "WantedBy=default.target\n"
    });
    Unit {
        path: dir.join(UNIT_NAME),
        env_file,
        text,
        system,
    }
}

/// What `daemon install` did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// False: systemd does not run here (and no `ZOCALO_SYSTEMD_DIR`): nothing was written.
    pub installed: bool,
    /// `systemctl enable` ran.
    pub enabled: bool,
    pub systemd: bool,
    #[serde(flatten)]
    pub unit: Unit,
}

/// Writes the unit for `exe` and, where systemd runs, enables it. Without systemd (and
/// without `ZOCALO_SYSTEMD_DIR`) nothing is written: the caller shows the unit.
pub fn install(ctx: &Runtime, exe: &Path) -> anyhow::Result<Installed> {
    let unit = systemd_unit(ctx, exe);
    let systemd = systemd_running();
    let forced_dir = std::env::var_os("ZOCALO_SYSTEMD_DIR").is_some_and(|d| !d.is_empty());
    if !systemd && !forced_dir {
        return Ok(Installed {
            installed: false,
            enabled: false,
            systemd,
            unit,
        });
    }
    write_unit(ctx, &unit)?;
    if systemd {
        systemctl(unit.system, &["daemon-reload"])?;
        systemctl(unit.system, &["enable", UNIT_NAME])?;
    }
    Ok(Installed {
        installed: true,
        enabled: systemd,
        systemd,
        unit,
    })
}

/// Removes the unit `install` wrote (disabled first where systemd runs) and its environment
/// file. Returns whether there was one, and its path.
pub fn uninstall(ctx: &Runtime, exe: &Path) -> anyhow::Result<(bool, PathBuf)> {
    let unit = systemd_unit(ctx, exe);
    let present = unit.path.exists();
    let systemd = systemd_running();
    if present && systemd {
        // Best effort: a unit that was never enabled cannot be disabled.
        if let Err(e) = systemctl(unit.system, &["disable", UNIT_NAME]) {
            tracing::warn!("{e:#}");
        }
    }
    if present {
        std::fs::remove_file(&unit.path)
            .with_context(|| format!("removing {}", unit.path.display()))?;
    }
    if let Some(f) = &unit.env_file {
        let _ = std::fs::remove_file(f);
    }
    if present && systemd {
        systemctl(unit.system, &["daemon-reload"])?;
    }
    Ok((present, unit.path))
}

/// Writes the unit (and the database URL's environment file, 0600).
pub fn write_unit(ctx: &Runtime, unit: &Unit) -> anyhow::Result<()> {
    if let (Some(f), Some(url)) = (&unit.env_file, &ctx.database_url) {
        ctx.home.ensure()?;
        write_private(f, &format!("ZOCALO_DATABASE_URL={url}\n"))?;
    }
    if let Some(dir) = unit.path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&unit.path, &unit.text)
        .with_context(|| format!("writing {}", unit.path.display()))
}

/// `systemctl [--user] ARGS...`; an error names the command and what it printed.
pub fn systemctl(system: bool, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("systemctl");
    if !system {
        cmd.arg("--user");
    }
    let out = cmd
        .args(args)
        .output()
        .context("running systemctl (is systemd installed?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // The data home and unit directory follow the user; root installs a system unit.
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some("0")
        })
}

/// A value quoted for a unit file when it has spaces or quotes.
fn systemd_quote(v: &str) -> String {
    if v.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_owned()
    }
}
