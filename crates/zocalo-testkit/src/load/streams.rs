//! Thousands of event streams at once against the real `zocalo serve` ([`run_streams`]).
//!
//! The server is a child process and this process is every client, so each side holds one
//! descriptor per connection: 10,000 streams need about 10,000 descriptors on each side,
//! which fits a `ulimit -n` of 20,000 where client and server in one process would not.
//! [`fd_room`] raises the soft limit as far as the hard one allows and says when it cannot
//! be enough.
//!
//! Every connection asks for `/api/events` (the web UI's stream) and counts as a stream once
//! its `hello` event has arrived; past `[server] max_streams` it must be a 503
//! `too_many_streams`. Meanwhile `/healthz` is asked over and over and its latency kept; the
//! server's own count of open streams (`streams_open` in `/healthz`) and its RSS and
//! descriptors (from `/proc`) are read when idle, with everything open, and after the
//! clients have gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{base_command, sample_process, start_serve, Proc, TOKEN};

/// The stream every connection opens: the first poll at once, the next a minute later.
const EVENTS_PATH: &str = "/api/events?interval_ms=60000";

/// Descriptors this process needs besides one per connection (the runtime, the test
/// harness, the pipes to the server).
const OWN_FDS: u64 = 256;

/// What [`run_streams`] does.
#[derive(Clone, Debug)]
pub struct StreamsOptions {
    /// The `zocalo` binary.
    pub binary: std::path::PathBuf,
    /// Connections opened and held at once, each asking for an event stream.
    pub connections: usize,
    /// `[server] max_streams` for the server; `None`: its default.
    pub max_streams: Option<usize>,
    /// Connections opened concurrently, one wave after another.
    pub wave: usize,
    /// Longest any one step may take (a connection's answer, the streams' release).
    pub step_timeout: Duration,
    /// Rounds of opening and releasing every connection after the first: a leak grows RSS
    /// by the same amount each round, the allocator's reuse of what was freed less and less.
    pub extra_rounds: usize,
}

impl StreamsOptions {
    pub fn new(binary: impl Into<std::path::PathBuf>, connections: usize) -> Self {
        Self {
            binary: binary.into(),
            connections,
            max_streams: None,
            // Hundreds of connects at once overflow the server's accept queue while its two
            // cores are busy with the streams opened before, and TCP retries the dropped ones
            // a second later: 100 at a time opens 10,000 three times faster than 500.
            wave: 100,
            step_timeout: Duration::from_secs(60),
            extra_rounds: 0,
        }
    }
}

/// What [`run_streams`] saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamsReport {
    pub connections: usize,
    /// `streams_max` from `/healthz`.
    pub streams_max: usize,
    /// Connections that got a 200 stream and its first event.
    pub streams: usize,
    /// Connections refused with 503 `too_many_streams`, `Retry-After` and closed.
    pub refused: usize,
    /// `streams_open` from `/healthz` with every connection held.
    pub streams_open_held: usize,
    /// The connection after all were held, when every place was taken: its status.
    pub one_more_status: u16,
    /// `streams_open` once every client had gone.
    pub streams_open_after: usize,
    /// A stream opened after the clients had gone got its first event.
    pub reopened: bool,
    /// Seconds to open every connection (all waves).
    pub open_secs: f64,
    /// Seconds from dropping every connection to `streams_open` 0.
    pub release_secs: f64,
    /// `/healthz` answers while the connections opened, were held and went, and the slowest.
    pub healthz_answers: usize,
    pub healthz_max_ms: f64,
    /// The server's RSS (KiB): idle (after a warm-up wave came and went), every stream open,
    /// after they went.
    pub rss_idle_kib: u64,
    pub rss_held_kib: u64,
    pub rss_after_kib: u64,
    /// (held - idle) / streams.
    pub rss_per_stream_kib: f64,
    /// The server's CPU time (user + system, ms) in the 2 s after the first round went:
    /// the work of every stream should end with its client.
    pub cpu_ms_after: u64,
    /// Per extra round ([`StreamsOptions::extra_rounds`]): its streams and the RSS with them
    /// all open.
    pub extra_round_streams: Vec<usize>,
    pub extra_round_rss_held_kib: Vec<u64>,
    /// The server's open descriptors at the same three points.
    pub fds_idle: u64,
    pub fds_held: u64,
    pub fds_after: u64,
    /// The server exited with status 0 on SIGTERM.
    pub clean_exit: bool,
    /// Lines of the server's stderr with ERROR or a panic.
    pub error_log_lines: usize,
    pub error_log_sample: Vec<String>,
}

