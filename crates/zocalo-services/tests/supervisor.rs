//! The supervisor with real processes on real SQLite and PostgreSQL: restarts after SIGKILL,
//! crash loops that end `failed`, health transitions, stops that leave nothing behind,
//! commands that cannot start, log capture and rotation, and taking over from a supervisor
//! that died. Timings are shortened through `SupervisorConfig` so the suite stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zocalo_services::{
    HealthCheck, RestartPolicy, ServiceSpec, ServiceState, ServiceStatus, ServicesError,
    Supervisor, SupervisorConfig,
};
use zocalo_store::Store;
use zocalo_testkit::both_backends;

fn config(dir: &Path) -> SupervisorConfig {
    let mut c = SupervisorConfig::new(dir.join("logs"), dir);
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(400);
    c.reset_after = Duration::from_secs(2);
    c.max_retries = 3;
    c.stop_grace = Duration::from_millis(700);
    c.health_interval = Duration::from_millis(200);
    c.health_timeout = Duration::from_secs(1);
    c.unhealthy_after = 2;
    c.log_max_bytes = 2048;
    c.log_keep = 2;
    c
}

fn spec(name: &str, cmd: &str, restart: RestartPolicy) -> ServiceSpec {
    let mut s = ServiceSpec::new(name, cmd);
    s.restart = restart;
    s
}

async fn wait_for(
    sup: &Supervisor,
    name: &str,
    what: &str,
    pred: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = sup.status(name).await.unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any live process is left in group `pgid`.
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

/// Live processes whose command line contains `marker` (read from /proc by the test itself).
fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !zombie && text.contains(marker) {
            found.push(pid);
        }
    }
    found
}

both_backends!(
    sigkill_restarts_with_a_new_pid_and_stop_empties_the_group,
    |store| async move {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(store.clone(), config(dir.path()));
        sup.add(spec("sleeper", "sleep 30", RestartPolicy::Always))
            .await
            .unwrap();
        let s = sup.start("sleeper").await.unwrap();
        assert_eq!(s.state, ServiceState::Running);
        assert_eq!(s.desired, "running");
        let first = s.pid.unwrap();
        assert_eq!(s.restarts, 0);

        kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
        let s = wait_for(&sup, "sleeper", "a new pid", |s| {
            s.state == ServiceState::Running && s.pid.is_some_and(|p| p != first)
        })
        .await;
        assert_eq!(s.restarts, 1);
        assert_eq!(s.last_exit.as_deref(), Some("killed by SIGKILL"));
        assert!(!group_alive(first), "the old group is gone");

        let second = s.pid.unwrap();
        let s = sup.stop("sleeper").await.unwrap();
        assert_eq!(s.state, ServiceState::Stopped);
        assert_eq!(s.pid, None);
        assert_eq!(s.desired, "stopped");
        assert!(!group_alive(second), "stop leaves no process in the group");

        // Restart counts start over with a start by hand; restart gives a new process.
        let s = sup.start("sleeper").await.unwrap();
        let third = s.pid.unwrap();
        let s = sup.restart("sleeper").await.unwrap();
        assert!(s.pid.is_some_and(|p| p != third));
        assert!(!group_alive(third));
        assert_eq!(s.restarts, 0);

        // rm stops it and forgets it.
        let pid = s.pid.unwrap();
        sup.rm("sleeper").await.unwrap();
        assert!(!group_alive(pid));
        assert!(matches!(
            sup.status("sleeper").await,
            Err(ServicesError::NotFound(_))
        ));
        sup.shutdown().await;
    }
);

