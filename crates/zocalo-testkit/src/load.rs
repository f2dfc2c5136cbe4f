//! Soak and load runs against the real `zocalo` binary (feature `load`).
//!
//! - [`run_serve`] starts `zocalo serve` on a temp home, with an in-process [`FakeServer`] as
//!   the OpenAI upstream, and drives a fixed mix of traffic from N client tasks for a while:
//!   chat completions through the ask loop (whole and streamed) and passed through to the
//!   provider, memory add and search, pool job submits, and SSE streams (a slow streamed chat,
//!   `/api/events`) opened and dropped after their first bytes. It counts statuses and
//!   latencies per route and samples the server's RSS, open fds and threads from `/proc`.
//! - [`run_daemon`] adds N automations with the CLI (`zocalo schedule add`, half `--shell
//!   true`, half `--ask` against the fake provider, or all of one kind), runs `zocalo daemon
//!   run` over a number of their occurrences, samples it the same way, then reads every run
//!   back with `zocalo schedule runs --json`: runs expected vs completed, failures, and how
//!   late each started after its occurrence.
//! - [`run_streams`] holds thousands of event streams open on `zocalo serve` at once (this
//!   process is every client, the server a child, so each stays under its descriptor limit)
//!   and reads what they cost the server and whether they all come back.
//!
//! The first two return a report ([`ServeReport`], [`DaemonReport`]) that prints as a table
//! ([`ServeReport::table`]) or serializes to JSON; [`ServeReport::failures`] and
//! [`DaemonReport::failures`] say what broke the rules (a 5xx, a request not answered, a run
//! not completed, ...). The `soak` example is the command-line entry point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod streams;
pub use streams::{fd_room, run_streams, StreamsOptions, StreamsReport};

use crate::fake::{openai_text_sse, FakeServer, RecordedRequest, Reply};

/// The bearer token the soak gives the server.
pub const TOKEN: &str = "soak-token-0123456789abcdef";

/// The fake provider's answer to every chat (the ask loop's and pass-through's).
pub const FAKE_ANSWER: &str = "soak reply";

/// A user message containing this gets a slow stream from the fake provider (20 pieces,
/// 100 ms apart): the client drops it after the first bytes.
const SLOW_MARKER: &str = "[soak:slow]";

use crate::SCRUB_ENV as SCRUB;

// ---------------------------------------------------------------------------------------------
// Options

/// What [`run_serve`] does.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The `zocalo` binary.
    pub binary: PathBuf,
    /// `--database-url` (PostgreSQL); SQLite in the temp home without it.
    pub database_url: Option<String>,
    /// How long traffic runs.
    pub duration: Duration,
    /// Samples before this are warm-up: RSS growth is measured from the first one after it.
    pub warmup: Duration,
    /// Client tasks sending requests one after another.
    pub clients: usize,
    /// How often RSS and fds are read.
    pub sample_every: Duration,
    /// `ZOCALO_EMBEDDER` for the server (`none` by default: keyword memory only).
    pub embedder: String,
    /// Print progress to stderr every this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// RSS growth after the warm-up that fails the run (`None`: not judged, for runs too
    /// short to tell a leak from a cache filling up).
    pub max_rss_growth_pct: Option<f64>,
    /// Each client forgets (`DELETE /api/memory/{id}`) its oldest memory once it has added
    /// more than this many, so the memory index stays the same size and RSS growth shows
    /// leaks rather than data (0: never forget, the data grows with the run).
    pub memory_window: usize,
    /// Only these kinds of request ([`OP_NAMES`]); `None`: the whole mix.
    pub only: Option<Vec<String>>,
    /// The server's `config.toml` (e.g. `[memory] episodic = false`); none by default.
    pub config_toml: Option<String>,
}

impl ServeOptions {
    pub fn new(binary: impl Into<PathBuf>, duration: Duration) -> Self {
        Self {
            binary: binary.into(),
            database_url: None,
            duration,
            warmup: default_warmup(duration),
            clients: 8,
            sample_every: Duration::from_secs(2),
            embedder: "none".to_owned(),
            progress: None,
            max_rss_growth_pct: Some(10.0),
            memory_window: 0,
            only: None,
            config_toml: None,
        }
    }
}

/// The first minute, or a fifth of a shorter run.
pub fn default_warmup(duration: Duration) -> Duration {
    Duration::from_secs(60).min(duration / 5)
}

/// What the automations of [`run_daemon`] do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actions {
    /// `--shell true`: the pool's shell job, a process per run.
    Shell,
    /// `--ask`: the agent loop against the fake provider, a conversation per run.
    Ask,
    /// Every other automation shell, the rest ask.
    Mixed,
}

impl std::str::FromStr for Actions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shell" => Ok(Actions::Shell),
            "ask" => Ok(Actions::Ask),
            "mixed" => Ok(Actions::Mixed),
            other => Err(format!(
                "unknown action kind {other:?}: shell, ask or mixed"
            )),
        }
    }
}

/// What [`run_daemon`] does.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub binary: PathBuf,
    pub database_url: Option<String>,
    /// How many automations.
    pub automations: usize,
    /// Seconds between occurrences: 60 is `FREQ=MINUTELY`, others `FREQ=SECONDLY;INTERVAL=N`.
    pub period_secs: u64,
    /// Occurrences each automation fires while the daemon runs.
    pub occurrences: u32,
    pub actions: Actions,
    /// Time given after the last occurrence for its runs to finish.
    pub settle: Duration,
    pub sample_every: Duration,
    pub progress: Option<Duration>,
    /// RSS growth that fails the run, measured from the first sample one period after the
    /// first occurrence (`None`: not judged).
    pub max_rss_growth_pct: Option<f64>,
}

impl DaemonOptions {
    pub fn new(binary: impl Into<PathBuf>, automations: usize, occurrences: u32) -> Self {
        Self {
            binary: binary.into(),
            database_url: None,
            automations,
            period_secs: 60,
            occurrences,
            actions: Actions::Mixed,
            settle: Duration::from_secs(30),
            sample_every: Duration::from_secs(2),
            progress: None,
            max_rss_growth_pct: Some(10.0),
        }
    }

    /// The recurrence rule of every automation.
    pub fn rrule(&self) -> String {
        if self.period_secs == 60 {
            "FREQ=MINUTELY".to_owned()
        } else {
            format!("FREQ=SECONDLY;INTERVAL={}", self.period_secs)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The `q` quantile (0..=1) of sorted values, nearest rank: the smallest value with at least
/// `q` of the values at or below it. `None` for no values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One reading of a process.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// Reads RSS (KiB) and threads from `/proc/PID/status`, and counts `/proc/PID/fd`.
pub fn sample_process(pid: u32, t: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t,
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// RSS, fds and threads over a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessStats {
    pub samples: usize,
    /// The first sample at or after the warm-up.
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
    /// (end - start) / start, in percent.
    pub rss_growth_pct: f64,
    pub fds_start: u64,
    pub fds_peak: u64,
    pub fds_end: u64,
    pub threads_start: u64,
    pub threads_peak: u64,
    pub threads_end: u64,
    /// Every sample, for plots.
    pub series: Vec<Sample>,
}

impl ProcessStats {
    /// From samples in time order; growth is measured from the first sample at or after
    /// `warmup_secs` (the first sample if none is) to the last.
    pub fn from_samples(series: Vec<Sample>, warmup_secs: f64) -> ProcessStats {
        let Some(last) = series.last() else {
            return ProcessStats::default();
        };
        let start = series
            .iter()
            .find(|s| s.t >= warmup_secs)
            .unwrap_or(&series[0]);
        let growth = if start.rss_kib == 0 {
            0.0
        } else {
            (last.rss_kib as f64 - start.rss_kib as f64) * 100.0 / start.rss_kib as f64
        };
        ProcessStats {
            samples: series.len(),
            rss_start_kib: start.rss_kib,
            rss_peak_kib: series.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            rss_end_kib: last.rss_kib,
            rss_growth_pct: growth,
            fds_start: start.fds,
            fds_peak: series.iter().map(|s| s.fds).max().unwrap_or(0),
            fds_end: last.fds,
            threads_start: start.threads,
            threads_peak: series.iter().map(|s| s.threads).max().unwrap_or(0),
            threads_end: last.threads,
            series: series.clone(),
        }
    }
}

/// Samples `pid` every `every` until `stop` is set; the samples in order.
fn spawn_sampler(
    pid: u32,
    every: Duration,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(s) = sample_process(pid, t0.elapsed().as_secs_f64()) {
                out.push(s);
            }
            if stop.load(Ordering::SeqCst) {
                return out;
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The process under test

struct Proc {
    child: Child,
    /// Lines of stderr with ERROR or a panic, the first 20.
    errors: Arc<Mutex<Vec<String>>>,
    error_lines: Arc<AtomicUsize>,
}

impl Proc {
    fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("the process has exited"))
    }

    /// SIGTERM, then wait at most `within`: whether it exited with status 0.
    async fn terminate(mut self, within: Duration) -> anyhow::Result<bool> {
        let pid = self.pid()?;
        let pid = i32::try_from(pid).context("pid")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("SIGTERM")?;
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status.context("wait")?.success()),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Ok(false)
            }
        }
    }
}

