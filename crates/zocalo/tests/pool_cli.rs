//! `zocalo pool` and `zocalo worker` end to end as real processes, on SQLite and PostgreSQL:
//! bad input, draining, several workers never running a job twice, a worker killed with
//! SIGKILL mid-job, cancel, retries, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zocalo_testkit::db::TestDb;

use common::z;

/// A `zocalo worker` process left running.
fn spawn_worker(db: &TestDb, home: &Path, args: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    cmd.env_remove("ZOCALO_DATABASE_URL")
        .env_remove("ZOCALO_LOG")
        .env("ZOCALO_HOME", home)
        .arg("--database-url")
        .arg(db.url())
        .arg("worker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start zocalo worker")
}

async fn wait_exit(child: tokio::process::Child, secs: u64) -> common::Run {
    tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
        .await
        .expect("worker did not exit in time")
        .expect("worker output")
        .into()
}

async fn stats(db: &TestDb, home: &Path) -> Value {
    let r = z(db, home, &["pool", "stats", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
}

async fn show(db: &TestDb, home: &Path, id: &str) -> Value {
    let r = z(db, home, &["pool", "show", id, "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
}

/// Polls `cond` on the job until it holds (or fails the test after `secs`).
async fn wait_job(
    db: &TestDb,
    home: &Path,
    id: &str,
    secs: u64,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let j = show(db, home, id).await;
        if cond(&j) {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "job never got there: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(db: &TestDb, home: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["pool", "submit"];
    all.extend_from_slice(args);
    all.push("--json");
    let r = z(db, home, &all).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn shell(script: &str) -> String {
    json!({"cmd": ["sh", "-c", script]}).to_string()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

both!(
    bad_input_exits_2_and_enqueues_nothing,
    |db, home| async move {
        let cases: &[(&[&str], &str)] = &[
            (&["pool", "submit", "bogus"], "unknown job kind `bogus`"),
            (
                &["pool", "submit", "noop", "--payload", "{nope"],
                "--payload is not valid JSON",
            ),
            (
                &["pool", "submit", "shell", "--payload", r#"{"cmd":"ls"}"#],
                "bad payload for `shell` job",
            ),
            (&["pool", "submit", "shell"], "bad payload for `shell` job"),
            (
                &["pool", "submit", "shell", "--payload", r#"{"cmd":[]}"#],
                "`cmd` is empty",
            ),
            (
                &["pool", "submit", "ask", "--payload", r#"{"text":"hi"}"#],
                "bad payload for `ask` job",
            ),
            (
                &["pool", "submit", "noop", "--count", "0"],
                "--count 0 out of range",
            ),
            (
                &["pool", "submit", "noop", "--priority", "1001"],
                "priority 1001 out of range",
            ),
            (
                &["pool", "submit", "noop", "--priority", "-2000"],
                "priority -2000 out of range",
            ),
            (
                &["pool", "submit", "noop", "--labels", "a,,b"],
                "invalid labels",
            ),
            (
                &["pool", "submit", "noop", "--max-attempts", "0"],
                "max attempts 0 out of range",
            ),
            (
                &["pool", "jobs", "--state", "done"],
                "unknown job state `done`",
            ),
            (&["pool", "cancel", "job_nope"], "no job job_nope"),
            (
                &["worker", "--concurrency", "0", "--drain"],
                "concurrency 0 out of range",
            ),
        ];
        for (args, want) in cases {
            let r = z(db, home, args).await;
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        }
        let s = stats(db, home).await;
        assert_eq!(
            s,
            json!({"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "dead": 0, "cancelled": 0})
        );
    }
);

both!(submit_key_and_drain, |db, home| async move {
    let ids = submit(db, home, &["noop", "--count", "5"]).await;
    assert_eq!(ids.len(), 5);
    let once = submit(db, home, &["noop", "--key", "k1"]).await;
    let again = submit(db, home, &["noop", "--key", "k1"]).await;
    assert_eq!(once, again);
    assert_eq!(stats(db, home).await["queued"], 6);
    let w = spawn_worker(db, home, &["--drain", "--concurrency", "3", "--json"]);
    let r = wait_exit(w, 30).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["succeeded"], 6);
    let s = stats(db, home).await;
    assert_eq!(
        (s["succeeded"].as_i64(), s["queued"].as_i64()),
        (Some(6), Some(0))
    );
    let nodes = z(db, home, &["pool", "nodes", "--json"]).await.json();
    assert_eq!(nodes[0]["state"], "stopped");
    assert_eq!(nodes[0]["capacity"], 3);
});

both!(workers_never_run_a_job_twice, |db, home| async move {
    let out = home.join("ran.txt");
    let script = format!("echo $ZOCALO_JOB_ID >> {}", out.display());
    let ids = submit(
        db,
        home,
        &["shell", "--payload", &shell(&script), "--count", "60"],
    )
    .await;
    let workers: Vec<_> = (0..3)
        .map(|_| {
            spawn_worker(
                db,
                home,
                &["--drain", "--concurrency", "4", "--poll-ms", "20"],
            )
        })
        .collect();
    for w in workers {
        let r = wait_exit(w, 60).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let ran = lines(&out);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in &ran {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    assert_eq!(ran.len(), 60, "some job ran twice or never");
    for id in &ids {
        assert_eq!(counts.get(id.as_str()), Some(&1), "{id}");
    }
    assert_eq!(stats(db, home).await["succeeded"], 60);
});

both!(
    killed_worker_job_is_reclaimed_and_finished_elsewhere,
    |db, home| async move {
        let started = home.join("started.txt");
        let done = home.join("done.txt");
        let pids = home.join("pids.txt");
        let script = format!(
        "echo $$ >> {}; echo $ZOCALO_JOB_ID-$ZOCALO_JOB_ATTEMPT >> {}; sleep 1; echo $ZOCALO_JOB_ID >> {}",
        pids.display(),
        started.display(),
        done.display()
    );
        let id = submit(db, home, &["shell", "--payload", &shell(&script)])
            .await
            .remove(0);
        let a = spawn_worker(db, home, &["--node-timeout", "1"]);
        let a_pid = i32::try_from(a.id().unwrap()).unwrap();
        let t = Instant::now();
        while lines(&started).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the job never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The machine dies: the worker and the job it was running.
        sigkill(a_pid);
        for p in lines(&pids) {
            sigkill(p.parse().unwrap());
        }
        let r = wait_exit(a, 10).await;
        assert_ne!(r.code, 0);
        assert_eq!(show(db, home, &id).await["state"], "running");

        let b = spawn_worker(
            db,
            home,
            &["--drain", "--node-timeout", "1", "--poll-ms", "50"],
        );
        let r = wait_exit(b, 30).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let job = show(db, home, &id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 2);
        assert_eq!(lines(&started), vec![format!("{id}-1"), format!("{id}-2")]);
        assert_eq!(lines(&done), vec![id.clone()]);
        let nodes = z(db, home, &["pool", "nodes", "--json"]).await.json();
        let states: Vec<&str> = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"lost") && states.contains(&"stopped"),
            "{nodes}"
        );
    }
);

both!(cancel_queued_and_running, |db, home| async move {
    // Queued: nobody has the label, so it waits; cancelled at once.
    let queued = submit(db, home, &["noop", "--labels", "nowhere"])
        .await
        .remove(0);
    let r = z(db, home, &["pool", "cancel", &queued, "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json(),
        json!({"id": queued, "cancelled": true, "was": "queued"})
    );
    assert_eq!(show(db, home, &queued).await["state"], "cancelled");

    // Running: the worker stops its process group.
    let pids = home.join("pids.txt");
    let script = format!("echo $$ >> {}; sleep 30", pids.display());
    let id = submit(db, home, &["shell", "--payload", &shell(&script)])
        .await
        .remove(0);
    let w = spawn_worker(db, home, &["--node-timeout", "0.6"]);
    wait_job(db, home, &id, 20, |j| j["state"] == "running").await;
    let t = Instant::now();
    while lines(&pids).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid: i32 = lines(&pids)[0].parse().unwrap();
    let r = z(db, home, &["pool", "cancel", &id, "--json"]).await;
    assert_eq!(r.json()["was"], "running");
    let j = wait_job(db, home, &id, 15, |j| !j["finished_at"].is_null()).await;
    assert_eq!(j["state"], "cancelled");
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(!alive, "the cancelled job's process is still running");
    // Graceful stop of the idle worker.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(w.id().unwrap()).unwrap()),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let r = wait_exit(w, 15).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1 cancelled"), "{}", r.stderr);
});

both!(
    failing_job_retries_with_backoff_then_dies,
    |db, home| async move {
        let tries = home.join("tries.txt");
        let script = format!("date +%s%N >> {}; echo nope >&2; exit 7", tries.display());
        let id = submit(
            db,
            home,
            &["shell", "--payload", &shell(&script), "--max-attempts", "3"],
        )
        .await
        .remove(0);
        let w = spawn_worker(
            db,
            home,
            &["--drain", "--retry-base-ms", "300", "--poll-ms", "20"],
        );
        let r = wait_exit(w, 30).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let job = show(db, home, &id).await;
        assert_eq!(job["state"], "dead", "{job}");
        assert_eq!(job["attempts"], 3);
        assert!(job["error"].as_str().unwrap().contains("nope"), "{job}");
        let t: Vec<i64> = lines(&tries).iter().map(|l| l.parse().unwrap()).collect();
        assert_eq!(t.len(), 3);
        // Backoff: at least 150 ms, then at least 300 ms (half of 300 and 600, the jitter floor).
        assert!(t[1] - t[0] >= 150_000_000, "{t:?}");
        assert!(t[2] - t[1] >= 300_000_000, "{t:?}");
        assert_eq!(stats(db, home).await["dead"], 1);
        // A program that cannot start fails for good, without retries.
        let id = submit(
            db,
            home,
            &["shell", "--payload", r#"{"cmd":["/nonexistent/x"]}"#],
        )
        .await
        .remove(0);
        let r = wait_exit(spawn_worker(db, home, &["--drain"]), 30).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let job = show(db, home, &id).await;
        assert_eq!(
            (job["state"].as_str(), job["attempts"].as_i64()),
            (Some("failed"), Some(1))
        );
    }
);

both!(sigterm_hands_running_jobs_back, |db, home| async move {
    let id = submit(db, home, &["shell", "--payload", &shell("sleep 30")])
        .await
        .remove(0);
    let w = spawn_worker(
        db,
        home,
        &["--shutdown-grace", "0.3", "--node-timeout", "3"],
    );
    wait_job(db, home, &id, 20, |j| j["state"] == "running").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(w.id().unwrap()).unwrap()),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let r = wait_exit(w, 20).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1 handed back"), "{}", r.stderr);
    let job = show(db, home, &id).await;
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
});

/// A worker process with a database URL of our choosing.
fn spawn_worker_url(url: &str, home: &Path, args: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    cmd.env_remove("ZOCALO_DATABASE_URL")
        .env_remove("ZOCALO_LOG")
        .env("ZOCALO_HOME", home)
        .arg("--database-url")
        .arg(url)
        .arg("worker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start zocalo worker")
}

/// Drops every Postgres connection whose application_name is `app` (as a database restart
/// would, without disturbing anyone else's connections).
async fn drop_pg_connections(app: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&zocalo_testkit::db::pg_url())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(app)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

// The issue's chaos run: 300 shell jobs, two workers, one SIGKILLed mid-run, another started.
// Every job succeeds; a job runs twice only if it was in flight on the killed worker. On
// Postgres the workers' connections are also cut twice mid-run (a database restart as the
// workers see it): they reconnect and finish.
both!(
    chaos_300_jobs_sigkill_and_connection_loss,
    |db, home| async move {
        let out = home.join("ran.txt");
        let script = format!("echo $ZOCALO_JOB_ID >> {}; sleep 0.05", out.display());
        let ids = submit(
            db,
            home,
            &["shell", "--payload", &shell(&script), "--count", "300"],
        )
        .await;
        let app = format!("zocalo_chaos_{}", db.pg_schema().unwrap_or("sqlite"));
        let url = match db.pg_schema() {
            Some(_) => format!("{}&application_name={app}", db.url()),
            None => db.url(),
        };
        // A 3 s node timeout (heartbeat every 1 s): with 1 s, a CI machine under heavy load
        // (load average > 20 seen) let a live worker's heartbeat lapse, so its jobs were
        // reclaimed while running and two ran out of attempts.
        let args = [
            "--concurrency",
            "4",
            "--node-timeout",
            "3",
            "--poll-ms",
            "50",
        ];
        let a = spawn_worker_url(&url, home, &args);
        let b = spawn_worker_url(&url, home, &[&args[..], &["--drain"]].concat());
        let t = Instant::now();
        while lines(&out).len() < 80 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "workers made no progress"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sigkill(i32::try_from(a.id().unwrap()).unwrap());
        let ra = wait_exit(a, 10).await;
        assert_ne!(ra.code, 0);
        let c = spawn_worker_url(&url, home, &[&args[..], &["--drain"]].concat());
        if db.pg_schema().is_some() {
            let mut dropped = 0;
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                dropped += drop_pg_connections(&app).await;
            }
            assert!(dropped >= 2, "no worker connection was cut ({dropped})");
        }
        let rb = wait_exit(b, 120).await;
        let rc = wait_exit(c, 120).await;
        assert_eq!(rb.code, 0, "{}", rb.stderr);
        assert_eq!(rc.code, 0, "{}", rc.stderr);

        let s = stats(db, home).await;
        assert_eq!(s["succeeded"], 300, "{s}");
        let ran = lines(&out);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for l in &ran {
            *counts.entry(l.as_str()).or_default() += 1;
        }
        for id in &ids {
            assert!(counts.contains_key(id.as_str()), "{id} never ran");
        }
        // Twice only for jobs reclaimed from the killed worker (at most its 4 slots), each
        // visible as a second attempt.
        let twice: Vec<&str> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        assert!(
            twice.len() <= 4,
            "{} jobs ran twice: {twice:?}",
            twice.len()
        );
        assert!(counts.values().all(|n| *n <= 2));
        for id in twice {
            assert_eq!(show(db, home, id).await["attempts"], 2, "{id}");
        }
    }
);

// An `ask` job runs the ask loop on the worker, against a local server speaking the OpenAI
// streaming format, and stores {"conversation_id","text"}; the conversation is in the database.
both!(ask_job_runs_the_ask_loop, |db, home| async move {
    use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["Pool ", "says hi."],
    )));
    let payload = json!({"message": "Say hi", "provider": "openai"}).to_string();
    let id = submit(db, home, &["ask", "--payload", &payload])
        .await
        .remove(0);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in [
        "ZOCALO_DATABASE_URL",
        "ZOCALO_LOG",
        "ZOCALO_PROVIDER",
        "ZOCALO_MODEL",
        "ANTHROPIC_API_KEY",
    ] {
        cmd.env_remove(k);
    }
    let child = cmd
        .env("ZOCALO_HOME", home)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .env("OPENAI_API_KEY", "sk-test-pool-0123456789")
        .args(["--database-url", &db.url(), "worker", "--drain"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let r = wait_exit(child, 60).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = show(db, home, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["text"], "Pool says hi.");
    let conv = job["result"]["conversation_id"].as_str().unwrap();
    assert!(conv.starts_with("conv_"));
    let shown = z(db, home, &["conversations", "show", conv, "--json"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert_eq!(shown.json()["messages"].as_array().unwrap().len(), 2);
    assert_eq!(server.requests().len(), 1);
});

both!(skill_job_runs_the_skill_script, |db, home| async move {
    let dir = home.join("skills/greet");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: greet\ndescription: Greets someone by name.\n---\nRun scripts/hello.sh NAME.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scripts/hello.sh"),
        "#!/bin/sh\necho \"hello, $1\"\n",
    )
    .unwrap();
    let payload = json!({"name": "greet", "args": ["pool"]}).to_string();
    let id = submit(db, home, &["skill", "--payload", &payload])
        .await
        .remove(0);
    let missing = json!({"name": "no-such-skill"}).to_string();
    let id_missing = submit(db, home, &["skill", "--payload", &missing])
        .await
        .remove(0);
    let r = wait_exit(spawn_worker(db, home, &["--drain"]), 60).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job = show(db, home, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["stdout"], "hello, pool\n");
    assert_eq!(job["result"]["exit_code"], 0);
    // The same runner as `zocalo skills run`: its sandbox label is reported.
    assert!(
        job["result"]["sandbox"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{job}"
    );
    let job = show(db, home, &id_missing).await;
    assert_eq!(
        job["state"], "failed",
        "a skill the worker lacks fails for good: {job}"
    );
});