both_backends!(
    bad_input_is_refused_before_anything_is_stored,
    |store| async move {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(store.clone(), config(dir.path()));
        sup.add(spec("a", "sleep 1", RestartPolicy::Never))
            .await
            .unwrap();
        let dup = sup
            .add(spec("a", "sleep 2", RestartPolicy::Never))
            .await
            .unwrap_err();
        assert!(
            matches!(dup, ServicesError::Duplicate(_)) && dup.is_usage(),
            "{dup}"
        );
        for bad in [
            spec("b", "  ", RestartPolicy::Never),
            spec("b", "echo 'x", RestartPolicy::Never),
            spec("../b", "true", RestartPolicy::Never),
        ] {
            let e = sup.add(bad).await.unwrap_err();
            assert!(e.is_usage(), "{e}");
        }
        assert_eq!(sup.list().await.unwrap().len(), 1, "nothing half-written");
        for e in [
            sup.start("nope").await.unwrap_err(),
            sup.stop("nope").await.unwrap_err(),
            sup.restart("nope").await.unwrap_err(),
            sup.rm("nope").await.unwrap_err(),
        ] {
            assert!(
                matches!(e, ServicesError::NotFound(_)) && e.is_usage(),
                "{e}"
            );
        }
        sup.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_and_ends_failed() {
    let db = zocalo_testkit::db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let sup = Supervisor::new(db.store.clone(), cfg.clone());
    sup.add(spec(
        "crashy",
        "sh -c 'echo dying; exit 3'",
        RestartPolicy::OnFailure,
    ))
    .await
    .unwrap();
    let t0 = Instant::now();
    sup.start("crashy").await.unwrap();
    let s = wait_for(&sup, "crashy", "failed", |s| {
        s.state == ServiceState::Failed
    })
    .await;
    let elapsed = t0.elapsed();
    assert_eq!(s.restarts, cfg.max_retries, "bounded restarts");
    assert_eq!(s.last_exit.as_deref(), Some("exited with code 3"));
    assert!(s.error.as_deref().unwrap().contains("crash loop"), "{s:?}");
    // The restarts waited 50 + 100 + 200 ms of backoff: no spinning.
    let backoff: Duration = (1..=cfg.max_retries).map(|n| cfg.backoff(n)).sum();
    assert!(elapsed >= backoff, "{elapsed:?} < {backoff:?}");
    // It stays failed: no further starts.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = sup.status("crashy").await.unwrap();
    assert_eq!(
        (later.state, later.restarts),
        (ServiceState::Failed, cfg.max_retries)
    );
    let log = sup.logs("crashy", 100).await.unwrap();
    assert_eq!(
        log.iter().filter(|l| l.ends_with(" out dying")).count() as u32,
        cfg.max_retries + 1
    );

    // Policies: never restarts nothing; on-failure leaves a clean exit stopped.
    sup.add(spec("once", "false", RestartPolicy::Never))
        .await
        .unwrap();
    sup.start("once").await.unwrap();
    let s = wait_for(&sup, "once", "failed", |s| s.state == ServiceState::Failed).await;
    assert_eq!(
        (s.restarts, s.last_exit.as_deref()),
        (0, Some("exited with code 1"))
    );
    sup.add(spec("ok", "true", RestartPolicy::OnFailure))
        .await
        .unwrap();
    sup.start("ok").await.unwrap();
    let s = wait_for(&sup, "ok", "stopped", |s| s.state == ServiceState::Stopped).await;
    assert_eq!(
        (s.restarts, s.last_exit.as_deref()),
        (0, Some("exited with code 0"))
    );
    sup.add(spec("again", "true", RestartPolicy::Always))
        .await
        .unwrap();
    sup.start("again").await.unwrap();
    let s = wait_for(&sup, "again", "failed", |s| s.state == ServiceState::Failed).await;
    assert_eq!(
        s.restarts, cfg.max_retries,
        "always restarts clean exits too, bounded"
    );
    sup.shutdown().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_fails_with_the_os_error() {
    let db = zocalo_testkit::db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(db.store.clone(), config(dir.path()));
    sup.add(spec(
        "ghost",
        "/no/such/program --flag",
        RestartPolicy::Always,
    ))
    .await
    .unwrap();
    let s = sup.start("ghost").await.unwrap();
    assert_eq!(s.state, ServiceState::Failed);
    let err = s.error.unwrap();
    assert!(err.contains("No such file or directory"), "{err}");
    let log = sup.logs("ghost", 10).await.unwrap();
    assert!(
        log.iter().any(|l| l.contains("No such file or directory")),
        "{log:?}"
    );
    // Stopping it by hand clears the failure; it stays defined.
    let s = sup.stop("ghost").await.unwrap();
    assert_eq!((s.state, s.error), (ServiceState::Stopped, None));
    // A missing working directory is an OS error too.
    let mut s = spec("nodir", "sleep 5", RestartPolicy::Always);
    let gone = tempfile::tempdir().unwrap();
    s.cwd = Some(gone.path().to_path_buf());
    sup.add(s).await.unwrap();
    drop(gone);
    let s = sup.start("nodir").await.unwrap();
    assert_eq!(s.state, ServiceState::Failed);
    assert!(s.error.unwrap().contains("os error"));
    sup.shutdown().await;
    db.cleanup().await;
}

/// A loopback HTTP server answering 200 while `healthy` is set, 503 otherwise.
async fn health_server(healthy: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let status = if healthy.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let resp =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/healthz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_move_starting_to_running_and_to_unhealthy() {
    let db = zocalo_testkit::db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(db.store.clone(), config(dir.path()));
    let healthy = Arc::new(AtomicBool::new(false));
    let url = health_server(healthy.clone()).await;

    let mut web = spec("web", "sleep 30", RestartPolicy::Always);
    web.health = Some(HealthCheck::Http(url.clone()));
    sup.add(web).await.unwrap();
    let s = sup.start("web").await.unwrap();
    assert_eq!(s.state, ServiceState::Starting);
    // Several failing checks later it is still starting, with the reason shown.
    let s = wait_for(&sup, "web", "a failing check", |s| {
        s.health.as_ref().and_then(|h| h.status.as_deref()) == Some("failing")
    })
    .await;
    assert_eq!(s.state, ServiceState::Starting);
    assert!(s.health.unwrap().error.unwrap().contains("503"));
    healthy.store(true, Ordering::SeqCst);
    let s = wait_for(&sup, "web", "running", |s| s.state == ServiceState::Running).await;
    assert_eq!(s.health.unwrap().status.as_deref(), Some("passing"));
    healthy.store(false, Ordering::SeqCst);
    wait_for(&sup, "web", "unhealthy", |s| {
        s.state == ServiceState::Unhealthy
    })
    .await;
    healthy.store(true, Ordering::SeqCst);
    let s = wait_for(&sup, "web", "running again", |s| {
        s.state == ServiceState::Running
    })
    .await;
    assert_eq!(s.restarts, 0, "unhealthy is reported, not restarted");

    // A command check: ready once the file it tests exists (run in the service's cwd).
    let mut worker = spec("worker", "sleep 30", RestartPolicy::Always);
    worker.health = Some(HealthCheck::Cmd("test -e ready".into()));
    worker.cwd = Some(dir.path().to_path_buf());
    sup.add(worker).await.unwrap();
    assert_eq!(
        sup.start("worker").await.unwrap().state,
        ServiceState::Starting
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sup.status("worker").await.unwrap().state,
        ServiceState::Starting
    );
    std::fs::write(dir.path().join("ready"), "").unwrap();
    wait_for(&sup, "worker", "running", |s| {
        s.state == ServiceState::Running
    })
    .await;
    sup.shutdown().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_what_ignores_sigterm_after_the_grace() {
    let db = zocalo_testkit::db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let sup = Supervisor::new(db.store.clone(), cfg.clone());
    // The shell and its background children ignore SIGTERM.
    sup.add(spec(
        "stubborn",
        "sh -c 'trap \"\" TERM; sleep 31 & sleep 32 & echo up; wait'",
        RestartPolicy::Always,
    ))
    .await
    .unwrap();
    let s = sup.start("stubborn").await.unwrap();
    let pgid = s.pid.unwrap();
    wait_for(&sup, "stubborn", "output", |_| {
        std::fs::read_to_string(sup.log_path("stubborn")).is_ok_and(|l| l.contains("out up"))
    })
    .await;
    assert!(group_alive(pgid));
    let t0 = Instant::now();
    let s = sup.stop("stubborn").await.unwrap();
    assert!(
        t0.elapsed() >= cfg.stop_grace,
        "SIGKILL only after the grace period"
    );
    assert_eq!(s.state, ServiceState::Stopped);
    assert!(!group_alive(pgid), "no process left in the group");

    // A leader that exits leaves no children behind before the restart either.
    sup.add(spec(
        "forker",
        "sh -c 'sleep 33 & exit 1'",
        RestartPolicy::Never,
    ))
    .await
    .unwrap();
    let pgid = sup.start("forker").await.unwrap().pid.unwrap();
    wait_for(&sup, "forker", "failed", |s| {
        s.state == ServiceState::Failed
    })
    .await;
    assert!(!group_alive(pgid));
    sup.shutdown().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_timestamped_output_and_rotate_by_size() {
    let db = zocalo_testkit::db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(db.store.clone(), config(dir.path()));
    sup.add(spec(
        "chatty",
        "sh -c 'i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; sleep 0.3; echo problem >&2; sleep 30'",
        RestartPolicy::Always,
    ))
    .await
    .unwrap();
    sup.start("chatty").await.unwrap();
    wait_for(&sup, "chatty", "the last line", |_| {
        std::fs::read_to_string(sup.log_path("chatty")).is_ok_and(|l| l.contains("err problem"))
    })
    .await;
    let path = sup.log_path("chatty");
    let rotated = |n: usize| {
        let mut p = path.clone().into_os_string();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    for p in [path.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 2048, "{} is {len} bytes", p.display());
    }
    assert!(!rotated(3).exists());
    let lines = sup.logs("chatty", 5).await.unwrap();
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| {
            let (ts, rest) = l.split_once(' ').unwrap();
            chrono::DateTime::parse_from_rfc3339(ts).unwrap();
            rest
        })
        .collect();
    assert_eq!(
        texts,
        [
            "out line 296",
            "out line 297",
            "out line 298",
            "out line 299",
            "err problem"
        ]
    );
    // Only the service's own output: every line is one of its lines.
    for l in sup.logs("chatty", 1000).await.unwrap() {
        let rest = l.split_once(' ').unwrap().1;
        assert!(
            rest.starts_with("out line ") || rest == "err problem",
            "{l}"
        );
    }
    sup.shutdown().await;
    db.cleanup().await;
}

/// Runs a supervisor on a runtime of its own and then drops the runtime without any cleanup:
/// its processes outlive it, like those of a daemon killed with SIGKILL.
fn start_and_abandon(store: Store, cfg: SupervisorConfig, name: &str) -> i32 {
    let name = name.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pid = rt.block_on(async {
            let sup = Supervisor::new(store, cfg);
            sup.start(&name).await.unwrap().pid.unwrap()
        });
        rt.shutdown_background();
        pid
    })
    .join()
    .unwrap()
}

both_backends!(
    a_new_supervisor_stops_leftovers_and_never_duplicates,
    |store| async move {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        // Unique per test process and backend (both backends run at once in this process).
        let backend = if store.backend() == zocalo_store::Backend::Sqlite {
            1
        } else {
            2
        };
        let marker = format!(
            "{}.{}{backend}",
            40 + std::process::id() % 50,
            std::process::id() % 997
        );
        let sup = Supervisor::new(store.clone(), cfg.clone());
        sup.add(spec(
            "keeper",
            &format!("sleep {marker}"),
            RestartPolicy::Always,
        ))
        .await
        .unwrap();
        sup.add(spec("idle", "sleep 30", RestartPolicy::Always))
            .await
            .unwrap();
        drop(sup);
        let old = start_and_abandon(store.clone(), cfg.clone(), "keeper");
        assert_eq!(
            processes_with(&format!("sleep {marker}")),
            vec![old],
            "left running"
        );

        let sup = Supervisor::new(store.clone(), cfg.clone());
        let report = sup.resume().await.unwrap();
        assert_eq!(report.stopped_leftovers, vec![("keeper".to_owned(), old)]);
        assert_eq!(report.started, vec!["keeper".to_owned()]);
        let s = sup.status("keeper").await.unwrap();
        assert_eq!(s.state, ServiceState::Running);
        let new = s.pid.unwrap();
        assert_ne!(new, old);
        assert_eq!(
            processes_with(&format!("sleep {marker}")),
            vec![new],
            "exactly one"
        );
        assert_eq!(
            sup.status("idle").await.unwrap().state,
            ServiceState::Stopped,
            "not wanted"
        );

        // A recorded pid now used by an unrelated process is left alone.
        sup.stop("keeper").await.unwrap();
        let mut unrelated = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut row = sup.services().get("keeper").await.unwrap();
        row.runtime.pid = Some(unrelated.id().unwrap() as i32);
        row.runtime.pid_start = Some(1); // not its start time
        row.runtime.pid_boot = Some(zocalo_services::procs::boot_id());
        sup.services()
            .save_runtime("keeper", &row.runtime)
            .await
            .unwrap();
        let sup2 = Supervisor::new(store.clone(), cfg.clone());
        let report = sup2.resume().await.unwrap();
        assert!(report.stopped_leftovers.is_empty());
        assert!(unrelated.try_wait().unwrap().is_none(), "still running");
        unrelated.kill().await.unwrap();
        sup.shutdown().await;
        sup2.shutdown().await;
    }
);