fn base_command(binary: &Path, home: &Path, database_url: Option<&str>) -> Command {
    let mut cmd = Command::new(binary);
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.env("ZOCALO_HOME", home);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd
}

fn upstream_env(cmd: &mut Command, fake: &FakeServer) {
    cmd.env("OPENAI_BASE_URL", format!("{}/v1", fake.url()))
        .env("OPENAI_API_KEY", "sk-soak-0123456789")
        .env("ZOCALO_PROVIDER", "openai");
}

/// Starts `cmd` as `zocalo serve` on a free local port: the process and its base URL
/// (`http://127.0.0.1:PORT`, from its "listening on" line).
async fn start_serve(mut cmd: Command) -> anyhow::Result<(Proc, String)> {
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let (server, rest) = spawn_until(cmd, "listening on ").await?;
    let base = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("no address after \"listening on\""))?
        .to_owned();
    Ok((server, base))
}

/// Spawns `cmd` with stderr piped; returns once a stderr line contains `ready` (with the
/// text after it) or fails with what it printed.
async fn spawn_until(mut cmd: Command, ready: &str) -> anyhow::Result<(Proc, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting zocalo")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut banner = Vec::new();
    let rest = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split(ready).nth(1) {
                return Ok::<_, anyhow::Error>(rest.to_owned());
            }
            banner.push(line);
        }
        bail!("zocalo exited before it was ready: {banner:?}")
    })
    .await
    .map_err(|_| anyhow!("zocalo was not ready within 120 s"))??;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let error_lines = Arc::new(AtomicUsize::new(0));
    let (kept, count) = (errors.clone(), error_lines.clone());
    // Keep draining stderr so the process never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("ERROR") || line.contains("panicked") {
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut k) = kept.lock() {
                    if k.len() < 20 {
                        k.push(line);
                    }
                }
            }
        }
    });
    Ok((
        Proc {
            child,
            errors,
            error_lines,
        },
        rest,
    ))
}

/// The fake provider: every chat answered with [`FAKE_ANSWER`] as an OpenAI stream; a chat
/// whose last message has [`SLOW_MARKER`] streams slowly. Counts the requests it answered.
async fn fake_provider() -> (FakeServer, Arc<AtomicUsize>) {
    let fake = FakeServer::start().await;
    fake.stop_recording();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    fake.respond_with(move |r: &RecordedRequest| {
        count.fetch_add(1, Ordering::SeqCst);
        let model = r.body["model"].as_str().unwrap_or("soak-model").to_owned();
        let slow = r.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["content"].to_string().contains(SLOW_MARKER))
            .unwrap_or(false);
        if slow {
            let pieces: Vec<String> = (0..20).map(|i| format!("slow {i} ")).collect();
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let body = openai_text_sse(&model, &pieces);
            let cuts: Vec<usize> = body.match_indices("\n\n").map(|(i, _)| i + 2).collect();
            Reply::sse(body)
                .split_at(&cuts)
                .chunk_delay(Duration::from_millis(100))
        } else {
            Reply::sse(openai_text_sse(&model, &["soak ", "reply"]))
        }
    });
    (fake, answered)
}

// ---------------------------------------------------------------------------------------------
// Serve

/// The kinds of request the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    /// `POST /v1/chat/completions`, model `zocalo`, whole answer.
    ChatJson,
    /// The same, `stream: true`, read to `data: [DONE]`.
    ChatStream,
    /// Model `openai/soak-model`: passed through to the provider.
    ChatPassThrough,
    MemoryAdd,
    MemorySearch,
    JobSubmit,
    /// A slow streamed chat, dropped after its first bytes.
    ChatStreamDropped,
    /// `GET /api/events`, dropped after its first event.
    EventsDropped,
    /// `DELETE /api/memory/{id}` of the client's oldest memory (see `memory_window`).
    MemoryForget,
}

/// The names of the kinds of request, for [`ServeOptions::only`].
pub const OP_NAMES: &[&str] = &[
    "chat",
    "chat-stream",
    "chat-pass",
    "memory-add",
    "memory-search",
    "job-submit",
    "chat-drop",
    "events-drop",
];

impl Op {
    fn route(self) -> &'static str {
        match self {
            Op::ChatJson => "POST /v1/chat/completions (zocalo)",
            Op::ChatStream => "POST /v1/chat/completions (zocalo, stream)",
            Op::ChatPassThrough => "POST /v1/chat/completions (pass-through)",
            Op::MemoryAdd => "POST /api/memory",
            Op::MemorySearch => "GET /api/memory/search",
            Op::JobSubmit => "POST /api/jobs",
            Op::ChatStreamDropped => "POST /v1/chat/completions (stream, dropped)",
            Op::EventsDropped => "GET /api/events (dropped)",
            Op::MemoryForget => "DELETE /api/memory/{id}",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::ChatJson => "chat",
            Op::ChatStream => "chat-stream",
            Op::ChatPassThrough => "chat-pass",
            Op::MemoryAdd => "memory-add",
            Op::MemorySearch => "memory-search",
            Op::JobSubmit => "job-submit",
            Op::ChatStreamDropped => "chat-drop",
            Op::EventsDropped => "events-drop",
            Op::MemoryForget => "memory-forget",
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Op::MemoryAdd | Op::JobSubmit => 201,
            Op::MemoryForget => 204,
            _ => 200,
        }
    }
}

/// The fixed mix, in the order a client cycles through it (each client starts elsewhere):
/// 3 chats through the ask loop, 1 passed through, 2 memory adds, 2 searches, 2 job
/// submits, 1 dropped chat stream, 1 dropped event stream per 12 requests.
const MIX: &[Op] = &[
    Op::ChatJson,
    Op::MemoryAdd,
    Op::JobSubmit,
    Op::MemorySearch,
    Op::ChatStream,
    Op::ChatPassThrough,
    Op::MemoryAdd,
    Op::EventsDropped,
    Op::JobSubmit,
    Op::ChatStream,
    Op::MemorySearch,
    Op::ChatStreamDropped,
];

/// One request's outcome.
struct Outcome {
    op: Op,
    /// `None`: no answer (connection error, timeout).
    status: Option<u16>,
    /// The answer was the expected status but not the expected body.
    bad_body: Option<String>,
    latency: Duration,
    /// The id a memory add returned.
    id: Option<String>,
}

