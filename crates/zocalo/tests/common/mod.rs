//! Running the real `zocalo` binary against local fake providers.
#![allow(dead_code, unused_macros, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use zocalo_testkit::SCRUB_ENV as SCRUB;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` (stdout and stderr piped) to its end, at most `secs` seconds. One that does not
/// end in time is killed, and the panic shows what it printed so far, so a hang in CI says
/// where it hung.
pub async fn output_within(mut cmd: tokio::process::Command, secs: u64) -> Run {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("zocalo could not be started");
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let waited = tokio::time::timeout(std::time::Duration::from_secs(secs), child.wait()).await;
    if waited.is_err() {
        let _ = child.kill().await;
    }
    let (stdout, stderr) = (stdout.await.unwrap(), stderr.await.unwrap());
    match waited {
        Ok(status) => Run {
            code: status.expect("waiting for zocalo").code().unwrap_or(-1),
            stdout,
            stderr,
        },
        Err(_) => panic!(
            "zocalo did not finish within {secs} s\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"
        ),
    }
}

/// Everything `pipe` yields, read in a task of its own (lossy UTF-8; empty without a pipe).
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run `zocalo ARGS` with a clean environment plus `env`, data home `home`.
pub async fn zocalo(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.env("ZOCALO_HOME", home)
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(cmd, 60).await
}

/// `zocalo --database-url <the test's database> ARGS` with `env`.
pub async fn zdb(
    db: &zocalo_testkit::db::TestDb,
    home: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> Run {
    let url = db.url();
    let mut all = vec!["--database-url", url.as_str()];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    zocalo(home, &env, &all).await
}

/// `zocalo --database-url <the test's database> ARGS`.
pub async fn z(db: &zocalo_testkit::db::TestDb, home: &Path, args: &[&str]) -> Run {
    let url = db.url();
    let mut all = vec!["--database-url", url.as_str()];
    all.extend_from_slice(args);
    zocalo(home, &[], &all).await
}

/// `both!(name, |db, home| async move { ... })`: the body runs twice, as `name::sqlite` on a
/// fresh SQLite file and `name::postgres` on a fresh Postgres schema, each with its own data
/// home; the database is dropped afterwards.
macro_rules! both {
    ($name:ident, |$db:ident, $home:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = zocalo_testkit::db::sqlite().await;
                let home = tempfile::tempdir().unwrap();
                {
                    let $db = &db;
                    let $home = home.path();
                    $body.await;
                }
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = zocalo_testkit::db::postgres().await;
                let home = tempfile::tempdir().unwrap();
                {
                    let $db = &db;
                    let $home = home.path();
                    $body.await;
                }
                db.cleanup().await;
            }
        }
    };
}
