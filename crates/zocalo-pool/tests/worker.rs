//! The worker's prefetch on real SQLite and PostgreSQL: short jobs are claimed in batches
//! larger than the node's concurrency, long jobs are not held back from other nodes, and a
//! shutdown hands back the claimed jobs that were still waiting for a slot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_pool::handler::{Handler, JobError, JobRun, PayloadError};
use zocalo_pool::{JobQueue, JobState, NewJob, Registry, SqlQueue, Worker, WorkerConfig};
use zocalo_testkit::both_backends;

/// Sleeps for the payload's `ms`; counts the jobs of 100 ms or more it finished.
#[derive(Default)]
struct Sleep {
    long_done: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, _payload: &Value) -> Result<(), PayloadError> {
        Ok(())
    }
    async fn run(&self, job: JobRun) -> Result<Value, JobError> {
        let ms = job.payload["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if ms >= 100 {
            self.long_done
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(Value::Null)
    }
}

fn registry() -> Registry {
    registry_with(Arc::new(Sleep::default()))
}

fn registry_with(sleep: Arc<Sleep>) -> Registry {
    let mut r = Registry::new();
    r.register("sleep", sleep);
    r
}

fn config(concurrency: usize, drain: bool) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        drain,
        poll_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

async fn enqueue(q: &SqlQueue, n: usize, ms: u64) -> Vec<String> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|_| NewJob::new("sleep", json!({ "ms": ms })))
        .collect();
    q.enqueue(&jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

both_backends!(
    short_jobs_are_claimed_in_large_batches,
    |store| async move {
        let q = SqlQueue::new(store);
        enqueue(&q, 3000, 0).await;
        let report = Worker::new(q.clone(), registry(), config(2, true))
            .unwrap()
            .run(std::future::pending())
            .await
            .unwrap();
        assert_eq!(report.succeeded, 3000);
        assert_eq!(q.stats().await.unwrap().succeeded, 3000);
        // Without prefetch a claim takes at most the 2 free slots: 1,500 claims or more.
        let mean = 3000.0 / report.claims as f64;
        assert!(
            mean > 4.0,
            "mean batch {mean:.1} ({} claims)",
            report.claims
        );

        // Turned off, a claim never takes more than the free slots.
        enqueue(&q, 200, 0).await;
        let off = WorkerConfig {
            prefetch: Some(0),
            ..config(2, true)
        };
        let report = Worker::new(q.clone(), registry(), off)
            .unwrap()
            .run(std::future::pending())
            .await
            .unwrap();
        assert_eq!(report.succeeded, 200);
        assert!(
            report.claims >= 100,
            "{} claims for 200 jobs",
            report.claims
        );
    }
);

both_backends!(long_jobs_are_not_held_back, |store| async move {
    let q = SqlQueue::new(store);
    // Warm the mean run time up on short jobs first, then queue long ones: the node must
    // stop prefetching as soon as it sees them take long.
    enqueue(&q, 200, 0).await;
    let ids = enqueue(&q, 40, 300).await;
    let sleep = Arc::new(Sleep::default());
    let worker = Worker::new(q.clone(), registry_with(sleep.clone()), config(2, false)).unwrap();
    let node = worker.node_id().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    // Wait for the first long job to end (seen by the handler: the database learns of a
    // success only with the node's next claim): from then on the node knows jobs take long.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let long = |jobs: Vec<zocalo_pool::Job>, state: JobState| {
        jobs.into_iter()
            .filter(|j| j.state == state && j.node.as_deref() == Some(node.as_str()))
            .count()
    };
    while sleep.long_done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "long jobs made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Up to ~20 long jobs were claimed while the mean still said "short". Within 0.6 s (two
    // more long jobs per slot; without the hand-back the node would still hold 15 or so) it
    // must be down to its 2 running jobs and at most 2 claimed ahead.
    let seen = tokio::time::Instant::now();
    loop {
        let held = long(q.get_many(&ids).await.unwrap(), JobState::Running);
        if held <= 4 {
            break;
        }
        assert!(
            seen.elapsed() < Duration::from_millis(600),
            "node still holds {held} long jobs at concurrency 2"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    let report = run.await.unwrap().unwrap();
    // Stopped: nothing this node claimed stays running.
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.running, 0, "{stats:?}");
    assert_eq!(stats.succeeded + stats.queued, 240, "{stats:?} {report:?}");
});

both_backends!(shutdown_hands_back_waiting_jobs, |store| async move {
    let q = SqlQueue::new(store);
    // 1 ms jobs at concurrency 2: the node keeps up to ~20 claimed jobs waiting for a slot.
    let ids = enqueue(&q, 5000, 1).await;
    let worker = Worker::new(q.clone(), registry(), config(2, false)).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while q.stats().await.unwrap().succeeded < 100 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    let report = run.await.unwrap().unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.running, 0, "{stats:?}");
    assert_eq!(stats.succeeded + stats.queued, 5000, "{stats:?}");
    assert_eq!(
        stats.succeeded, report.succeeded as i64,
        "{stats:?} {report:?}"
    );
    assert!(
        report.released > 0,
        "nothing was waiting at shutdown: {report:?}"
    );
    // A handed-back job's attempt does not count: every queued job is on attempt 0.
    let queued: Vec<_> = q
        .get_many(&ids)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.state == JobState::Queued)
        .collect();
    assert_eq!(queued.len() as i64, stats.queued);
    assert!(queued.iter().all(|j| j.attempts == 0));
});