impl StreamsReport {
    pub fn table(&self) -> String {
        format!(
            "connections {c}, streams_max {m}: {s} streams, {r} refused (503)\n\
             opened in {o:.1} s; healthz answered {h} times, slowest {hm:.0} ms\n\
             streams_open held {sh}, after {sa} (released in {rs:.1} s); one more: {om}\n\
             RSS KiB idle {ri} held {rh} after {ra}: {ps:.1} KiB per stream\n\
             fds idle {fi} held {fh} after {fa}\n\
             CPU in the 2 s after: {cpu} ms; extra rounds: streams {ss:?}, RSS KiB held {r2:?}\n",
            c = self.connections,
            m = self.streams_max,
            s = self.streams,
            r = self.refused,
            o = self.open_secs,
            h = self.healthz_answers,
            hm = self.healthz_max_ms,
            sh = self.streams_open_held,
            sa = self.streams_open_after,
            rs = self.release_secs,
            om = self.one_more_status,
            ri = self.rss_idle_kib,
            rh = self.rss_held_kib,
            ra = self.rss_after_kib,
            ps = self.rss_per_stream_kib,
            fi = self.fds_idle,
            fh = self.fds_held,
            fa = self.fds_after,
            cpu = self.cpu_ms_after,
            ss = self.extra_round_streams,
            r2 = self.extra_round_rss_held_kib,
        )
    }
}

