//! Pool throughput on SQLite and PostgreSQL (the same database the tests use):
//! - enqueue: N no-op jobs in one `enqueue` call (what `zocalo pool submit noop --count N` runs);
//! - drain: the same N jobs run end to end by one worker node (the runtime `zocalo worker`
//!   runs) at concurrency C, from the first claim to the last recorded success;
//! - latency: on an idle worker, one job enqueued at a time (after the last one started): the
//!   time from calling `enqueue` to the handler starting, p50 / p99 over POOL_BENCH_LATENCY
//!   jobs (default 200). Postgres wakes the worker by NOTIFY; SQLite has none, so there it is
//!   the worker's poll interval (10 ms here) that shows.
//!
//! `cargo bench -p zocalo-pool` (env: POOL_BENCH_JOBS, default 20000; POOL_BENCH_CONCURRENCY,
//! default 10; POOL_BENCH_BACKENDS, default "sqlite,postgres"; POOL_BENCH_PREFETCH, default
//! the worker's own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;
use zocalo_pool::handler::{Handler, JobError, JobRun, PayloadError};
use zocalo_pool::{JobQueue, NewJob, Registry, SqlQueue, Worker, WorkerConfig};

/// Says when it starts.
struct Started(mpsc::UnboundedSender<Instant>);

#[async_trait]
impl Handler for Started {
    fn validate(&self, _payload: &Value) -> Result<(), PayloadError> {
        Ok(())
    }
    async fn run(&self, _job: JobRun) -> Result<Value, JobError> {
        let _ = self.0.send(Instant::now());
        Ok(Value::Null)
    }
}

/// Enqueue-to-start p50 and p99 in ms of `n` jobs, one at a time, on an idle worker.
async fn latency(q: &SqlQueue, n: usize) -> (f64, f64) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register("started", Arc::new(Started(tx)));
    let worker = Worker::new(
        q.clone(),
        registry,
        WorkerConfig {
            concurrency: 1,
            poll_interval: Duration::from_millis(10),
            ..WorkerConfig::default()
        },
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Let the worker register and go idle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        q.enqueue(&[NewJob::new("started", Value::Null)])
            .await
            .unwrap();
        let started = rx.recv().await.unwrap();
        ms.push(started.duration_since(t).as_secs_f64() * 1000.0);
        // Idle again: the success is written and nothing is queued.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    run.await.unwrap().unwrap();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let jobs = env_usize("POOL_BENCH_JOBS", 20_000);
    let samples = env_usize("POOL_BENCH_LATENCY", 200);
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
        if samples > 0 {
            let (p50, p99) = latency(&q, samples).await;
            println!(
                "{backend:<8} enqueue-to-start on an idle worker: p50 {p50:.2} ms, p99 {p99:.2} ms ({samples} jobs)"
            );
        }
        db.cleanup().await;
    }
}
