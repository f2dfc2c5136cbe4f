//! A tiny web server on 127.0.0.1 for browser tests: pages the test defines, plus the ways
//! servers misbehave (reset connections, answers that never come).
//!
//! Plain HTTP/1.1 over a tokio `TcpListener`, one response per connection, so a test controls
//! every byte Chromium sees.
//!
//! ```ignore
//! let server = PageServer::start().await;
//! server.page("/", "<title>Home</title><button>Go</button>");
//! server.route("/broken", Route::Reset);
//! browser.goto(&server.url("/"))...
//! ```
//!
//! Built in: `/echo?...` answers a page whose `<pre id="echo">` holds the query string
//! (how a test sees what a submitted GET form sent); unknown paths answer 404.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the server answers one path.
#[derive(Clone, Debug)]
pub enum Route {
    /// `status` with an HTML body.
    Html(u16, String),
    /// Accept the connection, read the request, close without a byte: Chromium reports
    /// `net::ERR_EMPTY_RESPONSE`.
    Reset,
    /// Read the request and never answer.
    Stall,
}

pub struct PageServer {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    pub async fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, q) = (routes.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (routes, requests) = (r.clone(), q.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let target = head
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("/")
                        .to_owned();
                    if let Ok(mut q) = requests.lock() {
                        q.push(target.clone());
                    }
                    let (path, query) = match target.split_once('?') {
                        Some((p, q)) => (p.to_owned(), q.to_owned()),
                        None => (target.clone(), String::new()),
                    };
                    let route = routes.lock().ok().and_then(|r| r.get(&path).cloned());
                    let (status, body) = match route {
                        Some(Route::Html(status, body)) => (status, body),
                        Some(Route::Reset) => return,
                        Some(Route::Stall) => {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                            return;
                        }
                        None if path == "/echo" => (
                            200,
                            format!(
                                "<!doctype html><title>Echo</title><pre id=\"echo\">{}</pre>",
                                escape(&query)
                            ),
                        ),
                        None => (
                            404,
                            "<!doctype html><title>Not found</title><h1>Not found</h1>".into(),
                        ),
                    };
                    let reason = match status {
                        200 => "OK",
                        404 => "Not Found",
                        500 => "Internal Server Error",
                        _ => "Status",
                    };
                    let response = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        PageServer {
            addr,
            routes,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `html` with status 200 at `path`.
    pub fn page(&self, path: &str, html: &str) {
        self.route(path, Route::Html(200, html.to_owned()));
    }

    pub fn route(&self, path: &str, route: Route) {
        if let Ok(mut r) = self.routes.lock() {
            r.insert(path.to_owned(), route);
        }
    }

    /// Request targets (path and query) in the order they arrived.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A test that needs a tool (Chromium, a Python SDK...) that is missing: with
/// `ZOCALO_REQUIRE_TOOLS=1` (set by `./x test`) that is a failure; otherwise the test prints
/// why it skips and returns.
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("ZOCALO_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{test}: {reason} (ZOCALO_REQUIRE_TOOLS=1, so this fails instead of skipping)");
    }
    eprintln!("skipping {test}: {reason}");
}

/// Processes (pid, command line) whose environment holds `KEY=VALUE`: how a test finds every
/// process a command started, Chromium's helpers included, whatever they were re-parented
/// to. Zombies (already dead, not yet reaped) are not listed. Linux only.
pub fn processes_with_env(key: &str, value: &str) -> Vec<(u32, String)> {
    let needle = format!("{key}={value}");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state letter follows the parenthesised command name.
        let zombie = state
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.trim_start().starts_with('Z') || rest.trim_start().starts_with('X')
            })
            .unwrap_or(false);
        if zombie {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        found.push((pid, cmdline));
    }
    found
}
