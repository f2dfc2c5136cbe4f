//! Pool throughput on SQLite and PostgreSQL (the same database the tests use):
//! - enqueue: N no-op jobs in one `enqueue` call (what `zocalo pool submit noop --count N` runs);
//! - drain: the same N jobs run end to end by one worker node (the runtime `zocalo worker`
//!   runs) at concurrency C, from the first claim to the last recorded success.
//!
//! `cargo bench -p zocalo-pool` (env: POOL_BENCH_JOBS, default 20000; POOL_BENCH_CONCURRENCY,
//! default 10; POOL_BENCH_BACKENDS, default "sqlite,postgres"; POOL_BENCH_PREFETCH, default
//! the worker's own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use zocalo_pool::{JobQueue, NewJob, Registry, SqlQueue, Worker, WorkerConfig};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let jobs = env_usize("POOL_BENCH_JOBS", 20_000);
    let concurrency = env_usize("POOL_BENCH_CONCURRENCY", 10);
    let prefetch = std::env::var("POOL_BENCH_PREFETCH")
        .ok()
        .and_then(|v| v.parse().ok());
    let backends =
        std::env::var("POOL_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("pool bench: {jobs} noop jobs, concurrency {concurrency}");
    for backend in backends.split(',') {
        let db = match backend {
            "sqlite" => zocalo_testkit::db::sqlite().await,
            "postgres" => zocalo_testkit::db::postgres().await,
            other => panic!("unknown backend {other}"),
        };
        let q = SqlQueue::new(db.store.clone());
        let batch: Vec<NewJob> = (0..jobs)
            .map(|_| NewJob::new("noop", Value::Null))
            .collect();
        let t = Instant::now();
        q.enqueue(&batch).await.unwrap();
        let enqueue = t.elapsed();

        let worker = Worker::new(
            q.clone(),
            Registry::builtin(),
            WorkerConfig {
                concurrency,
                drain: true,
                poll_interval: Duration::from_millis(10),
                prefetch,
                ..WorkerConfig::default()
            },
        )
        .unwrap();
        let t = Instant::now();
        let report = worker.run(std::future::pending()).await.unwrap();
        let drain = t.elapsed();
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.succeeded as usize, jobs, "{stats:?}");
        assert_eq!(report.succeeded as usize, jobs);
        println!(
            "{backend:<8} enqueue {:>9.0} jobs/s ({:.3} s)   drain {:>8.0} jobs/s ({:.3} s; {} claims, {} result writes)",
            jobs as f64 / enqueue.as_secs_f64(),
            enqueue.as_secs_f64(),
            jobs as f64 / drain.as_secs_f64(),
            drain.as_secs_f64(),
            report.claims,
            report.success_writes,
        );
        db.cleanup().await;
    }
}
