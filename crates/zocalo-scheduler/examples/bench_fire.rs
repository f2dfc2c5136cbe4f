//! Benchmark: fire lateness with 10,000 automations, and the ticker's idle CPU.
//!
//! ```sh
//! cargo run --release -p zocalo-scheduler --example bench_fire -- sqlite 10000 60
//! cargo run --release -p zocalo-scheduler --example bench_fire -- postgres 10000 60
//! ```
//!
//! Phase 1: N minutely automations whose starts are spread over the minute (about N/60 due
//! every second), fired by `run_ticker` (one ticker, 1 s cap on its sleep) for D seconds with
//! the real clock. Lateness = the pool job's enqueue time minus the occurrence, for the
//! occurrences that came after the ticker started. Phase 2: N daily automations none of
//! which is due; the ticker's CPU time over 20 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use zocalo_scheduler::{run_ticker, Action, NewAutomation, Scheduler};
use zocalo_store::{with_pool, Store};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

async fn add_many(store: &Store, n: usize, rrule: &str, spread: bool) {
    let s = Scheduler::new(store.clone());
    let base = Utc::now() - chrono::Duration::hours(1);
    for i in 0..n {
        let start = if spread {
            base + chrono::Duration::seconds((i % 60) as i64)
        } else {
            base
        };
        s.add(
            NewAutomation::new(
                &format!("a{i:05}"),
                rrule,
                &start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "Europe/Berlin",
                Action::Shell {
                    command: "true".into(),
                },
            ),
            Utc::now(),
        )
        .await
        .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("sqlite")
        .to_owned();
    let n: usize = args.get(2).map_or(10_000, |s| s.parse().unwrap());
    let secs: u64 = args.get(3).map_or(60, |s| s.parse().unwrap());
    let open = || async {
        match backend.as_str() {
            "postgres" => zocalo_testkit::db::postgres().await,
            _ => zocalo_testkit::db::sqlite().await,
        }
    };

    // Phase 1: lateness.
    let db = open().await;
    let t = Instant::now();
    add_many(&db.store, n, "FREQ=MINUTELY", true).await;
    eprintln!(
        "added {n} automations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let started = Utc::now();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ticker = tokio::spawn(run_ticker(
        db.store.clone(),
        Duration::from_secs(1),
        async {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    tx.send(()).unwrap();
    ticker.await.unwrap().unwrap();
    let from = started.timestamp_millis() + 1000;
    let mut late: Vec<i64> = with_pool!(db.store.pool(), |p| sqlx::query_scalar(
        "SELECT j.created_at - r.occurrence FROM sched_runs r \
         JOIN pool_jobs j ON j.id = r.job_id WHERE r.occurrence >= $1"
    )
    .bind(from)
    .fetch_all(p)
    .await
    .unwrap());
    late.sort();
    let pct = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    println!(
        "{backend}: {n} automations, {} occurrences fired in {secs} s; lateness p50 {} ms, \
         p99 {} ms, max {} ms",
        late.len(),
        pct(0.5),
        pct(0.99),
        late.last().unwrap()
    );
    db.cleanup().await;

    // Phase 2: idle CPU.
    let db = open().await;
    add_many(&db.store, n, "FREQ=DAILY", false).await;
    // Due in about 23 hours: nothing fires during the measurement.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ticker = tokio::spawn(run_ticker(
        db.store.clone(),
        Duration::from_secs(1),
        async {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (c1, t1) = (cpu_seconds(), Instant::now());
    tx.send(()).unwrap();
    ticker.await.unwrap().unwrap();
    println!(
        "{backend}: idle ticker with {n} automations (none due): {:.2}% of one core",
        100.0 * (c1 - c0) / (t1 - t0).as_secs_f64()
    );
    db.cleanup().await;
}
