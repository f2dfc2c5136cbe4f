//! `zocalo services …` and `zocalo daemon …` as processes: the daemon started on demand, a
//! service killed with SIGKILL and restarted, bad input, a crash loop that ends `failed`
//! without burning CPU, health states, the daemon killed with SIGKILL and started again
//! (definitions kept, no duplicate processes), and automations fired by the daemon alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{z, zocalo, Run};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use zocalo_testkit::db::TestDb;

/// Short timings so crash loops and stops take milliseconds.
fn write_config(home: &Path, extra: &str) {
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[daemon]\nbackoff_base_ms = 100\nbackoff_max_ms = 800\nreset_after_ms = 3000\n\
             max_retries = 4\nstop_grace_ms = 1000\nhealth_interval_ms = 200\n\
             health_timeout_ms = 1000\nunhealthy_after = 2\n{extra}"
        ),
    )
    .unwrap();
}

/// Stops the home's daemon when the test ends, even on failure, so no process outlives it.
struct Daemon {
    home: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
            .env("ZOCALO_HOME", &self.home)
            .args(["daemon", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn ok(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    r.json()
}

async fn status(db: &TestDb, home: &Path, name: &str) -> Value {
    ok(&z(db, home, &["services", "status", name, "--json"]).await)
}

async fn wait_status(
    db: &TestDb,
    home: &Path,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(db, home, name).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn group_alive(pgid: i32) -> bool {
    // Scanned by the test itself; zombies (exited, waiting for a parent to reap them) are
    // not running, and an orphan's zombie may wait on an init that never reaps.
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let f = stat_fields(pid).unwrap();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if alive(pid)
            && String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

fn pid_of(v: &Value) -> i32 {
    v["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {v:#}")) as i32
}

both!(services_through_the_daemon, |db, home| async move {
    write_config(home, "");
    let _daemon = Daemon {
        home: home.to_path_buf(),
    };

    // Bad input is refused before any daemon starts.
    let r = z(db, home, &["services", "add", "x", "--cmd", "  "]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("empty"), "{}", r.stderr);
    for args in [
        &[
            "services",
            "add",
            "x",
            "--cmd",
            "sleep 1",
            "--restart",
            "sometimes",
        ][..],
        &["services", "add", "x y", "--cmd", "sleep 1"],
        &[
            "services", "add", "x", "--cmd", "sleep 1", "--env", "NOEQUALS",
        ],
        &[
            "services",
            "add",
            "x",
            "--cmd",
            "sleep 1",
            "--health-http",
            "ftp://h/",
        ],
    ] {
        let r = z(db, home, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let st = ok(&z(db, home, &["daemon", "status", "--json"]).await);
    assert_eq!(st["running"], false, "bad input started no daemon");

    // The first good command starts the daemon.
    let r = z(
        db,
        home,
        &[
            "services",
            "add",
            "web",
            "--cmd",
            "sleep 30",
            "--restart",
            "always",
            "--env",
            "PORT=8080",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = ok(&z(db, home, &["daemon", "status", "--json"]).await);
    assert_eq!(st["running"], true);
    let daemon_pid = st["pid"].as_i64().unwrap() as i32;
    assert!(alive(daemon_pid));
    let sock = std::fs::metadata(home.join("daemon.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&sock.permissions()) & 0o777,
        0o600
    );

    let r = z(db, home, &["services", "add", "web", "--cmd", "sleep 5"]).await;
    assert_eq!(r.code, 2, "duplicate: {}", r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    for verb in ["start", "stop", "restart", "rm", "status", "logs"] {
        let r = z(db, home, &["services", verb, "nope"]).await;
        assert_eq!(r.code, 2, "{verb} of an unknown service: {}", r.stderr);
        assert!(r.stderr.contains("no service named `nope`"), "{}", r.stderr);
    }

    let s = ok(&z(db, home, &["services", "start", "web", "--json"]).await);
    assert_eq!(s["state"], "running");
    assert_eq!(
        s["env"],
        serde_json::json!(["PORT"]),
        "names only, never values"
    );
    let first = pid_of(&s);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let s = wait_status(db, home, "web", "a new pid", |s| {
        s["state"] == "running" && s["pid"].as_i64().is_some_and(|p| p as i32 != first)
    })
    .await;
    assert_eq!(s["restarts"], 1);
    assert_eq!(s["last_exit"], "killed by SIGKILL");

    let list = ok(&z(db, home, &["services", "list", "--json"]).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "web");

    let second = pid_of(&s);
    let s = ok(&z(db, home, &["services", "stop", "web", "--json"]).await);
    assert_eq!(s["state"], "stopped");
    assert!(s["pid"].is_null());
    assert!(!group_alive(second), "stop leaves no process in the group");

    // `daemon stop` ends it; a stopped service stays stopped, and status says so.
    let r = z(db, home, &["daemon", "stop"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!alive(daemon_pid));
    let st = ok(&z(db, home, &["daemon", "status", "--json"]).await);
    assert_eq!(st["running"], false);
    assert!(!home.join("daemon.sock").exists());
    let r = z(db, home, &["services", "rm", "web"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        ok(&z(db, home, &["services", "list", "--json"]).await),
        serde_json::json!([])
    );
});

both!(
    daemon_killed_then_restarted_keeps_services_once,
    |db, home| async move {
        write_config(home, "");
        let _daemon = Daemon {
            home: home.to_path_buf(),
        };
        let backend = if db.sqlite_path().is_some() { 1 } else { 2 };
        let tag = format!("{}{backend}", std::process::id() % 89 + 10);
        let (ma, mb) = (format!("sleep 7{tag}.1"), format!("sleep 7{tag}.2"));
        for (name, cmd) in [("a", &ma), ("b", &mb)] {
            let r = z(
                db,
                home,
                &[
                    "services",
                    "add",
                    name,
                    "--cmd",
                    cmd,
                    "--restart",
                    "always",
                    "--start",
                ],
            )
            .await;
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        let r = z(db, home, &["services", "add", "idle", "--cmd", "sleep 30"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let old_a = pid_of(&status(db, home, "a").await);
        let old_b = pid_of(&status(db, home, "b").await);
        let d1 = ok(&z(db, home, &["daemon", "status", "--json"]).await)["pid"]
            .as_i64()
            .unwrap() as i32;

        kill(Pid::from_raw(d1), Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(d1) {
            assert!(Instant::now() < deadline, "daemon survived SIGKILL");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            processes_with(&ma),
            vec![old_a],
            "services outlive the daemon"
        );

        let r = z(db, home, &["daemon", "start", "--json"]).await;
        let started = ok(&r);
        let d2 = started["pid"].as_i64().unwrap() as i32;
        assert_ne!(d1, d2);
        assert_eq!(started["already_running"], false);

        let list = ok(&z(db, home, &["services", "list", "--json"]).await);
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "idle"], "definitions kept");
        for (name, marker, old) in [("a", &ma, old_a), ("b", &mb, old_b)] {
            let s = wait_status(db, home, name, "running", |s| s["state"] == "running").await;
            let new = pid_of(&s);
            assert_ne!(new, old);
            assert_eq!(
                processes_with(marker),
                vec![new],
                "{name} runs exactly once"
            );
        }
        assert_eq!(status(db, home, "idle").await["state"], "stopped");
        let daemon_log = std::fs::read_to_string(home.join("logs/daemon.log")).unwrap();
        assert!(
            daemon_log.contains("left by a daemon that died"),
            "{daemon_log}"
        );

        // A second `daemon start` finds the running one.
        let again = ok(&z(db, home, &["daemon", "start", "--json"]).await);
        assert_eq!(
            (again["pid"].as_i64(), again["already_running"].as_bool()),
            (Some(i64::from(d2)), Some(true))
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loops_fail_cheaply_missing_commands_fail_and_health_shows() {
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write_config(home, "");
    let _daemon = Daemon {
        home: home.to_path_buf(),
    };
    let dbv = db;
    let db = &dbv;

    let r = z(
        db,
        home,
        &[
            "services",
            "add",
            "ghost",
            "--cmd",
            "/no/such/binary --serve",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let daemon = ok(&z(db, home, &["daemon", "status", "--json"]).await)["pid"]
        .as_i64()
        .unwrap() as i32;
    let r = z(db, home, &["services", "start", "ghost", "--json"]).await;
    assert_eq!(
        r.code, 1,
        "a start that fails is a runtime failure: {}",
        r.stderr
    );
    assert!(r.stderr.contains("service ghost failed"), "{}", r.stderr);
    let s = r.json();
    assert_eq!(s["state"], "failed");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{s:#}"
    );
    let logs = z(db, home, &["services", "logs", "ghost"]).await;
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(
        logs.stdout.contains("No such file or directory"),
        "{}",
        logs.stdout
    );

    let cpu0 = cpu_ticks(daemon);
    let t0 = Instant::now();
    let r = z(
        db,
        home,
        &[
            "services",
            "add",
            "crashy",
            "--cmd",
            "sh -c 'echo boom; exit 7'",
            "--start",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = wait_status(db, home, "crashy", "failed", |s| s["state"] == "failed").await;
    let wall = t0.elapsed();
    let cpu = Duration::from_millis((cpu_ticks(daemon) - cpu0) * 10);
    assert_eq!(s["restarts"], 4, "bounded: max_retries");
    assert!(s["error"].as_str().unwrap().contains("crash loop"), "{s:#}");
    // 100 + 200 + 400 + 800 ms of backoff.
    assert!(wall >= Duration::from_millis(1500), "{wall:?}");
    assert!(cpu * 4 < wall, "the daemon used {cpu:?} CPU in {wall:?}");
    let logs = z(db, home, &["services", "logs", "crashy", "--lines", "100"]).await;
    assert_eq!(
        logs.stdout
            .lines()
            .filter(|l| l.ends_with(" out boom"))
            .count(),
        5
    );
    let logs = z(db, home, &["services", "logs", "crashy", "--lines", "2"]).await;
    assert_eq!(logs.stdout.lines().count(), 2);

    // Health by command: `starting` until it passes, in human and JSON status.
    let dir = tempfile::tempdir().unwrap();
    let r = z(
        db,
        home,
        &[
            "services",
            "add",
            "slow",
            "--cmd",
            "sleep 30",
            "--health-cmd",
            "test -e ready",
            "--cwd",
            dir.path().to_str().unwrap(),
            "--start",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = wait_status(db, home, "slow", "a failing check", |s| {
        s["health"]["status"] == "failing"
    })
    .await;
    assert_eq!(s["state"], "starting");
    let human = z(db, home, &["services", "status", "slow"]).await;
    assert!(human.stdout.contains("slow: starting"), "{}", human.stdout);
    std::fs::write(dir.path().join("ready"), "").unwrap();
    wait_status(db, home, "slow", "running", |s| s["state"] == "running").await;
    dbv.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_fires_automations_with_no_terminal_open() {
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write_config(home, "worker = true\ntick_interval_ms = 200\n");
    let _daemon = Daemon {
        home: home.to_path_buf(),
    };
    let out = home.join("fired.txt");
    let start = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let r = z(
        &db,
        home,
        &[
            "schedule",
            "add",
            "ping",
            "--rrule",
            "FREQ=DAILY",
            "--start",
            &start,
            "--tz",
            "UTC",
            "--shell",
            &format!("echo \"$ZOCALO_SCHEDULE\" >> {}", out.display()),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = z(&db, home, &["daemon", "start"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Nothing but the daemon runs now: it must tick, and its worker run the job.
    let deadline = Instant::now() + Duration::from_secs(20);
    let runs = loop {
        let runs = ok(&z(&db, home, &["schedule", "runs", "ping", "--json"]).await);
        if runs
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["status"] == "succeeded"))
        {
            break runs;
        }
        assert!(Instant::now() < deadline, "no run succeeded: {runs:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ping\n");
    let st = ok(&z(&db, home, &["daemon", "status", "--json"]).await);
    assert_eq!(
        (st["scheduler"].as_bool(), st["worker"].as_bool()),
        (Some(true), Some(true))
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_second_foreground_daemon_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write_config(home, "scheduler = false\n");
    let _daemon = Daemon {
        home: home.to_path_buf(),
    };
    let r = zocalo(home, &[], &["daemon", "start"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = zocalo(home, &[], &["daemon", "run"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already runs"), "{}", r.stderr);
    let r = zocalo(home, &[], &["daemon", "stop", "--json"]).await;
    assert_eq!(r.json()["stopped"], true);
    let r = zocalo(home, &[], &["daemon", "stop", "--json"]).await;
    assert_eq!(r.json()["stopped"], false, "nothing left to stop");
}