/// Per route: statuses, failures, latency.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    /// Status code to count.
    pub statuses: BTreeMap<String, u64>,
    pub server_errors: u64,
    /// Requests with no answer (connection error or a 60 s timeout).
    pub unanswered: u64,
    /// Answers with the expected status and a wrong body.
    pub bad_bodies: u64,
    /// Answers with another status than the expected one (5xx included).
    pub unexpected_status: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub per_sec: f64,
}

/// What [`run_serve`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct ServeReport {
    pub mode: &'static str,
    pub database: String,
    pub clients: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub requests: u64,
    pub throughput_per_sec: f64,
    pub server_errors: u64,
    pub unanswered: u64,
    pub bad_bodies: u64,
    pub unexpected_status: u64,
    pub routes: Vec<RouteStats>,
    pub process: ProcessStats,
    /// The growth limit judged (`None`: not judged).
    pub max_rss_growth_pct: Option<f64>,
    /// Requests the fake provider answered.
    pub upstream_requests: usize,
    /// `GET /api/jobs/stats` after the traffic stopped and the queue drained.
    pub jobs: Value,
    /// Whether the queue drained (no queued or running job) within 60 s after the traffic.
    pub jobs_drained: bool,
    /// Server stderr lines with ERROR or a panic, and the first of them.
    pub error_log_lines: usize,
    pub error_log_sample: Vec<String>,
    /// The server exited 0 on SIGTERM within 30 s.
    pub clean_exit: bool,
    /// Examples of failures (at most 20).
    pub failure_sample: Vec<String>,
}

impl ServeReport {
    /// What broke the rules: any 5xx, unanswered request, wrong answer, RSS growth of 10%
    /// or more after the warm-up, jobs left undone, an unclean exit. Empty: the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.requests == 0 {
            out.push("no request was sent".to_owned());
        }
        if self.server_errors > 0 {
            out.push(format!("{} answers were 5xx", self.server_errors));
        }
        if self.unanswered > 0 {
            out.push(format!("{} requests got no answer", self.unanswered));
        }
        if self.unexpected_status > self.server_errors {
            out.push(format!(
                "{} answers had an unexpected 4xx/other status",
                self.unexpected_status - self.server_errors
            ));
        }
        if self.bad_bodies > 0 {
            out.push(format!("{} answers had a wrong body", self.bad_bodies));
        }
        for r in &self.routes {
            if r.requests > 0 && r.requests == r.unanswered + r.unexpected_status + r.bad_bodies {
                out.push(format!("{}: no request succeeded", r.route));
            }
        }
        if let Some(max) = self.max_rss_growth_pct {
            if self.process.rss_growth_pct >= max {
                out.push(format!(
                    "RSS grew {:.1}% after the warm-up (limit {max}%)",
                    self.process.rss_growth_pct
                ));
            }
        }
        if !self.jobs_drained {
            out.push("the job queue did not drain".to_owned());
        }
        if self.jobs["failed"].as_i64().unwrap_or(0) + self.jobs["dead"].as_i64().unwrap_or(0) > 0 {
            out.push(format!("jobs failed: {}", self.jobs));
        }
        if !self.clean_exit {
            out.push("the server did not exit 0 on SIGTERM".to_owned());
        }
        out
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "zocalo serve soak: {:.0} s, {} clients, {} (RSS growth after a {:.0} s warm-up)\n",
            self.duration_secs, self.clients, self.database, self.warmup_secs
        );
        s.push_str(&format!(
            "{:<44} {:>8} {:>8} {:>9} {:>9} {:>9}  statuses\n",
            "route", "requests", "req/s", "p50 ms", "p99 ms", "max ms"
        ));
        for r in &self.routes {
            let statuses: Vec<String> =
                r.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            s.push_str(&format!(
                "{:<44} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.1}  {}\n",
                r.route,
                r.requests,
                r.per_sec,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                statuses.join(" ")
            ));
        }
        s.push_str(&format!(
            "total {} requests, {:.1} req/s; 5xx {}, unanswered {}, wrong body {}, other status {}\n",
            self.requests,
            self.throughput_per_sec,
            self.server_errors,
            self.unanswered,
            self.bad_bodies,
            self.unexpected_status - self.server_errors
        ));
        s.push_str(&process_lines(&self.process));
        s.push_str(&format!(
            "upstream requests {}; jobs after drain {} (drained: {}); server ERROR lines {}; clean exit {}\n",
            self.upstream_requests, self.jobs, self.jobs_drained, self.error_log_lines, self.clean_exit
        ));
        s
    }
}

fn process_lines(p: &ProcessStats) -> String {
    format!(
        "RSS start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB, growth {:+.1}% ({} samples)\n\
         fds start {}, peak {}, end {}; threads start {}, peak {}, end {}\n",
        p.rss_start_kib as f64 / 1024.0,
        p.rss_peak_kib as f64 / 1024.0,
        p.rss_end_kib as f64 / 1024.0,
        p.rss_growth_pct,
        p.samples,
        p.fds_start,
        p.fds_peak,
        p.fds_end,
        p.threads_start,
        p.threads_peak,
        p.threads_end
    )
}