/// Makes room for `connections` descriptors in this process and in the server it starts
/// (which inherits the limit): raises the soft `RLIMIT_NOFILE` up to the hard one if needed.
/// `Err` says why there cannot be enough (the caller skips, saying so).
pub fn fd_room(connections: usize) -> Result<u64, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = connections as u64 + OWN_FDS;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(NOFILE): {e}"))?;
    if soft >= want {
        return Ok(soft);
    }
    if hard < want {
        return Err(format!(
            "{connections} connections need {want} file descriptors in each of client and \
             server, but RLIMIT_NOFILE is {soft} (hard limit {hard}): raise it with `ulimit -n {want}`"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard)
        .map_err(|e| format!("setrlimit(NOFILE, {want}): {e}"))?;
    Ok(want)
}

/// How one connection ended up.
enum Opened {
    /// 200 and the `hello` event: held open.
    Stream(TcpStream),
    /// 503 `too_many_streams` with `Retry-After`, closed by the server.
    Refused,
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Asks `addr` for the event stream on a new connection.
async fn open_one(addr: &str, limit: Duration) -> anyhow::Result<Opened> {
    tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(addr).await.context("connect")?;
        let req = format!(
            "GET {EVENTS_PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.context("send")?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        let head_len = loop {
            if let Some(n) = head_end(&buf) {
                break n;
            }
            let n = s.read(&mut chunk).await.context("read the head")?;
            if n == 0 {
                bail!(
                    "closed before a response head: {:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
        if head.starts_with("http/1.1 200") {
            if !head.contains("content-type: text/event-stream") {
                bail!("a 200 that is not an event stream: {head}");
            }
            while !buf[head_len..].windows(12).any(|w| w == b"event: hello") {
                let n = s.read(&mut chunk).await.context("read the first event")?;
                if n == 0 {
                    bail!("the stream closed before its first event");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok(Opened::Stream(s))
        } else if head.starts_with("http/1.1 503") {
            if !head.contains("retry-after: 5") || !head.contains("connection: close") {
                bail!("a 503 without Retry-After or Connection: close: {head}");
            }
            // The server closes the connection after the body.
            loop {
                let n = s.read(&mut chunk).await.context("read the 503 body")?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[head_len..]).into_owned();
            if !body.contains("\"too_many_streams\"") {
                bail!("a 503 that is not too_many_streams: {body}");
            }
            Ok(Opened::Refused)
        } else {
            bail!("unexpected answer: {head}")
        }
    })
    .await
    .map_err(|_| anyhow!("no stream nor refusal within {} s", limit.as_secs()))?
}

/// CPU time (user + system) of process `pid` so far, in ms.
fn cpu_ms(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces, in parentheses): utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100) as u64;
    Ok(ticks * 1000 / hz)
}

/// `GET /healthz` on a connection of its own: the body and how long it took.
async fn healthz(client: &reqwest::Client, base: &str) -> anyhow::Result<(Value, Duration)> {
    let t = Instant::now();
    let r = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .context("GET /healthz")?;
    if !r.status().is_success() {
        bail!("GET /healthz: {}", r.status());
    }
    let v: Value = r.json().await.context("/healthz body")?;
    Ok((v, t.elapsed()))
}

fn streams_open(v: &Value) -> anyhow::Result<usize> {
    v["streams_open"]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| anyhow!("/healthz has no streams_open: {v}"))
}

/// Asks `/healthz` until `streams_open` is `want` (or `limit` passes): how long it took.
async fn until_open(
    client: &reqwest::Client,
    base: &str,
    want: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let (v, _) = healthz(client, base).await?;
        let open = streams_open(&v)?;
        if open == want {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            bail!(
                "streams_open stayed {open}, not {want}, for {} s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `n` connections, `wave` at a time: the streams held, and how many were refused.
async fn open_many(
    addr: &str,
    n: usize,
    wave: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<TcpStream>, usize)> {
    let mut held = Vec::with_capacity(n);
    let mut refused = 0;
    let mut left = n;
    while left > 0 {
        let now = left.min(wave.max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..now {
            let addr = addr.to_owned();
            set.spawn(async move { open_one(&addr, limit).await });
        }
        while let Some(r) = set.join_next().await {
            match r.context("a connection task panicked")?? {
                Opened::Stream(s) => held.push(s),
                Opened::Refused => refused += 1,
            }
        }
        left -= now;
    }
    Ok((held, refused))
}

/// Starts `zocalo serve` and holds `connections` event streams on it at once (see the
/// module documentation). Fails when a connection gets anything but a stream or a clean
/// 503, when `/healthz` fails, or when the streams are not released within the step
/// timeout; the caller judges the numbers.
pub async fn run_streams(opts: &StreamsOptions) -> anyhow::Result<StreamsReport> {
    fd_room(opts.connections).map_err(|e| anyhow!(e))?;
    let home = tempfile::tempdir().context("temp home")?;
    if let Some(m) = opts.max_streams {
        std::fs::write(
            home.path().join("config.toml"),
            format!("[server]\nmax_streams = {m}\n"),
        )
        .context("config.toml")?;
    }
    let mut cmd = base_command(&opts.binary, home.path(), None);
    cmd.env("ZOCALO_SERVER_TOKEN", TOKEN)
        .env("ZOCALO_EMBEDDER", "none");
    let (server, base) = start_serve(cmd).await?;
    let result = drive(opts, &server, &base).await;
    let error_log_lines = server.error_lines.load(Ordering::SeqCst);
    let error_log_sample = server.errors.lock().map(|v| v.clone()).unwrap_or_default();
    let clean_exit = server.terminate(Duration::from_secs(30)).await?;
    let mut report = result?;
    report.clean_exit = clean_exit;
    report.error_log_lines = error_log_lines;
    report.error_log_sample = error_log_sample;
    Ok(report)
}

async fn drive(opts: &StreamsOptions, server: &Proc, base: &str) -> anyhow::Result<StreamsReport> {
    let base = base.to_owned();
    let addr = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http:// address: {base}"))?
        .to_owned();
    let pid = server.pid()?;
    let client = reqwest::Client::builder()
        .timeout(opts.step_timeout)
        .build()
        .context("http client")?;
    let sample = || sample_process(pid, 0.0).ok_or_else(|| anyhow!("cannot read /proc/{pid}"));
    let mut r = StreamsReport {
        connections: opts.connections,
        ..StreamsReport::default()
    };

    // Warm-up: one wave comes and goes, so the idle numbers include what the first streams
    // allocate once (the database pool, the runtime's worker state).
    let (warm, _) = open_many(
        &addr,
        opts.wave.min(opts.connections),
        opts.wave,
        opts.step_timeout,
    )
    .await?;
    drop(warm);
    until_open(&client, &base, 0, opts.step_timeout).await?;
    let (v, _) = healthz(&client, &base).await?;
    r.streams_max = v["streams_max"]
        .as_u64()
        .ok_or_else(|| anyhow!("/healthz has no streams_max: {v}"))? as usize;
    let idle = sample()?;
    (r.rss_idle_kib, r.fds_idle) = (idle.rss_kib, idle.fds);

    // /healthz asked over and over (on connections of its own) while the rest goes on.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (_, took) = healthz(&client, &base).await?;
                times.push(took);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, anyhow::Error>(times)
        })
    };

    let t = Instant::now();
    let (held, refused) = open_many(&addr, opts.connections, opts.wave, opts.step_timeout).await?;
    r.open_secs = t.elapsed().as_secs_f64();
    r.streams = held.len();
    r.refused = refused;
    let (v, _) = healthz(&client, &base).await?;
    r.streams_open_held = streams_open(&v)?;
    let full = sample()?;
    (r.rss_held_kib, r.fds_held) = (full.rss_kib, full.fds);
    if r.streams > 0 {
        r.rss_per_stream_kib = (r.rss_held_kib as f64 - r.rss_idle_kib as f64) / r.streams as f64;
    }
    if r.streams >= r.streams_max {
        r.one_more_status = match open_one(&addr, opts.step_timeout).await? {
            Opened::Stream(_) => 200,
            Opened::Refused => 503,
        };
    }

    let t = Instant::now();
    drop(held);
    until_open(&client, &base, 0, opts.step_timeout).await?;
    r.release_secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let times = watcher.await.context("the /healthz task panicked")??;
    r.healthz_answers = times.len();
    r.healthz_max_ms = times
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);

    // The server closes its side once the stream is gone: wait for its descriptors to
    // come back to about where they were.
    let deadline = Instant::now() + opts.step_timeout;
    loop {
        let s = sample()?;
        (r.rss_after_kib, r.fds_after) = (s.rss_kib, s.fds);
        if s.fds <= r.fds_idle + 16 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (v, _) = healthz(&client, &base).await?;
    r.streams_open_after = streams_open(&v)?;
    let cpu_before = cpu_ms(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.cpu_ms_after = cpu_ms(pid)?.saturating_sub(cpu_before);
    for _ in 0..opts.extra_rounds {
        let (held, _) = open_many(&addr, opts.connections, opts.wave, opts.step_timeout).await?;
        r.extra_round_streams.push(held.len());
        r.extra_round_rss_held_kib.push(sample()?.rss_kib);
        drop(held);
        until_open(&client, &base, 0, opts.step_timeout).await?;
    }
    r.reopened = matches!(open_one(&addr, opts.step_timeout).await?, Opened::Stream(_));
    Ok(r)
}
