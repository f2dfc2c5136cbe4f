//! Several scheduler processes (`zocalo schedule tick --loop`, the daemon's loop on its own)
//! on one database with the real clock: 200 automations firing every 5 seconds, one process
//! killed with SIGKILL half-way. Every occurrence fires exactly once: one run row and one
//! pool job each, no gaps while the survivors keep ticking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zocalo_pool::{JobQueue, SqlQueue};
use zocalo_scheduler::{Action, NewAutomation, Scheduler};
use zocalo_store::Store;
use zocalo_testkit::db::TestDb;

const AUTOMATIONS: usize = 200;
const EVERY_SECS: i64 = 5;

fn spawn_ticker(db: &TestDb, home: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .env_remove("ZOCALO_DATABASE_URL")
        .env_remove("ZOCALO_LOG")
        .env("ZOCALO_HOME", home)
        .arg("--database-url")
        .arg(db.url())
        .args(["schedule", "tick", "--loop", "--interval-ms", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start zocalo schedule tick --loop")
}

fn signal(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

async fn run(db: TestDb) {
    let home = tempfile::tempdir().unwrap();
    let store: Store = db.store.clone();
    let sched = Scheduler::new(store.clone());
    let start = Utc::now();
    let local = start.format("%Y-%m-%dT%H:%M:%S").to_string();
    for i in 0..AUTOMATIONS {
        sched
            .add(
                NewAutomation::new(
                    &format!("a{i:03}"),
                    &format!("FREQ=SECONDLY;INTERVAL={EVERY_SECS}"),
                    &local,
                    "UTC",
                    Action::Shell {
                        command: "true".into(),
                    },
                ),
                start,
            )
            .await
            .unwrap();
    }
    let mut tickers: Vec<_> = (0..3).map(|_| spawn_ticker(&db, home.path())).collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    signal(&tickers[0], nix::sys::signal::Signal::SIGKILL);
    tokio::time::sleep(Duration::from_secs(13)).await;
    for t in &tickers[1..] {
        signal(t, nix::sys::signal::Signal::SIGTERM);
    }
    for t in tickers.drain(..) {
        let out = tokio::time::timeout(Duration::from_secs(20), t.wait_with_output())
            .await
            .expect("ticker did not stop")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }

    let q = SqlQueue::new(store.clone());
    let mut runs = BTreeMap::new();
    for i in 0..AUTOMATIONS {
        let name = format!("a{i:03}");
        let r = sched.runs(&name, 1000).await.unwrap();
        runs.insert(name, r);
    }
    // ~25 s of 5 s occurrences: each automation fired 4 to 6 times, with no gap: the run
    // rows are consecutive occurrences (a gap would mean an occurrence was lost when the
    // process died; a duplicate is impossible by the unique key, and checked too).
    let mut total = 0;
    for (name, r) in &runs {
        let mut occ: Vec<DateTime<Utc>> = r.iter().map(|r| r.scheduled_for).collect();
        occ.sort();
        total += occ.len();
        assert!(occ.len() >= 4, "{name} fired {} times", occ.len());
        for w in occ.windows(2) {
            assert_eq!(
                w[1] - w[0],
                chrono::Duration::seconds(EVERY_SECS),
                "{name}: gap or duplicate in {occ:?}"
            );
        }
    }
    let unqueued = runs
        .values()
        .flatten()
        .filter(|r| r.job_id.is_none())
        .count();
    // A run row left without a job by the killed process is enqueued by a later tick.
    let recovered = sched
        .tick(Utc::now() + chrono::Duration::seconds(11))
        .await
        .unwrap()
        .recovered;
    assert_eq!(recovered, unqueued);
    let jobs = q.list(None, 100_000).await.unwrap();
    let fired_after = jobs.len() - total;
    let keys: HashSet<_> = jobs.iter().filter_map(|j| j.key.clone()).collect();
    assert_eq!(
        keys.len(),
        jobs.len(),
        "a job without a key, or a key twice"
    );
    assert!(fired_after <= AUTOMATIONS, "{fired_after} jobs too many");
    for i in 0..AUTOMATIONS {
        let r = sched.runs(&format!("a{i:03}"), 1000).await.unwrap();
        assert!(r.iter().all(|r| r.job_id.is_some()));
    }

    // Lateness: the job's enqueue time minus the occurrence.
    let created: HashMap<&str, DateTime<Utc>> =
        jobs.iter().map(|j| (j.id.as_str(), j.created_at)).collect();
    let mut late: Vec<i64> = runs
        .values()
        .flatten()
        .filter_map(|r| {
            let c = created.get(r.job_id.as_deref()?)?;
            Some((*c - r.scheduled_for).num_milliseconds())
        })
        .collect();
    late.sort();
    let pct = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{total} runs over {} s; lateness p50 {} ms, p99 {} ms, max {} ms; {recovered} recovered",
        (Utc::now() - start).num_seconds(),
        pct(0.5),
        pct(0.99),
        late.last().unwrap()
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tickers_one_killed_postgres() {
    run(zocalo_testkit::db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tickers_one_killed_sqlite() {
    run(zocalo_testkit::db::sqlite().await).await;
}