/// The body to a chat request.
fn chat_body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// Sends one request of kind `op`; `n` makes texts differ.
/// Sends one request of kind `op`; `n` makes texts differ; `target` is the memory a forget
/// deletes.
async fn one(client: &reqwest::Client, base: &str, op: Op, n: u64, target: &str) -> Outcome {
    let t = Instant::now();
    let url = |p: &str| format!("{base}{p}");
    let req = match op {
        Op::ChatJson => client.post(url("/v1/chat/completions")).json(&chat_body(
            "zocalo",
            &format!("soak question {n}"),
            false,
        )),
        Op::ChatStream => client.post(url("/v1/chat/completions")).json(&chat_body(
            "zocalo",
            &format!("soak stream {n}"),
            true,
        )),
        Op::ChatPassThrough => client.post(url("/v1/chat/completions")).json(&chat_body(
            "openai/soak-model",
            &format!("soak pass {n}"),
            false,
        )),
        Op::ChatStreamDropped => client.post(url("/v1/chat/completions")).json(&chat_body(
            "zocalo",
            &format!("{SLOW_MARKER} soak dropped {n}"),
            true,
        )),
        Op::MemoryAdd => client.post(url("/api/memory")).json(&json!({
            "text": format!("soak note {n}: the topic{} meeting moved to room {}", n % 50, n % 7),
        })),
        Op::MemorySearch => client.get(url("/api/memory/search")).query(&[
            ("q", format!("topic{} meeting", n % 50)),
            ("limit", "5".into()),
        ]),
        Op::JobSubmit => client
            .post(url("/api/jobs"))
            .json(&json!({"kind": "noop", "payload": {"soak": n}})),
        Op::EventsDropped => client.get(url("/api/events")),
        Op::MemoryForget => client.delete(url(&format!("/api/memory/{target}"))),
    };
    let expected = op.expected_status();
    let resp = match req.bearer_auth(TOKEN).send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                op,
                status: None,
                bad_body: Some(e.to_string()),
                latency: t.elapsed(),
                id: None,
            }
        }
    };
    let status = resp.status().as_u16();
    let mut outcome = Outcome {
        op,
        status: Some(status),
        bad_body: None,
        latency: Duration::ZERO,
        id: None,
    };
    if status != expected {
        let text = resp.text().await.unwrap_or_default();
        outcome.bad_body = Some(format!("{status}: {}", truncate(&text, 300)));
        outcome.latency = t.elapsed();
        return outcome;
    }
    let check: Result<(), String> = match op {
        Op::ChatStreamDropped | Op::EventsDropped => {
            // The first bytes, then the stream is dropped with the response.
            let mut resp = resp;
            match resp.chunk().await {
                Ok(Some(c)) if !c.is_empty() => Ok(()),
                Ok(_) => Err("the stream ended before any byte".to_owned()),
                Err(e) => Err(format!("reading the stream: {e}")),
            }
        }
        Op::MemoryForget => Ok(()),
        Op::ChatStream => match resp.text().await {
            Ok(body) if body.trim_end().ends_with("data: [DONE]") && body.contains("soak ") => {
                Ok(())
            }
            Ok(body) => Err(format!(
                "stream without the answer or [DONE]: {}",
                truncate(&body, 300)
            )),
            Err(e) => Err(format!("reading the stream: {e}")),
        },
        _ => match resp.json::<Value>().await {
            Err(e) => Err(format!("not JSON: {e}")),
            Ok(v) => match op {
                Op::ChatJson | Op::ChatPassThrough => {
                    if v["choices"][0]["message"]["content"].as_str() == Some(FAKE_ANSWER) {
                        Ok(())
                    } else {
                        Err(format!(
                            "unexpected completion {}",
                            truncate(&v.to_string(), 300)
                        ))
                    }
                }
                Op::MemoryAdd => match v["id"].as_str() {
                    Some(id) => {
                        outcome.id = Some(id.to_owned());
                        Ok(())
                    }
                    None => Err(format!("no id: {v}")),
                },
                Op::MemorySearch => v.as_array().map(|_| ()).ok_or(format!("not a list: {v}")),
                Op::JobSubmit => match v["ids"].as_array() {
                    Some(ids) if ids.len() == 1 => Ok(()),
                    _ => Err(format!("no job id: {v}")),
                },
                _ => Ok(()),
            },
        },
    };
    outcome.latency = t.elapsed();
    outcome.bad_body = check.err();
    outcome
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Runs the serve soak (see the module docs).
pub async fn run_serve(opts: &ServeOptions) -> anyhow::Result<ServeReport> {
    if opts.clients == 0 {
        bail!("clients must be at least 1");
    }
    let mix: Vec<Op> = match &opts.only {
        None => MIX.to_vec(),
        Some(names) => {
            for n in names {
                if !OP_NAMES.contains(&n.as_str()) {
                    bail!("unknown kind of request {n:?}: {}", OP_NAMES.join(", "));
                }
            }
            MIX.iter()
                .copied()
                .filter(|op| names.iter().any(|n| n == op.name()))
                .collect()
        }
    };
    if mix.is_empty() {
        bail!("no kind of request left to send");
    }
    let mix = Arc::new(mix);
    let window = opts.memory_window;
    let home = tempfile::tempdir().context("temp home")?;
    if let Some(toml) = &opts.config_toml {
        std::fs::write(home.path().join("config.toml"), toml).context("config.toml")?;
    }
    let (fake, upstream) = fake_provider().await;
    let mut cmd = base_command(&opts.binary, home.path(), opts.database_url.as_deref());
    upstream_env(&mut cmd, &fake);
    cmd.env("ZOCALO_SERVER_TOKEN", TOKEN)
        .env("ZOCALO_EMBEDDER", &opts.embedder);
    let (server, base) = start_serve(cmd).await?;
    let pid = server.pid()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("http client")?;

    let t0 = Instant::now();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(pid, opts.sample_every, t0, stop_sampling.clone());
    let deadline = t0 + opts.duration;
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..opts.clients {
        let (client, base, outcomes, sent, mix) = (
            client.clone(),
            base.clone(),
            outcomes.clone(),
            sent.clone(),
            mix.clone(),
        );
        tasks.spawn(async move {
            // Each client starts elsewhere in the mix (5 is prime to its length).
            let mut i = c * 5;
            let mut n = (c as u64) << 32;
            let mut mine = std::collections::VecDeque::new();
            while Instant::now() < deadline {
                let over = window > 0 && mine.len() > window;
                let (op, target) = match over {
                    true => (Op::MemoryForget, mine.pop_front().unwrap_or_default()),
                    false => (mix[i % mix.len()], String::new()),
                };
                let mut o = one(&client, &base, op, n, &target).await;
                if let Some(id) = o.id.take() {
                    mine.push_back(id);
                }
                sent.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut all) = outcomes.lock() {
                    all.push(o);
                }
                // A forget is extra: the mix goes on where it was.
                if !over {
                    i += 1;
                }
                n += 1;
            }
        });
    }
    if let Some(every) = opts.progress {
        let sent = sent.clone();
        let total = opts.duration;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if t0.elapsed() >= total {
                    return;
                }
                let s = sample_process(pid, 0.0);
                eprintln!(
                    "[soak] {:>5.0} s / {:.0} s: {} requests, RSS {} KiB, fds {}",
                    t0.elapsed().as_secs_f64(),
                    total.as_secs_f64(),
                    sent.load(Ordering::Relaxed),
                    s.as_ref().map(|s| s.rss_kib).unwrap_or(0),
                    s.as_ref().map(|s| s.fds).unwrap_or(0),
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a client task panicked")?;
    }
    let elapsed = t0.elapsed();
    stop_sampling.store(true, Ordering::SeqCst);
    let samples = sampler.await.context("sampler")?;

    // The jobs submitted run on the server's own worker: wait for the queue to drain.
    let mut jobs = Value::Null;
    let mut drained = false;
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain_deadline {
        if let Ok(r) = client
            .get(format!("{base}/api/jobs/stats"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            if let Ok(v) = r.json::<Value>().await {
                let busy = v["queued"].as_i64().unwrap_or(0) + v["running"].as_i64().unwrap_or(0);
                jobs = v;
                if busy == 0 {
                    drained = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let error_log_lines = server.error_lines.load(Ordering::SeqCst);
    let error_log_sample = server.errors.lock().map(|v| v.clone()).unwrap_or_default();
    let clean_exit = server.terminate(Duration::from_secs(30)).await?;
    drop(fake);

    let outcomes = std::mem::take(&mut *outcomes.lock().map_err(|_| anyhow!("poisoned"))?);
    Ok(serve_report(
        opts,
        elapsed,
        outcomes,
        samples,
        upstream.load(Ordering::SeqCst),
        jobs,
        drained,
        error_log_lines,
        error_log_sample,
        clean_exit,
    ))
}

#[allow(clippy::too_many_arguments)]
fn serve_report(
    opts: &ServeOptions,
    elapsed: Duration,
    outcomes: Vec<Outcome>,
    samples: Vec<Sample>,
    upstream_requests: usize,
    jobs: Value,
    jobs_drained: bool,
    error_log_lines: usize,
    error_log_sample: Vec<String>,
    clean_exit: bool,
) -> ServeReport {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut by_op: BTreeMap<Op, Vec<&Outcome>> = BTreeMap::new();
    for o in &outcomes {
        by_op.entry(o.op).or_default().push(o);
    }
    let mut routes = Vec::new();
    let mut failure_sample = Vec::new();
    for (op, list) in by_op {
        let expected = op.expected_status();
        let mut statuses = BTreeMap::new();
        let (mut server_errors, mut unanswered, mut bad, mut unexpected) = (0, 0, 0, 0);
        let mut lat: Vec<f64> = Vec::with_capacity(list.len());
        for o in &list {
            lat.push(o.latency.as_secs_f64() * 1000.0);
            let key = o.status.map_or("none".to_owned(), |s| s.to_string());
            *statuses.entry(key).or_insert(0u64) += 1;
            match o.status {
                None => unanswered += 1,
                Some(s) if s != expected => {
                    unexpected += 1;
                    if s >= 500 {
                        server_errors += 1;
                    }
                }
                Some(_) if o.bad_body.is_some() => bad += 1,
                Some(_) => {}
            }
            if let Some(why) = &o.bad_body {
                if failure_sample.len() < 20 {
                    failure_sample.push(format!("{}: {why}", op.route()));
                }
            }
        }
        lat.sort_by(f64::total_cmp);
        routes.push(RouteStats {
            route: op.route().to_owned(),
            requests: list.len() as u64,
            statuses,
            server_errors,
            unanswered,
            bad_bodies: bad,
            unexpected_status: unexpected,
            p50_ms: quantile(&lat, 0.5).unwrap_or(0.0),
            p99_ms: quantile(&lat, 0.99).unwrap_or(0.0),
            max_ms: lat.last().copied().unwrap_or(0.0),
            per_sec: list.len() as f64 / secs,
        });
    }
    let sum = |f: fn(&RouteStats) -> u64| routes.iter().map(f).sum::<u64>();
    ServeReport {
        mode: "serve",
        database: database_label(opts.database_url.as_deref()),
        clients: opts.clients,
        duration_secs: secs,
        warmup_secs: opts.warmup.as_secs_f64(),
        requests: outcomes.len() as u64,
        throughput_per_sec: outcomes.len() as f64 / secs,
        server_errors: sum(|r| r.server_errors),
        unanswered: sum(|r| r.unanswered),
        bad_bodies: sum(|r| r.bad_bodies),
        unexpected_status: sum(|r| r.unexpected_status),
        routes,
        process: ProcessStats::from_samples(samples, opts.warmup.as_secs_f64()),
        max_rss_growth_pct: opts.max_rss_growth_pct,
        upstream_requests,
        jobs,
        jobs_drained,
        error_log_lines,
        error_log_sample,
        clean_exit,
        failure_sample,
    }
}

fn database_label(url: Option<&str>) -> String {
    match url {
        None => "SQLite".to_owned(),
        Some(u) if u.starts_with("postgres") => "PostgreSQL".to_owned(),
        Some(_) => "database URL".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon

/// What [`run_daemon`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonReport {
    pub mode: &'static str,
    pub database: String,
    pub automations: usize,
    pub actions: Actions,
    pub rrule: String,
    pub occurrences: u32,
    /// Wall time of the daemon, from start to SIGTERM.
    pub duration_secs: f64,
    /// Seconds the CLI took to add every automation.
    pub add_secs: f64,
    /// Automations × occurrences.
    pub expected_runs: u64,
    /// Runs recorded for those occurrences.
    pub fired_runs: u64,
    /// Of those, succeeded.
    pub completed_runs: u64,
    /// failed, dead or cancelled.
    pub failed_runs: u64,
    /// Expected occurrences with no run, or a run not finished by the end.
    pub missing_runs: u64,
    /// Runs before the first occurrence, off the period, or twice for one occurrence.
    pub extra_runs: u64,
    /// Runs of occurrences after the last one counted (fired while the last ones settled).
    pub later_runs: u64,
    /// started_at - scheduled_for.
    pub start_late_p50_ms: f64,
    pub start_late_p99_ms: f64,
    pub start_late_max_ms: f64,
    /// finished_at - scheduled_for.
    pub finish_late_p99_ms: f64,
    pub finish_late_max_ms: f64,
    pub process: ProcessStats,
    /// Seconds from the daemon's start to the first sample RSS growth is measured from.
    pub warmup_secs: f64,
    pub max_rss_growth_pct: Option<f64>,
    pub upstream_requests: usize,
    pub error_log_lines: usize,
    pub error_log_sample: Vec<String>,
    pub clean_exit: bool,
    pub failure_sample: Vec<String>,
}

impl DaemonReport {
    /// What broke the rules: a run missing, failed or extra, RSS growth of 10% or more, an
    /// unclean exit. Empty: the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.expected_runs == 0 {
            out.push("no run was expected".to_owned());
        }
        if self.completed_runs != self.expected_runs {
            out.push(format!(
                "{} of {} runs completed",
                self.completed_runs, self.expected_runs
            ));
        }
        if self.failed_runs > 0 {
            out.push(format!("{} runs failed", self.failed_runs));
        }
        if self.extra_runs > 0 {
            out.push(format!(
                "{} runs for unexpected occurrences",
                self.extra_runs
            ));
        }
        if let Some(max) = self.max_rss_growth_pct {
            if self.process.rss_growth_pct >= max {
                out.push(format!(
                    "RSS grew {:.1}% after the first period (limit {max}%)",
                    self.process.rss_growth_pct
                ));
            }
        }
        if !self.clean_exit {
            out.push("the daemon did not exit 0 on SIGTERM".to_owned());
        }
        out
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "zocalo daemon soak: {} automations ({:?}, {}), {} occurrences each, {}, {:.0} s \
             (adding them took {:.1} s)\n",
            self.automations,
            self.actions,
            self.rrule,
            self.occurrences,
            self.database,
            self.duration_secs,
            self.add_secs
        );
        s.push_str(&format!(
            "runs expected {}, fired {}, completed {}, failed {}, missing {}, extra {} \
             (later occurrences not counted: {})\n",
            self.expected_runs,
            self.fired_runs,
            self.completed_runs,
            self.failed_runs,
            self.missing_runs,
            self.extra_runs,
            self.later_runs
        ));
        s.push_str(&format!(
            "start lateness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; finish lateness p99 {:.0} ms, max {:.0} ms\n",
            self.start_late_p50_ms,
            self.start_late_p99_ms,
            self.start_late_max_ms,
            self.finish_late_p99_ms,
            self.finish_late_max_ms
        ));
        s.push_str(&process_lines(&self.process));
        s.push_str(&format!(
            "upstream requests {}; daemon ERROR lines {}; clean exit {}\n",
            self.upstream_requests, self.error_log_lines, self.clean_exit
        ));
        s
    }
}

/// The first multiple of `period_secs` (from the Unix epoch) at or after `t`, whole seconds.
pub fn next_boundary(t: DateTime<Utc>, period_secs: u64) -> DateTime<Utc> {
    let p = i64::try_from(period_secs.max(1)).unwrap_or(60);
    let mut secs = t.timestamp();
    if t.timestamp_subsec_nanos() > 0 {
        secs += 1;
    }
    let up = secs.div_euclid(p) * p + if secs.rem_euclid(p) == 0 { 0 } else { p };
    DateTime::from_timestamp(up, 0).unwrap_or(t)
}

async fn cli(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow!("{what}: no answer within 120 s"))?
        .with_context(|| format!("{what}: could not start"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the daemon soak (see the module docs).
pub async fn run_daemon(opts: &DaemonOptions) -> anyhow::Result<DaemonReport> {
    if opts.automations == 0 || opts.occurrences == 0 || opts.period_secs == 0 {
        bail!("automations, occurrences and the period must be at least 1");
    }
    let home = tempfile::tempdir().context("temp home")?;
    let (fake, upstream) = fake_provider().await;
    let db = opts.database_url.as_deref();
    let rrule = opts.rrule();
    // The first occurrence: a period boundary far enough ahead for the CLI to add every
    // automation (about 50 ms each, more on a busy machine) and the daemon to start.
    let budget = Duration::from_millis(400 * opts.automations as u64 + 5000);
    let first = next_boundary(
        Utc::now() + chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::zero()),
        opts.period_secs,
    );
    let start_local = first.format("%Y-%m-%dT%H:%M:%S").to_string();
    let names: Vec<String> = (0..opts.automations)
        .map(|i| format!("soak-{i:04}"))
        .collect();
    let added = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let ask = match opts.actions {
            Actions::Shell => false,
            Actions::Ask => true,
            Actions::Mixed => i % 2 == 1,
        };
        let mut cmd = base_command(&opts.binary, home.path(), db);
        upstream_env(&mut cmd, &fake);
        cmd.env("ZOCALO_EMBEDDER", "none").args([
            "schedule",
            "add",
            name,
            "--rrule",
            &rrule,
            "--start",
            &start_local,
            "--tz",
            "UTC",
        ]);
        if ask {
            cmd.args(["--ask", &format!("soak automation {i}: say hello")]);
        } else {
            cmd.args(["--shell", "true"]);
        }
        cli(cmd, &format!("schedule add {name}")).await?;
    }
    let add_secs = added.elapsed().as_secs_f64();

    let mut cmd = base_command(&opts.binary, home.path(), db);
    upstream_env(&mut cmd, &fake);
    cmd.env("ZOCALO_EMBEDDER", "none").args(["daemon", "run"]);
    let (daemon, _) = spawn_until(cmd, "daemon running").await?;
    if Utc::now() >= first {
        bail!(
            "adding {} automations and starting the daemon took past their first occurrence \
             ({first}); the machine is too busy",
            opts.automations
        );
    }
    let pid = daemon.pid()?;
    let t0 = Instant::now();
    // Growth counts from one period after the first occurrence: by then every kind of run
    // has happened once (the first ask opened the provider's connection pool, ...).
    let warmup_secs =
        (first - Utc::now()).num_milliseconds() as f64 / 1000.0 + opts.period_secs as f64;
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(pid, opts.sample_every, t0, stop_sampling.clone());
    let period = chrono::Duration::seconds(i64::try_from(opts.period_secs).unwrap_or(60));
    let last = first + period * (i32::try_from(opts.occurrences).unwrap_or(1) - 1);
    let end = last + chrono::Duration::from_std(opts.settle).unwrap_or(chrono::Duration::zero());
    let progress = opts.progress;
    let mut next_note = Instant::now();
    loop {
        let now = Utc::now();
        if now >= end {
            break;
        }
        if let Some(every) = progress {
            if Instant::now() >= next_note {
                let s = sample_process(pid, 0.0);
                eprintln!(
                    "[soak] daemon {:>5.0} s, {:.0} s to go: RSS {} KiB, fds {}, upstream {}",
                    t0.elapsed().as_secs_f64(),
                    (end - now).num_milliseconds() as f64 / 1000.0,
                    s.as_ref().map(|s| s.rss_kib).unwrap_or(0),
                    s.as_ref().map(|s| s.fds).unwrap_or(0),
                    upstream.load(Ordering::SeqCst)
                );
                next_note = Instant::now() + every;
            }
        }
        let left = (end - now).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    let duration_secs = t0.elapsed().as_secs_f64();
    stop_sampling.store(true, Ordering::SeqCst);
    let samples = sampler.await.context("sampler")?;
    let error_log_lines = daemon.error_lines.load(Ordering::SeqCst);
    let error_log_sample = daemon.errors.lock().map(|v| v.clone()).unwrap_or_default();
    let clean_exit = daemon.terminate(Duration::from_secs(60)).await?;

    // Every run, read back the way a user would.
    let mut runs: Vec<(String, Value)> = Vec::new();
    for name in &names {
        let mut cmd = base_command(&opts.binary, home.path(), db);
        cmd.env("ZOCALO_EMBEDDER", "none")
            .args(["schedule", "runs", name, "--limit", "100000", "--json"]);
        let out = cli(cmd, &format!("schedule runs {name}")).await?;
        let list: Value = serde_json::from_str(&out)
            .with_context(|| format!("schedule runs {name}: not JSON: {out}"))?;
        for r in list.as_array().cloned().unwrap_or_default() {
            runs.push((name.clone(), r));
        }
    }
    drop(fake);
    let mut report = daemon_report(opts, first, &runs);
    report.duration_secs = duration_secs;
    report.add_secs = add_secs;
    report.warmup_secs = warmup_secs;
    report.process = ProcessStats::from_samples(samples, warmup_secs);
    report.upstream_requests = upstream.load(Ordering::SeqCst);
    report.error_log_lines = error_log_lines;
    report.error_log_sample = error_log_sample;
    report.clean_exit = clean_exit;
    Ok(report)
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Counts runs against the expected occurrences `first + k * period`, k < occurrences, of
/// every automation. `runs`: (automation, run as `schedule runs --json` prints it).
fn daemon_report(
    opts: &DaemonOptions,
    first: DateTime<Utc>,
    runs: &[(String, Value)],
) -> DaemonReport {
    let period_ms = i64::try_from(opts.period_secs).unwrap_or(60) * 1000;
    let mut seen: BTreeMap<(String, i64), &Value> = BTreeMap::new();
    let mut extra = 0u64;
    let mut later = 0u64;
    let mut failure_sample = Vec::new();
    for (name, r) in runs {
        let Some(at) = time_of(&r["scheduled_for"]) else {
            extra += 1;
            continue;
        };
        let offset = (at - first).num_milliseconds();
        let k = offset.div_euclid(period_ms);
        if offset.rem_euclid(period_ms) == 0 && k >= i64::from(opts.occurrences) {
            later += 1;
            continue;
        }
        if offset.rem_euclid(period_ms) != 0 || k < 0 {
            extra += 1;
            if failure_sample.len() < 20 {
                failure_sample.push(format!("{name}: run for an unexpected occurrence {at}"));
            }
            continue;
        }
        if seen.insert((name.clone(), k), r).is_some() {
            extra += 1;
            if failure_sample.len() < 20 {
                failure_sample.push(format!("{name}: two runs for {at}"));
            }
        }
    }
    let (mut completed, mut failed) = (0u64, 0u64);
    let mut start_late = Vec::new();
    let mut finish_late = Vec::new();
    for ((name, _), r) in &seen {
        let status = r["status"].as_str().unwrap_or("");
        match status {
            "succeeded" => completed += 1,
            "failed" | "dead" | "cancelled" => {
                failed += 1;
                if failure_sample.len() < 20 {
                    failure_sample.push(format!("{name}: {status}: {}", r["output"]));
                }
            }
            _ => {}
        }
        let Some(at) = time_of(&r["scheduled_for"]) else {
            continue;
        };
        if let Some(s) = time_of(&r["started_at"]) {
            start_late.push((s - at).num_milliseconds() as f64);
        }
        if let Some(f) = time_of(&r["finished_at"]) {
            finish_late.push((f - at).num_milliseconds() as f64);
        }
    }
    start_late.sort_by(f64::total_cmp);
    finish_late.sort_by(f64::total_cmp);
    let expected = opts.automations as u64 * u64::from(opts.occurrences);
    DaemonReport {
        mode: "daemon",
        database: database_label(opts.database_url.as_deref()),
        automations: opts.automations,
        actions: opts.actions,
        rrule: opts.rrule(),
        occurrences: opts.occurrences,
        duration_secs: 0.0,
        add_secs: 0.0,
        expected_runs: expected,
        fired_runs: seen.len() as u64,
        completed_runs: completed,
        failed_runs: failed,
        missing_runs: expected.saturating_sub(completed + failed),
        extra_runs: extra,
        later_runs: later,
        start_late_p50_ms: quantile(&start_late, 0.5).unwrap_or(0.0),
        start_late_p99_ms: quantile(&start_late, 0.99).unwrap_or(0.0),
        start_late_max_ms: start_late.last().copied().unwrap_or(0.0),
        finish_late_p99_ms: quantile(&finish_late, 0.99).unwrap_or(0.0),
        finish_late_max_ms: finish_late.last().copied().unwrap_or(0.0),
        process: ProcessStats::default(),
        warmup_secs: 0.0,
        max_rss_growth_pct: opts.max_rss_growth_pct,
        upstream_requests: 0,
        error_log_lines: 0,
        error_log_sample: Vec::new(),
        clean_exit: false,
        failure_sample,
    }
}

// ---------------------------------------------------------------------------------------------
// Command line (the `soak` example)

/// Usage of the `soak` example.
pub const USAGE: &str = "\
usage: soak serve  [--minutes M | --seconds S] [--clients N] [--warmup-secs S] [--embedder E]
                   [--config config.toml] [--memory-window N] [--only chat,chat-stream,chat-pass,memory-add,
                    memory-search,job-submit,chat-drop,events-drop]
       soak daemon [--minutes M | --occurrences K] [--automations N] [--period-secs P]
                   [--actions shell|ask|mixed] [--settle-secs S]
common: [--binary PATH] [--database-url URL] [--json] [--out FILE] [--quiet]
        [--max-rss-growth-pct P|none]  (default 10)
The binary defaults to $ZOCALO_BIN, else $CARGO_TARGET_DIR/release/zocalo, else
target/release/zocalo. Exit status 1 when the run broke a rule (a 5xx, a request not
answered, RSS growth >= 10%, a run not completed, ...).";

/// A parsed `soak` command line.
#[derive(Clone, Debug)]
pub enum SoakCommand {
    Serve(ServeOptions),
    Daemon(DaemonOptions),
}

/// How to print a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// JSON on stdout instead of the table.
    pub json: bool,
    /// Also write the JSON report to this file.
    pub out: Option<PathBuf>,
}

/// The default `zocalo` binary: `$ZOCALO_BIN`, else `$CARGO_TARGET_DIR/release/zocalo`, else
/// `target/release/zocalo` of this workspace.
pub fn default_binary() -> PathBuf {
    if let Some(b) = std::env::var_os("ZOCALO_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(b);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("release").join("zocalo")
}

/// Parses the `soak` example's arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<(SoakCommand, Output), String> {
    let (mode, rest) = args
        .split_first()
        .ok_or_else(|| "say serve or daemon".to_owned())?;
    let mut flags: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument {a:?}"));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None if matches!(name, "json" | "quiet") => (name.to_owned(), None),
            None => {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                (name.to_owned(), Some(v.clone()))
            }
        };
        if flags.insert(name.clone(), value).is_some() {
            return Err(format!("--{name} given twice"));
        }
    }
    let allowed: &[&str] = match mode.as_str() {
        "serve" => &[
            "minutes",
            "seconds",
            "clients",
            "warmup-secs",
            "embedder",
            "memory-window",
            "only",
            "config",
        ],
        "daemon" => &[
            "minutes",
            "occurrences",
            "automations",
            "period-secs",
            "actions",
            "settle-secs",
        ],
        other => return Err(format!("unknown mode {other:?}: serve or daemon")),
    };
    for name in flags.keys() {
        let common = [
            "binary",
            "database-url",
            "json",
            "out",
            "quiet",
            "max-rss-growth-pct",
        ];
        if !allowed.contains(&name.as_str()) && !common.contains(&name.as_str()) {
            return Err(format!("unknown flag --{name} for {mode}"));
        }
    }
    let text = |name: &str| flags.get(name).cloned().flatten();
    let number = |name: &str| -> Result<Option<u64>, String> {
        match text(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!(
                    "--{name} must be a positive whole number, not {v:?}"
                )),
            },
        }
    };
    let binary = text("binary")
        .map(PathBuf::from)
        .unwrap_or_else(default_binary);
    let database_url = text("database-url");
    let progress = (!flags.contains_key("quiet")).then_some(Duration::from_secs(30));
    let max_rss_growth_pct = match text("max-rss-growth-pct").as_deref() {
        None => Some(10.0),
        Some("none") => None,
        Some(v) => match v.parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 => Some(p),
            _ => {
                return Err(format!(
                    "--max-rss-growth-pct must be a positive number or none, not {v:?}"
                ))
            }
        },
    };
    let output = Output {
        json: flags.contains_key("json"),
        out: text("out").map(PathBuf::from),
    };
    if flags.contains_key("minutes")
        && (flags.contains_key("seconds") || flags.contains_key("occurrences"))
    {
        return Err("--minutes and --seconds/--occurrences exclude each other".to_owned());
    }
    let command = if mode == "serve" {
        let secs = match (number("minutes")?, number("seconds")?) {
            (Some(m), _) => m * 60,
            (None, Some(s)) => s,
            (None, None) => 600,
        };
        let mut o = ServeOptions::new(binary, Duration::from_secs(secs));
        o.database_url = database_url;
        o.progress = progress;
        o.max_rss_growth_pct = max_rss_growth_pct;
        if let Some(c) = number("clients")? {
            o.clients = usize::try_from(c).map_err(|_| "--clients is too large".to_owned())?;
        }
        if let Some(w) = number("warmup-secs")? {
            if w >= secs {
                return Err(format!(
                    "--warmup-secs {w} leaves nothing of a {secs} s run"
                ));
            }
            o.warmup = Duration::from_secs(w);
        }
        if let Some(e) = text("embedder") {
            o.embedder = e;
        }
        if let Some(path) = text("config") {
            o.config_toml = Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("--config {path}: cannot read it: {e}"))?,
            );
        }
        if let Some(w) = text("memory-window") {
            o.memory_window = w
                .parse()
                .map_err(|_| format!("--memory-window must be a whole number, not {w:?}"))?;
        }
        if let Some(list) = text("only") {
            let names: Vec<String> = list.split(',').map(str::to_owned).collect();
            for n in &names {
                if !OP_NAMES.contains(&n.as_str()) {
                    return Err(format!(
                        "--only: unknown kind of request {n:?}: {}",
                        OP_NAMES.join(", ")
                    ));
                }
            }
            o.only = Some(names);
        }
        SoakCommand::Serve(o)
    } else {
        let occurrences = number("minutes")?.or(number("occurrences")?).unwrap_or(10);
        let occurrences = u32::try_from(occurrences).map_err(|_| "too many occurrences")?;
        let automations = number("automations")?.unwrap_or(200);
        let automations =
            usize::try_from(automations).map_err(|_| "--automations is too large".to_owned())?;
        let mut o = DaemonOptions::new(binary, automations, occurrences);
        o.database_url = database_url;
        o.progress = progress;
        o.max_rss_growth_pct = max_rss_growth_pct;
        if let Some(p) = number("period-secs")? {
            if flags.contains_key("minutes") && p != 60 {
                return Err("--minutes means a 60 s period: use --occurrences".to_owned());
            }
            o.period_secs = p;
        }
        o.settle = Duration::from_secs(number("settle-secs")?.unwrap_or(o.period_secs.min(30)));
        if let Some(a) = text("actions") {
            o.actions = a.parse()?;
        }
        SoakCommand::Daemon(o)
    };
    Ok((command, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn growth_is_measured_from_the_first_sample_after_warmup() {
        let s = |t: f64, rss: u64, fds: u64| Sample {
            t,
            rss_kib: rss,
            fds,
            threads: 4,
        };
        // The warm-up's climb from 50 to 100 MiB does not count; 100 -> 105 is 5%.
        let p = ProcessStats::from_samples(
            vec![
                s(0.0, 50, 10),
                s(30.0, 100, 12),
                s(60.0, 120, 30),
                s(90.0, 105, 12),
            ],
            20.0,
        );
        assert_eq!(p.rss_start_kib, 100);
        assert_eq!(p.rss_peak_kib, 120);
        assert_eq!(p.rss_end_kib, 105);
        assert!(
            (p.rss_growth_pct - 5.0).abs() < 1e-9,
            "{}",
            p.rss_growth_pct
        );
        assert_eq!((p.fds_start, p.fds_peak, p.fds_end), (12, 30, 12));
        // Nothing after the warm-up: the first sample is the start.
        let p = ProcessStats::from_samples(vec![s(0.0, 200, 1), s(1.0, 100, 1)], 60.0);
        assert_eq!(p.rss_start_kib, 200);
        assert!((p.rss_growth_pct + 50.0).abs() < 1e-9);
        assert_eq!(ProcessStats::from_samples(Vec::new(), 0.0).samples, 0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample_process(std::process::id(), 0.0).expect("a sample of ourselves");
        assert!(s.rss_kib > 0);
        assert!(s.fds >= 3, "stdin, stdout, stderr at least: {}", s.fds);
        assert!(s.threads >= 1);
        assert!(sample_process(u32::MAX, 0.0).is_none());
    }

    #[test]
    fn boundaries_round_up_to_the_period() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            next_boundary(t("2026-12-07T18:40:01Z"), 60),
            t("2026-12-07T18:41:00Z")
        );
        assert_eq!(
            next_boundary(t("2026-12-07T18:41:00Z"), 60),
            t("2026-12-07T18:41:00Z")
        );
        assert_eq!(
            next_boundary(t("2026-12-07T18:40:59.5Z"), 60),
            t("2026-12-07T18:41:00Z")
        );
        assert_eq!(
            next_boundary(t("2026-12-07T18:40:00.001Z"), 5),
            t("2026-12-07T18:40:05Z")
        );
    }

    #[test]
    fn actions_parse_and_reject_unknown() {
        assert_eq!("mixed".parse::<Actions>(), Ok(Actions::Mixed));
        assert_eq!("shell".parse::<Actions>(), Ok(Actions::Shell));
        assert!("Shell"
            .parse::<Actions>()
            .unwrap_err()
            .contains("shell, ask or mixed"));
        let mut o = DaemonOptions::new("zocalo", 1, 1);
        assert_eq!(o.rrule(), "FREQ=MINUTELY");
        o.period_secs = 5;
        assert_eq!(o.rrule(), "FREQ=SECONDLY;INTERVAL=5");
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_parse() {
        let (c, out) = parse_args(&args(
            "serve --minutes 10 --clients 16 --json --binary /x/zocalo",
        ))
        .unwrap();
        let SoakCommand::Serve(o) = c else {
            panic!("not serve")
        };
        assert_eq!(o.duration, Duration::from_secs(600));
        assert_eq!(o.warmup, Duration::from_secs(60));
        assert_eq!(o.clients, 16);
        assert_eq!(o.binary, PathBuf::from("/x/zocalo"));
        assert_eq!(o.embedder, "none");
        assert!(out.json);
        let (c, out) = parse_args(&args("serve --seconds=20 --out r.json --quiet")).unwrap();
        let SoakCommand::Serve(o) = c else {
            panic!("not serve")
        };
        assert_eq!(o.duration, Duration::from_secs(20));
        assert_eq!(o.warmup, Duration::from_secs(4));
        assert_eq!(o.progress, None);
        assert_eq!(out.out, Some(PathBuf::from("r.json")));
        let (c, _) = parse_args(&args(
            "daemon --automations 5 --occurrences 3 --period-secs 5 --actions ask --database-url postgres://h/db",
        ))
        .unwrap();
        let SoakCommand::Daemon(o) = c else {
            panic!("not daemon")
        };
        assert_eq!((o.automations, o.occurrences, o.period_secs), (5, 3, 5));
        assert_eq!(o.settle, Duration::from_secs(5));
        assert_eq!(o.actions, Actions::Ask);
        assert_eq!(o.database_url.as_deref(), Some("postgres://h/db"));
        assert_eq!(o.max_rss_growth_pct, Some(10.0));
        let (c, _) = parse_args(&args("serve --max-rss-growth-pct none")).unwrap();
        let SoakCommand::Serve(o) = c else {
            panic!("not serve")
        };
        assert_eq!(o.max_rss_growth_pct, None);
        let (c, _) = parse_args(&args("serve --only chat,memory-add --memory-window 0")).unwrap();
        let SoakCommand::Serve(o) = c else {
            panic!("not serve")
        };
        assert_eq!(
            o.only,
            Some(vec!["chat".to_owned(), "memory-add".to_owned()])
        );
        assert_eq!(o.memory_window, 0);
        let (c, _) = parse_args(&args("daemon")).unwrap();
        let SoakCommand::Daemon(o) = c else {
            panic!("not daemon")
        };
        assert_eq!(
            (o.automations, o.occurrences, o.rrule()),
            (200, 10, "FREQ=MINUTELY".into())
        );
    }

    #[test]
    fn bad_command_lines_say_why() {
        for (line, why) in [
            ("", "say serve or daemon"),
            ("stress", "unknown mode"),
            ("serve --automations 3", "unknown flag --automations"),
            ("daemon --clients 3", "unknown flag --clients"),
            ("serve --minutes", "needs a value"),
            ("serve --minutes 0", "positive whole number"),
            ("serve --minutes ten", "positive whole number"),
            ("serve --clients -1", "positive whole number"),
            ("serve --minutes 1 --seconds 5", "exclude each other"),
            ("serve --clients 2 --clients 3", "given twice"),
            ("serve --seconds 10 --warmup-secs 10", "leaves nothing"),
            ("serve extra", "unexpected argument"),
            ("daemon --actions all", "shell, ask or mixed"),
            ("daemon --minutes 2 --period-secs 5", "60 s period"),
            ("serve --max-rss-growth-pct -3", "positive number or none"),
            ("serve --only chat,nap", "unknown kind of request \"nap\""),
            ("serve --memory-window many", "whole number"),
            ("serve --config /nonexistent/zocalo.toml", "cannot read it"),
            ("daemon --only chat", "unknown flag --only"),
            ("daemon --max-rss-growth-pct NaN", "positive number or none"),
        ] {
            let err = parse_args(&args(line)).unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn runs_are_matched_to_expected_occurrences() {
        let mut o = DaemonOptions::new("zocalo", 2, 2);
        o.period_secs = 10;
        let first = DateTime::parse_from_rfc3339("2026-12-07T18:40:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let run = |at: &str, status: &str, started: &str| {
            json!({"scheduled_for": at, "status": status, "started_at": started,
                   "finished_at": started, "output": null})
        };
        let runs = vec![
            (
                "a".to_owned(),
                run(
                    "2026-12-07T18:40:00Z",
                    "succeeded",
                    "2026-12-07T18:40:00.250Z",
                ),
            ),
            (
                "a".to_owned(),
                run("2026-12-07T18:40:10Z", "succeeded", "2026-12-07T18:40:11Z"),
            ),
            (
                "b".to_owned(),
                run("2026-12-07T18:40:00Z", "failed", "2026-12-07T18:40:00.500Z"),
            ),
            // Not a multiple of the period, and before the first: extra.
            (
                "b".to_owned(),
                run("2026-12-07T18:40:05Z", "succeeded", "2026-12-07T18:40:05Z"),
            ),
            (
                "b".to_owned(),
                run("2026-12-07T18:39:50Z", "succeeded", "2026-12-07T18:39:50Z"),
            ),
            // A second run for one occurrence: extra.
            (
                "a".to_owned(),
                run("2026-12-07T18:40:10Z", "succeeded", "2026-12-07T18:40:11Z"),
            ),
            // Past the last occurrence: later, not counted.
            (
                "b".to_owned(),
                run("2026-12-07T18:40:20Z", "succeeded", "2026-12-07T18:40:20Z"),
            ),
        ];
        let r = daemon_report(&o, first, &runs);
        assert_eq!(r.expected_runs, 4);
        assert_eq!(r.fired_runs, 3);
        assert_eq!(r.completed_runs, 2);
        assert_eq!(r.failed_runs, 1);
        assert_eq!(r.missing_runs, 1);
        assert_eq!(r.extra_runs, 3);
        assert_eq!(r.later_runs, 1);
        assert_eq!(r.start_late_p50_ms, 500.0);
        assert_eq!(r.start_late_max_ms, 1000.0);
        let f = r.failures();
        assert!(f.iter().any(|m| m == "2 of 4 runs completed"), "{f:?}");
        assert!(f.iter().any(|m| m == "1 runs failed"), "{f:?}");
        assert!(
            f.iter().any(|m| m == "3 runs for unexpected occurrences"),
            "{f:?}"
        );
    }
}
