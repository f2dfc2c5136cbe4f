//! The worker runtime: one node that registers, heartbeats, claims jobs in batches up to its
//! concurrency, runs them through the [`Registry`], and records what happened.
//!
//! Three tasks cooperate:
//! - the claim loop: claims as many jobs as it has free slots (plus, while jobs are short, a
//!   few more that wait here for a slot: see [`WorkerConfig::prefetch`]), starts one task per
//!   free slot, and when nothing is ready sleeps until a slot frees, a Postgres NOTIFY
//!   arrives, the next retry is due, or the poll interval passes;
//! - a job's task, when its job ends, runs the next claimed job waiting for a slot, so a
//!   stream of short jobs flows without waking the claim loop for each;
//! - successes are written by the claim loop together with its next claim (one statement on
//!   Postgres, one write transaction on SQLite), so a slot is free again as soon as the handler
//!   returns and the steady state costs one round trip per batch;
//! - the recorder: writes every other outcome (failures, cancels, hand-backs);
//! - the heartbeat: keeps the node alive, stops the jobs this node no longer holds (cancelled
//!   by a user, or reclaimed after this node could not reach the database for its node
//!   timeout), and reclaims the jobs of nodes that went silent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use crate::handler::{stop_pair, JobError, JobRun, Registry, StopHandle, StopReason};
use crate::job::{ClaimedJob, Lease};
use crate::queue::{FailOutcome, JobQueue, NodeSpec, SqlQueue, Wakeup};
use crate::PoolError;

/// How a worker behaves. [`WorkerConfig::default`]: concurrency 4, no labels, runs until told
/// to stop, node timeout 30 s.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub concurrency: usize,
    /// This node's labels: it runs jobs whose labels are all among these.
    pub labels: Vec<String>,
    /// Exit once no job this node could run is queued, or running anywhere (a job running on
    /// another node may still fail, or be reclaimed from a node that died).
    pub drain: bool,
    /// Silent longer than this, the node counts as lost and its jobs go to other nodes. It
    /// heartbeats three times per timeout.
    pub node_timeout: Duration,
    /// How often an idle worker looks for work without a wake-up (SQLite has no NOTIFY; on
    /// Postgres this is only the fallback).
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before they are handed back.
    pub shutdown_grace: Duration,
    /// At most this many claimed jobs wait on this node for a free slot (None: 10 x
    /// concurrency, at most 100: on Postgres, no-op jobs drained no faster with 200 and
    /// slower with 300 or more; 0: claim only what the free slots can start). The node
    /// keeps only as many waiting as it would start within 10 ms at the mean run time of its
    /// recent jobs, so short jobs are claimed in large batches (one statement per batch: the
    /// database round trip, not the job, bounds a stream of short jobs) while long jobs are
    /// never held back from other nodes. A waiting job counts as running in the queue; if the
    /// node dies it is reclaimed like a running one, and on shutdown it is handed back.
    pub prefetch: Option<usize>,
    /// After a job is told to stop, how long its handler may take to return before it is
    /// abandoned.
    pub stop_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            labels: Vec::new(),
            drain: false,
            node_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(10),
            stop_grace: Duration::from_secs(10),
            prefetch: None,
        }
    }
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), PoolError> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(PoolError::Invalid(format!(
                "concurrency {} out of range: use 1 to 10000",
                self.concurrency
            )));
        }
        if self.node_timeout < Duration::from_millis(300) {
            return Err(PoolError::Invalid(
                "node timeout must be at least 0.3 s (it heartbeats 3 times per timeout)".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(PoolError::Invalid("poll interval must be positive".into()));
        }
        if self.prefetch.is_some_and(|p| p > 100_000) {
            return Err(PoolError::Invalid(
                "prefetch out of range: use 0 to 100000".into(),
            ));
        }
        Ok(())
    }

    /// The most claimed jobs that may wait here for a slot.
    fn prefetch_max(&self) -> usize {
        self.prefetch
            .unwrap_or_else(|| self.concurrency.saturating_mul(10).min(100))
    }
}

