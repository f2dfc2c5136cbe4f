//! A real `zocalo serve` process on a loopback port, for the server's tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const TOKEN: &str = "test-token-0123456789abcdef";

use zocalo_testkit::SCRUB_ENV as SCRUB;

pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// What the server printed on stderr before it listened.
    pub banner: Vec<String>,
    /// Every stderr line after that, as it comes.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .delete(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("the server has exited") as i32
    }

    /// SIGTERM, then waits (at most `within`) for the server to exit; its exit status.
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the server did not exit after SIGTERM")
            .unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// `zocalo [--database-url DB] serve --bind 127.0.0.1:0` with a clean environment plus `env`;
/// waits for the "listening on" line.
pub async fn start(home: &Path, db_url: Option<&str>, env: &[(&str, String)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.env("ZOCALO_HOME", home)
        .env("ZOCALO_EMBEDDER", "none")
        .env("ZOCALO_SERVER_TOKEN", TOKEN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(url) = db_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("zocalo serve could not be started");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut banner = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("zocalo serve exited before listening: {banner:?}");
    })
    .await
    .expect("zocalo serve did not listen within 60 s");
    // Keep draining stderr so the server never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if std::env::var_os("ZOCALO_TEST_SHOW_SERVER_LOG").is_some() {
                eprintln!("[serve] {line}");
            }
            kept.lock().unwrap().push(line);
        }
    });
    Server {
        child,
        url,
        banner,
        log,
    }
}

/// A test-only tool from the environment (see ./x), or `None` with the reason printed;
/// with ZOCALO_REQUIRE_TOOLS=1 a missing tool fails the test instead.
pub fn tool(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => Some(PathBuf::from(v)),
        None => {
            if std::env::var("ZOCALO_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                panic!("{var} is not set and ZOCALO_REQUIRE_TOOLS=1: run ./x test (it installs the pinned tools)");
            }
            eprintln!("SKIPPED: {var} is not set (./x test installs the pinned tool)");
            None
        }
    }
}

/// Runs a test client (a Python or Node script against the server) that prints one JSON
/// document; fails the test, with the client's stderr, if it runs past `within` or exits
/// non-zero.
pub async fn client_json(cmd: &mut Command, within: Duration) -> serde_json::Value {
    let script = cmd
        .as_std()
        .get_args()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the client {script} did not finish in {within:?}"))
        .expect("the client could not start");
    assert!(
        out.status.success(),
        "client {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client printed no JSON document")
}

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}