/// Waiting jobs are kept to what the node would start within this long.
const PREFETCH_WINDOW: Duration = Duration::from_millis(10);

/// What a worker did, returned when it exits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub node_id: String,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Handed back on shutdown.
    pub released: u64,
    /// Finished here but the lease was gone (reclaimed or cancelled meanwhile).
    pub lost: u64,
    /// Claim statements that returned jobs (jobs / claims is the mean batch).
    pub claims: u64,
    /// Statements recording successes.
    pub success_writes: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
    claims: AtomicU64,
    success_writes: AtomicU64,
}

enum Outcome {
    Succeeded(Value),
    Failed(JobError),
    Stopped(StopReason),
}

struct Done {
    job: ClaimedJob,
    outcome: Outcome,
}

/// A claimed job with the handle that stops it, from its claim on.
struct Held {
    job: ClaimedJob,
    handle: Arc<StopHandle>,
    signal: crate::handler::StopSignal,
}

struct Shared {
    queue: SqlQueue,
    node: String,
    /// Jobs claimed and not yet ended (running, or waiting for a slot), with the handle that
    /// stops them.
    running: Mutex<HashMap<String, (Lease, Arc<StopHandle>)>>,
    /// Claimed jobs waiting for a free slot, in claim order.
    waiting: Mutex<std::collections::VecDeque<Held>>,
    /// Mean run time of recent jobs in ns (an exponential moving average; 0: none yet).
    mean_run_ns: AtomicU64,
    /// Outcomes not yet written (sent to the recorder, or successes waiting in `succeeded`).
    unrecorded: AtomicUsize,
    /// Successes waiting to be written with the next claim (one statement for both).
    succeeded: Mutex<Vec<(Lease, Value)>>,
    slot_freed: Notify,
    stopping: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn take_successes(&self) -> Vec<(Lease, Value)> {
        std::mem::take(&mut *self.succeeded.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn put_back_successes(&self, mut results: Vec<(Lease, Value)>) {
        let mut pending = self.succeeded.lock().unwrap_or_else(|e| e.into_inner());
        results.append(&mut pending);
        *pending = results;
    }

    /// `sent` successes were written, `recorded` of them with the lease still held.
    fn recorded_successes(&self, sent: usize, recorded: u64) {
        if sent == 0 {
            return;
        }
        let c = &self.counters;
        c.success_writes.fetch_add(1, Ordering::Relaxed);
        c.succeeded.fetch_add(recorded, Ordering::SeqCst);
        c.lost
            .fetch_add((sent as u64).saturating_sub(recorded), Ordering::SeqCst);
        self.unrecorded.fetch_sub(sent, Ordering::SeqCst);
    }

    fn running_leases(&self) -> Vec<Lease> {
        self.lock().values().map(|(l, _)| l.clone()).collect()
    }

    fn stop(&self, id: &str, reason: StopReason) {
        if let Some((_, h)) = self.lock().get(id) {
            h.stop(reason);
        }
    }

    fn stop_all(&self, reason: StopReason) {
        for (_, h) in self.lock().values() {
            h.stop(reason);
        }
    }

    /// Registers a claimed job as held by this node (the heartbeat then checks its lease).
    fn hold(&self, job: ClaimedJob) -> Held {
        let (handle, signal) = stop_pair();
        let handle = Arc::new(handle);
        self.lock()
            .insert(job.id.clone(), (job.lease(), handle.clone()));
        Held {
            job,
            handle,
            signal,
        }
    }

    /// The next job waiting for a slot, unless the worker is stopping.
    fn next_waiting(&self) -> Option<Held> {
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn ran_for(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.mean_run_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.mean_run_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How many claimed jobs may wait for a slot now: what the node would start within
    /// [`PREFETCH_WINDOW`] at its recent jobs' mean run time, within the configured maximum.
    fn prefetch(&self, cfg: &WorkerConfig) -> usize {
        let max = cfg.prefetch_max();
        let mean = self.mean_run_ns.load(Ordering::Relaxed);
        if max == 0 || mean == 0 {
            return 0;
        }
        let window = u64::try_from(PREFETCH_WINDOW.as_nanos()).unwrap_or(u64::MAX);
        let n = window.saturating_mul(cfg.concurrency as u64) / mean;
        usize::try_from(n).unwrap_or(usize::MAX).min(max)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Lease, Arc<StopHandle>)>> {
        // A panic while holding this lock leaves the map itself intact.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker node.
pub struct Worker {
    queue: SqlQueue,
    registry: Registry,
    config: WorkerConfig,
    node: String,
}

impl Worker {
    pub fn new(
        queue: SqlQueue,
        registry: Registry,
        config: WorkerConfig,
    ) -> Result<Self, PoolError> {
        config.validate()?;
        if registry.runnable().is_empty() {
            return Err(PoolError::Invalid(
                "the worker has no job kinds to run".into(),
            ));
        }
        Ok(Self {
            // Claim loop, recorder and heartbeat each hold at most one connection at a time.
            queue: queue.for_worker(4),
            registry,
            config,
            node: zocalo_core::ids::new_prefixed("node"),
        })
    }

    /// This node's id (`node_…`), as `pool nodes` and a job's `node` show it.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Runs until `shutdown` resolves (then stops claiming, lets running jobs finish within
    /// the shutdown grace and hands back the rest), or, when draining, until no work is left.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, PoolError> {
        let cfg = self.config.clone();
        let kinds = self.registry.runnable();
        let spec = NodeSpec {
            id: self.node.clone(),
            hostname: hostname(),
            pid: i64::from(std::process::id()),
            labels: cfg.labels.clone(),
            kinds: kinds.clone(),
            capacity: i32::try_from(cfg.concurrency).unwrap_or(i32::MAX),
            timeout: cfg.node_timeout,
        };
        // A database restarting while the worker starts is ridden out like one while it runs.
        if retrying(|| self.queue.register_node(&spec)).await.is_none() {
            return Err(PoolError::Worker(
                "could not register this node: the database kept refusing (see the warnings above)"
                    .into(),
            ));
        }
        tracing::info!(node = %self.node, kinds = ?kinds, "worker registered");

        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            node: self.node.clone(),
            running: Mutex::new(HashMap::new()),
            waiting: Mutex::new(std::collections::VecDeque::new()),
            mean_run_ns: AtomicU64::new(0),
            unrecorded: AtomicUsize::new(0),
            succeeded: Mutex::new(Vec::new()),
            slot_freed: Notify::new(),
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
        let recorder = tokio::spawn(record(shared.clone(), done_rx));
        let (hb_stop_tx, hb_stop_rx) = tokio::sync::watch::channel(false);
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), cfg.clone(), hb_stop_rx));

        let mut wakeup = match self.queue.listener().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("no LISTEN connection, polling instead: {e}");
                None
            }
        };
        let slots = Arc::new(Semaphore::new(cfg.concurrency));
        let registry = Arc::new(self.registry);
        tokio::pin!(shutdown);
        let mut errors = 0u32;

        loop {
            start_waiting(&shared, &registry, &cfg, &slots, &done_tx);
            // Jobs got slower since these were claimed: keep what the prefetch now allows (and
            // half the concurrency more, so a mean hovering at the edge does not make the node
            // claim and hand back the same jobs), and hand the rest back for other nodes.
            let excess = {
                let keep = shared.prefetch(&cfg) + cfg.concurrency / 2;
                let mut waiting = shared.waiting.lock().unwrap_or_else(|e| e.into_inner());
                (waiting.len() > keep).then(|| waiting.split_off(keep))
            };
            if let Some(excess) = excess {
                tracing::debug!(count = excess.len(), "handing back jobs claimed ahead");
                hand_back(&shared, &done_tx, excess);
            }
            // Room for more claims: free slots, plus what may wait for a slot.
            let room = |shared: &Shared| {
                let target = cfg.concurrency + shared.prefetch(&cfg);
                (target, target.saturating_sub(shared.lock().len()))
            };
            // Most of the room taken: let running jobs end first, so claims stay batched. While
            // claimed jobs wait here the slots stay busy anyway, so wait for half the room;
            // otherwise at most 2 ms, so a queued job is claimed within 2 ms of a slot freeing.
            let deadline = Instant::now() + Duration::from_millis(2);
            let free = loop {
                let (target, free) = room(&shared);
                if free == 0 || free >= target.div_ceil(2) {
                    break free;
                }
                let ahead = !shared
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if !ahead && Instant::now() >= deadline {
                    break free;
                }
                let until = if ahead {
                    Instant::now() + cfg.poll_interval
                } else {
                    deadline
                };
                tokio::select! {
                    _ = shared.slot_freed.notified() => {
                        for _ in 0..4 {
                            tokio::task::yield_now().await;
                        }
                    }
                    _ = tokio::time::sleep_until(until) => {}
                }
                start_waiting(&shared, &registry, &cfg, &slots, &done_tx);
            };
            let mut claimed_any = false;
            if free > 0 {
                let results = shared.take_successes();
                match self
                    .queue
                    .succeed_and_claim(&self.node, &results, &kinds, &cfg.labels, free)
                    .await
                {
                    Ok((recorded, jobs)) => {
                        shared.recorded_successes(results.len(), recorded);
                        errors = 0;
                        claimed_any = !jobs.is_empty();
                        if claimed_any {
                            shared.counters.claims.fetch_add(1, Ordering::Relaxed);
                        }
                        {
                            let held: Vec<Held> =
                                jobs.into_iter().map(|j| shared.hold(j)).collect();
                            let mut waiting =
                                shared.waiting.lock().unwrap_or_else(|e| e.into_inner());
                            waiting.extend(held);
                        }
                        start_waiting(&shared, &registry, &cfg, &slots, &done_tx);
                    }
                    Err(e) => {
                        shared.put_back_successes(results);
                        errors += 1;
                        let pause = backoff(errors);
                        tracing::warn!("claiming jobs failed (retrying in {pause:?}): {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = &mut shutdown => break,
                        }
                        continue;
                    }
                }
            }
            if claimed_any {
                // A shutdown that came meanwhile is seen at the next sleep; with a steady stream
                // of jobs there is none, so look now.
                if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                    break;
                }
                continue;
            }

            // Nothing to claim now (or no free slot): work out how long to sleep.
            let mut sleep_for = cfg.poll_interval;
            if free > 0 {
                let recheck = chrono::Utc::now()
                    + chrono::Duration::from_std(cfg.poll_interval).unwrap_or_default();
                match self.queue.next_run(&kinds, &cfg.labels, recheck).await {
                    Ok(None) => {
                        if cfg.drain
                            && shared.lock().is_empty()
                            && shared.unrecorded.load(Ordering::SeqCst) == 0
                        {
                            break;
                        }
                    }
                    Ok(Some(at)) => {
                        let until = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                        sleep_for = sleep_for.min(until);
                    }
                    Err(e) => tracing::warn!("looking for queued jobs failed: {e}"),
                }
                if sleep_for.is_zero() {
                    continue;
                }
            }
            tokio::select! {
                _ = shared.slot_freed.notified() => {
                    // Short jobs end in bursts: let the rest of the burst free its slots too,
                    // so the next claim is one batch rather than many claims of one job.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {}
                r = wait_notify(&mut wakeup) => {
                    if let Err(e) = r {
                        tracing::warn!("LISTEN connection lost, reconnecting: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ = &mut shutdown => break,
            }
        }

        // Stop: no more claims; running jobs get the grace period, then are handed back.
        shared.stopping.store(true, Ordering::SeqCst);
        tracing::info!(node = %self.node, "worker stopping");
        // Claimed jobs still waiting for a slot never started: hand them back now.
        let waiting =
            std::mem::take(&mut *shared.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        hand_back(&shared, &done_tx, waiting);
        let deadline = Instant::now() + cfg.shutdown_grace;
        while !shared.lock().is_empty() && Instant::now() < deadline {
            tokio::select! {
                _ = shared.slot_freed.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        shared.stop_all(StopReason::Shutdown);
        // Every job task holds a permit until its outcome is sent: all back means all sent.
        let concurrency = u32::try_from(cfg.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            cfg.stop_grace + Duration::from_secs(1),
            slots.acquire_many(concurrency),
        )
        .await;
        // Each step below is bounded: a worker told to stop stops, even when the database
        // stalls. An outcome not written in time is not lost for good: the lease runs out and
        // the job runs again (at-least-once), and the warning names the step.
        let results = shared.take_successes();
        if !results.is_empty() {
            let q = &self.queue;
            let node = self.node.as_str();
            let recorded = bounded(
                "recording the last successes",
                STOP_STEP_LONG,
                retrying(|| q.succeed(node, &results)),
            )
            .await
            .flatten();
            shared.recorded_successes(results.len(), recorded.unwrap_or(0));
        }
        drop(done_tx);
        bounded("recording the last outcomes", STOP_STEP_LONG, recorder).await;
        let _ = hb_stop_tx.send(true);
        bounded("stopping the heartbeat", STOP_STEP, heartbeat).await;
        let marked = bounded(
            "marking the node stopped",
            STOP_STEP,
            self.queue.heartbeat(&self.node, "stopped"),
        );
        if let Some(Err(e)) = marked.await {
            tracing::warn!("could not mark node {} stopped: {e}", self.node);
        }
        bounded(
            "closing the worker's connections",
            STOP_STEP,
            self.queue.close_worker_pool(),
        )
        .await;
        let c = &shared.counters;
        Ok(WorkerReport {
            node_id: self.node,
            succeeded: c.succeeded.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            cancelled: c.cancelled.load(Ordering::SeqCst),
            released: c.released.load(Ordering::SeqCst),
            lost: c.lost.load(Ordering::SeqCst),
            claims: c.claims.load(Ordering::SeqCst),
            success_writes: c.success_writes.load(Ordering::SeqCst),
        })
    }
}

/// How long one step of a worker's stop may take (writing outcomes: the longer one, as
/// [`retrying`] rides out a short outage).
const STOP_STEP: Duration = Duration::from_secs(5);
const STOP_STEP_LONG: Duration = Duration::from_secs(70);

/// `fut`, or None with a warning naming `step` when it takes longer than `limit`.
async fn bounded<T>(step: &str, limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!("stopping the worker: {step} took over {limit:?}; going on without it");
            None
        }
    }
}

async fn wait_notify(wakeup: &mut Option<Wakeup>) -> Result<(), PoolError> {
    match wakeup {
        Some(w) => w.recv().await,
        None => std::future::pending().await,
    }
}

fn backoff(errors: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << errors.min(6)).min(5000);
    Duration::from_millis(ms)
}

/// Hands claimed jobs that never started back to the queue (through the recorder).
fn hand_back(
    shared: &Shared,
    done: &mpsc::UnboundedSender<Done>,
    held: std::collections::VecDeque<Held>,
) {
    for h in held {
        shared.unrecorded.fetch_add(1, Ordering::SeqCst);
        shared.lock().remove(&h.job.id);
        let d = Done {
            job: h.job,
            outcome: Outcome::Stopped(StopReason::Shutdown),
        };
        if done.send(d).is_err() {
            shared.unrecorded.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Starts waiting jobs while slots are free.
fn start_waiting(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    cfg: &WorkerConfig,
    slots: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<Done>,
) {
    while let Ok(permit) = slots.clone().try_acquire_owned() {
        let Some(held) = shared.next_waiting() else {
            return;
        };
        spawn_job(shared, registry, cfg, held, permit, done.clone());
    }
}

/// Runs `held` on its slot, then, while claimed jobs wait for a slot, the next of them.
fn spawn_job(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    cfg: &WorkerConfig,
    held: Held,
    permit: tokio::sync::OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Done>,
) {
    let shared = shared.clone();
    let registry = registry.clone();
    let stop_grace = cfg.stop_grace;
    tokio::spawn(async move {
        let mut next = Some(held);
        let mut ran = 0u32;
        while let Some(held) = next {
            run_held(&shared, &registry, stop_grace, held, &done).await;
            shared.slot_freed.notify_one();
            ran += 1;
            if ran.is_multiple_of(16) {
                // Jobs that finish without ever waiting would otherwise keep this task on its
                // thread and starve the claim loop and the heartbeat.
                tokio::task::yield_now().await;
            }
            next = shared.next_waiting();
        }
        drop(permit);
        shared.slot_freed.notify_one();
    });
}

async fn run_held(
    shared: &Shared,
    registry: &Registry,
    stop_grace: Duration,
    held: Held,
    done: &mpsc::UnboundedSender<Done>,
) {
    let Held {
        job,
        handle,
        signal,
    } = held;
    let started = Instant::now();
    let outcome = match (handle.reason(), registry.handler(&job.kind)) {
        // Stopped while it waited for a slot (cancelled, or the node lost its lease): it
        // never starts.
        (Some(reason), _) => Outcome::Stopped(reason),
        (None, None) => Outcome::Failed(JobError::fatal(format!(
            "no handler for kind `{}` on this node",
            job.kind
        ))),
        (None, Some(handler)) => {
            let mut watch = signal.clone();
            let run = JobRun {
                id: job.id.clone(),
                kind: job.kind.clone(),
                attempt: job.attempt,
                payload: job.payload.clone(),
                stop: signal,
            };
            let fut = handler.run(run);
            tokio::pin!(fut);
            let timeout = job.timeout;
            let result = tokio::select! {
                r = &mut fut => Some(r),
                _ = async {
                    tokio::select! {
                        _ = watch.stopped() => {}
                        _ = tokio::time::sleep(timeout) => handle.stop(StopReason::TimedOut),
                    }
                } => tokio::time::timeout(stop_grace, &mut fut).await.ok(),
            };
            shared.ran_for(started.elapsed());
            match (handle.reason(), result) {
                (None, Some(Ok(v))) | (Some(StopReason::Shutdown), Some(Ok(v))) => {
                    Outcome::Succeeded(v)
                }
                (None, Some(Err(e))) => Outcome::Failed(e),
                (Some(reason), _) => Outcome::Stopped(reason),
                (None, None) => Outcome::Stopped(StopReason::Lost),
            }
        }
    };
    // Counted as unrecorded before it leaves the running set, so a draining worker never
    // sees neither and exits before this outcome is written.
    shared.unrecorded.fetch_add(1, Ordering::SeqCst);
    shared.lock().remove(&job.id);
    if let Outcome::Succeeded(v) = outcome {
        shared
            .succeeded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((job.lease(), v));
    } else if done.send(Done { job, outcome }).is_err() {
        shared.unrecorded.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes outcomes: a burst of successes in one statement, everything else one by one.
async fn record(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let q = &shared.queue;
    let node = shared.node.as_str();
    let c = &shared.counters;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut successes = Vec::new();
        for Done { job, outcome } in batch {
            match outcome {
                Outcome::Succeeded(v) => successes.push((job.lease(), v)),
                Outcome::Failed(e) => {
                    let r = retrying(|| q.fail(node, &job, &e.message, e.retryable)).await;
                    match r {
                        Some(FailOutcome::LeaseLost) => c.lost.fetch_add(1, Ordering::SeqCst),
                        Some(_) => c.failed.fetch_add(1, Ordering::SeqCst),
                        None => 0,
                    };
                    tracing::info!(job = %job.id, attempt = job.attempt, "job failed: {}", e.message);
                }
                Outcome::Stopped(StopReason::TimedOut) => {
                    let msg = format!("timed out after {:?}", job.timeout);
                    if let Some(o) = retrying(|| q.fail(node, &job, &msg, true)).await {
                        if o == FailOutcome::LeaseLost {
                            c.lost.fetch_add(1, Ordering::SeqCst);
                        } else {
                            c.failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Outcome::Stopped(StopReason::Cancelled) => {
                    let _ = retrying(|| q.cancel_ack(&job.id)).await;
                    c.cancelled.fetch_add(1, Ordering::SeqCst);
                }
                Outcome::Stopped(StopReason::Shutdown) => {
                    let lease = job.lease();
                    if retrying(|| q.release(node, &lease)).await == Some(true) {
                        c.released.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Outcome::Stopped(StopReason::Lost) => {
                    // Stopped because our heartbeat lapsed: if nobody reclaimed the job
                    // meanwhile, its lease is still ours and its row says `running` on this
                    // live node, which no longer runs it, so no one would ever reclaim it and
                    // every draining worker would wait for it forever. Hand it back; the
                    // lease check makes this a no-op when another node took it over.
                    let lease = job.lease();
                    let _ = retrying(|| q.release(node, &lease)).await;
                    c.lost.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let sent = successes.len();
        if sent > 0 {
            let recorded = retrying(|| q.succeed(node, &successes)).await;
            shared.recorded_successes(sent, recorded.unwrap_or(0));
        }
        shared.unrecorded.fetch_sub(n - sent, Ordering::SeqCst);
    }
}

/// Retries a write through a database outage, with backoff, for about a minute; a write that
/// still fails is dropped (the lease runs out and the job is reclaimed and run again).
async fn retrying<T, F, Fut>(mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PoolError>>,
{
    let mut errors = 0u32;
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                errors += 1;
                if errors > 15 {
                    tracing::error!("giving up a database write after 15 tries: {e}");
                    return None;
                }
                tracing::warn!("a database write failed (retrying): {e}");
                tokio::time::sleep(backoff(errors)).await;
            }
        }
    }
}

async fn heartbeat(
    shared: Arc<Shared>,
    cfg: WorkerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = (cfg.node_timeout / 3).max(Duration::from_millis(50));
    let mut last_ok = Instant::now();
    let q = &shared.queue;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let state = if shared.stopping.load(Ordering::SeqCst) {
            "draining"
        } else {
            "active"
        };
        match q.heartbeat(&shared.node, state).await {
            Ok(()) => last_ok = Instant::now(),
            Err(e) => {
                tracing::warn!("heartbeat failed: {e}");
                if last_ok.elapsed() > cfg.node_timeout {
                    // Other nodes may already have reclaimed our jobs: running them on would
                    // run them twice.
                    shared.stop_all(StopReason::Lost);
                }
                continue;
            }
        }
        match q.lost_leases(&shared.node, &shared.running_leases()).await {
            Ok(lost) => {
                for l in lost {
                    let reason = if l.state == Some(crate::JobState::Cancelled) {
                        StopReason::Cancelled
                    } else {
                        StopReason::Lost
                    };
                    tracing::info!(job = %l.id, ?reason, "stopping a job this node no longer holds");
                    shared.stop(&l.id, reason);
                }
            }
            Err(e) => tracing::warn!("checking leases failed: {e}"),
        }
        match q.reclaim().await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(count = ids.len(), "reclaimed jobs of silent nodes");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reclaiming failed: {e}"),
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
