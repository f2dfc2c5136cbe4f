//! The queue: [`JobQueue`], and [`SqlQueue`], its implementation on a zocalo [`Store`]
//! (SQLite or PostgreSQL). The SQL is the design; it lives in `sql/` (`sql/sqlite` and
//! `sql/postgres` where the dialects differ) and every statement says why it is shaped so.
//!
//! Every write that ends an attempt is conditional on the lease (job id, node, attempt), so a
//! worker that lost its lease (reclaimed after it went silent, or cancelled) changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use zocalo_store::{Pool, Store};

use crate::job::{
    duration_ms, ms_to_time, new_job_id, now_ms, ClaimedJob, Enqueued, Job, JobState, Lease,
    NewJob, Node, Stats,
};
use crate::PoolError;

use zocalo_store::{dialects, Dialects as Sql};

macro_rules! shared {
    ($file:literal) => {
        Sql {
            sqlite: include_str!(concat!("sql/", $file)),
            postgres: include_str!(concat!("sql/", $file)),
        }
    };
}

const ENQUEUE: Sql = dialects!("enqueue.sql");
const IDS_BY_KEY: Sql = dialects!("ids_by_key.sql");
const CLAIM: Sql = dialects!("claim.sql");
const SUCCEED: Sql = dialects!("succeed.sql");
const SUCCEED_AND_CLAIM_PG: &str = include_str!("sql/postgres/succeed_and_claim.sql");
const LOST_LEASES: Sql = dialects!("lost_leases.sql");
const NEXT_RUN: Sql = dialects!("next_run.sql");
const FAIL: Sql = shared!("fail.sql");
const RELEASE: Sql = shared!("release.sql");
const CANCEL: Sql = shared!("cancel.sql");
const CANCEL_ACK: Sql = shared!("cancel_ack.sql");
const RECLAIM: Sql = shared!("reclaim.sql");
const NODES_LOST: Sql = shared!("nodes_lost.sql");
const NODE_REGISTER: Sql = shared!("node_register.sql");
const NODE_HEARTBEAT: Sql = shared!("node_heartbeat.sql");
const NODES: Sql = shared!("nodes.sql");
const STATS: Sql = shared!("stats.sql");
const JOB_SELECT: &str = include_str!("sql/job_select.sql");

/// Rows per enqueue statement on SQLite: one JSON document each, so a large `--count` is a
/// handful of statements.
const ENQUEUE_CHUNK: usize = 5000;
/// Bytes of COPY data per message on Postgres (rows are never split across messages).
const COPY_CHUNK: usize = 1 << 20;

/// Runs `$body` with `$ex` an executor that may write: on SQLite inside `BEGIN IMMEDIATE`
/// (taking the write lock up front, so a statement never has to upgrade a stale read snapshot,
/// which SQLite refuses with SQLITE_BUSY instead of waiting); on Postgres on one pooled
/// connection, each statement its own transaction. The body may use `$ex` for one statement,
/// or for several that need not be atomic on Postgres.
macro_rules! write {
    ($pool:expr, |$ex:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite(p) => {
                async {
                    let mut conn = p.acquire().await?;
                    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                    let out = {
                        let $ex = &mut *tx;
                        $body
                    };
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(out)
                }
                .await
            }
            Pool::Postgres(p) => {
                async {
                    let mut conn = p.acquire().await?;
                    let $ex = &mut *conn;
                    Ok::<_, sqlx::Error>($body)
                }
                .await
            }
        }
    };
}

/// How far a failed attempt's retry is pushed: `base * 2^(attempt-1)`, capped, then a random
/// point in its upper half (so a burst of failures does not retry in lockstep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let half = full / 2;
        let jitter_ms = duration_ms(full - half).max(0) as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// What became of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again, not before this instant.
    Retry { at: chrono::DateTime<chrono::Utc> },
    /// Not retryable: `failed`.
    Failed,
    /// That was its last attempt: `dead`.
    Dead,
    /// The lease was gone (cancelled or reclaimed); nothing was written.
    LeaseLost,
}

/// What `cancel` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued; it is cancelled now.
    Queued,
    /// It was running; its worker stops it at its next heartbeat.
    Running,
}

/// A worker node as it registers.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub id: String,
    pub hostname: String,
    pub pid: i64,
    pub labels: Vec<String>,
    pub kinds: Vec<String>,
    pub capacity: i32,
    /// Silent longer than this, the node counts as lost and its jobs are reclaimed.
    pub timeout: Duration,
}

/// A job a node believes it runs but no longer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostLease {
    pub id: String,
    /// Its state now (None if the job is gone). `Cancelled` means a user cancelled it.
    pub state: Option<JobState>,
}

/// The durable queue. Everything a worker or a submitter does goes through it.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds jobs, all or none. A job whose idempotency key exists is not added; its entry
    /// names the existing job with `created: false`.
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, PoolError>;
    /// Leases up to `max` ready jobs of `kinds` whose labels `labels` cover, to `node`.
    async fn claim(
        &self,
        node: &str,
        kinds: &[String],
        labels: &[String],
        max: usize,
    ) -> Result<Vec<ClaimedJob>, PoolError>;
    /// [`JobQueue::succeed`] then [`JobQueue::claim`], in one round trip where the backend
    /// allows: the worker's steady state. Returns how many results were recorded, and the
    /// claimed jobs.
    async fn succeed_and_claim(
        &self,
        node: &str,
        results: &[(Lease, Value)],
        kinds: &[String],
        labels: &[String],
        max: usize,
    ) -> Result<(u64, Vec<ClaimedJob>), PoolError>;
    /// Records `results` as succeeded (those whose lease `node` still holds); how many were.
    async fn succeed(&self, node: &str, results: &[(Lease, Value)]) -> Result<u64, PoolError>;
    /// Ends a failed attempt: a retry after backoff, `failed` if not `retryable`, `dead` after
    /// the last attempt.
    async fn fail(
        &self,
        node: &str,
        job: &ClaimedJob,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome, PoolError>;
    /// Hands a running job back (queued at once; the attempt does not count).
    async fn release(&self, node: &str, lease: &Lease) -> Result<bool, PoolError>;
    /// Cancels a queued or running job.
    async fn cancel(&self, id: &str) -> Result<Cancelled, PoolError>;
    /// A worker confirms it stopped a cancelled job.
    async fn cancel_ack(&self, id: &str) -> Result<(), PoolError>;
    async fn register_node(&self, node: &NodeSpec) -> Result<(), PoolError>;
    /// The node is alive (and in `state`: active, draining or stopped).
    async fn heartbeat(&self, node: &str, state: &str) -> Result<(), PoolError>;
    /// Of `leases`, those `node` no longer holds.
    async fn lost_leases(&self, node: &str, leases: &[Lease]) -> Result<Vec<LostLease>, PoolError>;
    /// Requeues (or buries) the jobs of nodes silent past their timeout; their ids.
    async fn reclaim(&self) -> Result<Vec<String>, PoolError>;
    /// When a job of `kinds` that `labels` cover may next be claimable: the earliest queued
    /// `run_at`, or `recheck` if one is running (it may fail or be reclaimed). None: no such
    /// job is queued or running.
    async fn next_run(
        &self,
        kinds: &[String],
        labels: &[String],
        recheck: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, PoolError>;
    async fn get(&self, id: &str) -> Result<Option<Job>, PoolError>;
    /// Newest first.
    async fn list(&self, state: Option<JobState>, limit: i64) -> Result<Vec<Job>, PoolError>;
    async fn nodes(&self, limit: i64) -> Result<Vec<Node>, PoolError>;
    async fn stats(&self) -> Result<Stats, PoolError>;
}

/// [`JobQueue`] on the tables of a zocalo [`Store`].
#[derive(Clone, Debug)]
pub struct SqlQueue {
    store: Store,
    retry: RetryPolicy,
    /// Where statements go: the store's pool, or a worker's relaxed Postgres pool.
    pool: Pool,
    /// `pool` is a worker pool of our own (see [`SqlQueue::for_worker`]).
    own_pool: bool,
}

impl SqlQueue {
    pub fn new(store: Store) -> Self {
        Self {
            pool: store.pool().clone(),
            store,
            retry: RetryPolicy::default(),
            own_pool: false,
        }
    }

    /// The same queue for a worker's own writes (claims, results, retries, heartbeats,
    /// reclaims). On Postgres they go through a small pool of their own whose sessions do not
    /// wait for the WAL flush at commit (`synchronous_commit = off`): the flush costs more than
    /// the statement on most disks, and losing the last moments of such writes in a database
    /// crash (never in a worker crash) only means a job runs again, which at-least-once
    /// delivery allows anyway. Enqueue and cancel, whose loss a user would see, stay on the
    /// store's synchronous pool.
    pub fn for_worker(&self, connections: u32) -> SqlQueue {
        let (pool, own_pool) = match self.store.pool() {
            Pool::Sqlite(p) => (Pool::Sqlite(p.clone()), false),
            Pool::Postgres(p) => {
                let options = (*p.connect_options())
                    .clone()
                    // enable_sort = off: the claim must read the ready index in claim order and
                    // stop after the batch; planner statistics taken before a burst of
                    // enqueues can make "read every queued row and sort" look cheaper.
                    .options([("synchronous_commit", "off"), ("enable_sort", "off")]);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections.max(1))
                    .acquire_timeout(Duration::from_secs(5))
                    // A broken connection fails one statement, which the worker retries; not
                    // pinging before each use saves a round trip per statement.
                    .test_before_acquire(false)
                    .connect_lazy_with(options);
                (Pool::Postgres(pool), true)
            }
        };
        Self {
            store: self.store.clone(),
            retry: self.retry,
            pool,
            own_pool,
        }
    }

    /// Closes the worker pool made by [`SqlQueue::for_worker`] (the store's pool is left to
    /// the store).
    pub async fn close_worker_pool(&self) {
        if let (true, Pool::Postgres(p)) = (self.own_pool, &self.pool) {
            p.close().await;
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The jobs with these ids that exist, in no particular order: one query per 500 ids,
    /// for callers that wait on many jobs at once (a batch of agents on the pool).
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Job>, PoolError> {
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows: Vec<JobRow> = zocalo_store::with_pool!(self.pool(), |p| {
                let mut q = sqlx::QueryBuilder::new(format!("{JOB_SELECT} WHERE id IN ("));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                q.push(")");
                q.build_query_as().fetch_all(p).await
            })?;
            for row in rows {
                jobs.push(row.decode()?);
            }
        }
        Ok(jobs)
    }

    fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Wakes idle workers on Postgres (LISTEN/NOTIFY); SQLite workers poll.
    async fn notify(&self) -> Result<(), PoolError> {
        if let Pool::Postgres(p) = self.pool() {
            sqlx::query(NOTIFY).execute(p).await?;
        }
        Ok(())
    }

    /// On Postgres, a listener that wakes when jobs are enqueued or requeued; None on SQLite.
    pub async fn listener(&self) -> Result<Option<Wakeup>, PoolError> {
        match self.pool() {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(p) => {
                let channel: String = sqlx::query_scalar(CHANNEL).fetch_one(p).await?;
                // The listener gets a one-connection pool of its own. PgListener reconnects
                // through the pool it was made with, and a reconnect cut short (the claim
                // loop's select! drops recv() whenever another branch wins) hands its
                // half-set-up LISTEN connection back to that pool. In the worker's pool a
                // claim then got that connection: it failed with "unexpected message:
                // NotificationResponse", and the next statement on the out-of-step connection
                // could wait forever (a `worker --drain` that never exited: 3 in 12 runs of
                // the chaos test under load).
                let own = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with((*p.connect_options()).clone());
                let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
                listener.listen(&channel).await?;
                Ok(Some(Wakeup { listener }))
            }
        }
    }
}

/// One channel per schema, so test schemas (and separate deployments sharing a database) do
/// not wake each other.
const CHANNEL: &str = "SELECT 'zocalo_pool_' || current_schema()";
const NOTIFY: &str = "SELECT pg_notify('zocalo_pool_' || current_schema(), '')";

/// A Postgres LISTEN connection on the queue's channel.
pub struct Wakeup {
    listener: sqlx::postgres::PgListener,
}

impl Wakeup {
    /// Waits for a notification; an error means the connection dropped (the listener
    /// reconnects on the next call).
    pub async fn recv(&mut self) -> Result<(), PoolError> {
        self.listener.recv().await?;
        Ok(())
    }
}

/// A job as enqueue writes it.
struct JobInsert {
    id: String,
    kind: String,
    payload: String,
    priority: i32,
    labels: String,
    key: Option<String>,
    max_attempts: i32,
    timeout_ms: i64,
    run_at: i64,
}

/// Postgres: keyless jobs go in by COPY (the cheapest way in: no statement per row, no
/// parameter decoding), keyed ones by one INSERT of parallel arrays that skips taken keys.
/// Returns the existing job id of every key that was taken.
async fn enqueue_postgres(
    pool: &sqlx::PgPool,
    rows: &[JobInsert],
    now: i64,
) -> Result<HashMap<String, String>, PoolError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let (keyed, keyless): (Vec<&JobInsert>, Vec<&JobInsert>) =
        rows.iter().partition(|r| r.key.is_some());
    if !keyless.is_empty() {
        let mut copy = tx
            .copy_in_raw(
                "COPY pool_jobs (id, kind, payload, priority, labels, max_attempts, timeout_ms, \
                 run_at, created_at) FROM STDIN",
            )
            .await?;
        let mut buf = String::with_capacity(COPY_CHUNK + 4096);
        for row in keyless {
            copy_row(&mut buf, row, now);
            if buf.len() >= COPY_CHUNK {
                copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            }
        }
        if !buf.is_empty() {
            copy.send(buf.into_bytes()).await?;
        }
        copy.finish().await?;
    }
    let mut existing = HashMap::new();
    if !keyed.is_empty() {
        // Text columns bound as borrowed `text[]`: no copy of the payloads.
        let col = |f: for<'a> fn(&'a JobInsert) -> &'a str| {
            keyed.iter().map(|r| f(r)).collect::<Vec<_>>()
        };
        sqlx::query(ENQUEUE.postgres)
            .bind(col(|r| r.id.as_str()))
            .bind(col(|r| r.kind.as_str()))
            .bind(col(|r| r.payload.as_str()))
            .bind(keyed.iter().map(|r| r.priority).collect::<Vec<_>>())
            .bind(col(|r| r.labels.as_str()))
            .bind(keyed.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
            .bind(keyed.iter().map(|r| r.max_attempts).collect::<Vec<_>>())
            .bind(keyed.iter().map(|r| r.timeout_ms).collect::<Vec<_>>())
            .bind(keyed.iter().map(|r| r.run_at).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let keys: Vec<&str> = keyed.iter().filter_map(|r| r.key.as_deref()).collect();
        let found: Vec<(String, String)> = sqlx::query_as(IDS_BY_KEY.postgres)
            .bind(keys)
            .fetch_all(&mut *tx)
            .await?;
        existing.extend(found);
    }
    tx.commit().await?;
    Ok(existing)
}

/// Appends one row of COPY text format: tab-separated, newline-terminated, with the
/// characters that format gives a meaning (backslash, tab, newline, carriage return) escaped.
fn copy_row(buf: &mut String, r: &JobInsert, now: i64) {
    use std::fmt::Write as _;
    for text in [&r.id, &r.kind, &r.payload] {
        copy_text(buf, text);
        buf.push('\t');
    }
    let _ = std::write!(buf, "{}\t", r.priority);
    copy_text(buf, &r.labels);
    let _ = writeln!(
        buf,
        "\t{}\t{}\t{}\t{}",
        r.max_attempts, r.timeout_ms, r.run_at, now
    );
}

fn copy_text(buf: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

/// SQLite: one JSON document per chunk of rows, all in one write transaction.
async fn enqueue_sqlite(
    pool: &sqlx::SqlitePool,
    rows: &[JobInsert],
    now: i64,
) -> Result<HashMap<String, String>, PoolError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut existing = HashMap::new();
    for chunk in rows.chunks(ENQUEUE_CHUNK) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "kind": r.kind, "payload": r.payload, "priority": r.priority,
                    "labels": r.labels, "key": r.key, "max_attempts": r.max_attempts,
                    "timeout_ms": r.timeout_ms, "run_at": r.run_at,
                })
            })
            .collect();
        sqlx::query(ENQUEUE.sqlite)
            .bind(Value::from(docs).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let keys: Vec<&str> = chunk.iter().filter_map(|r| r.key.as_deref()).collect();
        if !keys.is_empty() {
            let found: Vec<(String, String)> = sqlx::query_as(IDS_BY_KEY.sqlite)
                .bind(serde_json::to_string(&keys).unwrap_or_default())
                .fetch_all(&mut *tx)
                .await?;
            existing.extend(found);
        }
    }
    tx.commit().await?;
    Ok(existing)
}

/// Results as the parallel arrays (ids, attempts, JSON texts) the Postgres statements take.
fn results_arrays(results: &[(Lease, Value)]) -> (Vec<&str>, Vec<i32>, Vec<String>) {
    let ids = results.iter().map(|(l, _)| l.id.as_str()).collect();
    let attempts = results.iter().map(|(l, _)| l.attempt).collect();
    let values = results.iter().map(|(_, v)| v.to_string()).collect();
    (ids, attempts, values)
}

fn results_json(results: &[(Lease, Value)]) -> String {
    let batch: Vec<Value> = results
        .iter()
        .map(|(l, r)| json!({"id": l.id, "attempt": l.attempt, "result": r.to_string()}))
        .collect();
    Value::from(batch).to_string()
}

fn labels_json(labels: &[String]) -> String {
    Value::from(labels.to_vec()).to_string()
}

fn parse_json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

#[async_trait]
impl JobQueue for SqlQueue {
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, PoolError> {
        for job in jobs {
            job.validate()?;
        }
        let now = now_ms();
        let rows: Vec<JobInsert> = jobs
            .iter()
            .map(|job| JobInsert {
                id: new_job_id(),
                kind: job.kind.clone(),
                payload: job.payload.to_string(),
                priority: job.priority,
                labels: labels_json(&job.labels),
                key: job.key.clone(),
                max_attempts: job.max_attempts,
                timeout_ms: duration_ms(job.timeout),
                run_at: job.run_at.map_or(now, |t| t.timestamp_millis()),
            })
            .collect();
        // One transaction for the whole batch: a failure enqueues nothing.
        let existing = match self.pool() {
            Pool::Postgres(p) => enqueue_postgres(p, &rows, now).await?,
            Pool::Sqlite(p) => enqueue_sqlite(p, &rows, now).await?,
        };
        let out = rows
            .into_iter()
            .map(|row| match row.key.and_then(|k| existing.get(&k)) {
                Some(found) => Enqueued {
                    created: *found == row.id,
                    id: found.clone(),
                },
                None => Enqueued {
                    id: row.id,
                    created: true,
                },
            })
            .collect();
        self.notify().await?;
        Ok(out)
    }

    async fn claim(
        &self,
        node: &str,
        kinds: &[String],
        labels: &[String],
        max: usize,
    ) -> Result<Vec<ClaimedJob>, PoolError> {
        if max == 0 || kinds.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let labels = labels_json(labels);
        let rows: Vec<ClaimRow> = match self.pool() {
            Pool::Postgres(p) => {
                sqlx::query_as(CLAIM.postgres)
                    .bind(now)
                    .bind(node)
                    .bind(kinds)
                    .bind(&labels)
                    .bind(max)
                    .fetch_all(p)
                    .await?
            }
            Pool::Sqlite(_) => {
                let kinds = labels_json(kinds);
                write!(self.pool(), |ex| {
                    sqlx::query_as(CLAIM.sqlite)
                        .bind(now)
                        .bind(node)
                        .bind(&kinds)
                        .bind(&labels)
                        .bind(max)
                        .fetch_all(ex)
                        .await?
                })?
            }
        };
        let mut jobs: Vec<ClaimedJob> = rows.into_iter().map(ClaimRow::decode).collect();
        // RETURNING has no order: run the most urgent first.
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        Ok(jobs)
    }

    async fn succeed_and_claim(
        &self,
        node: &str,
        results: &[(Lease, Value)],
        kinds: &[String],
        labels: &[String],
        max: usize,
    ) -> Result<(u64, Vec<ClaimedJob>), PoolError> {
        if results.is_empty() {
            return Ok((0, self.claim(node, kinds, labels, max).await?));
        }
        if max == 0 || kinds.is_empty() {
            return Ok((self.succeed(node, results).await?, Vec::new()));
        }
        let now = now_ms();
        let labels = labels_json(labels);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let (done, rows) = match self.pool() {
            Pool::Postgres(p) => {
                let (ids, attempts, values) = results_arrays(results);
                let rows: Vec<DoneOrClaimed> = sqlx::query_as(SUCCEED_AND_CLAIM_PG)
                    .bind(now)
                    .bind(node)
                    .bind(kinds)
                    .bind(&labels)
                    .bind(max)
                    .bind(ids)
                    .bind(attempts)
                    .bind(values)
                    .fetch_all(p)
                    .await?;
                let done = rows.iter().filter(|r| r.done).count() as u64;
                let claimed = rows
                    .into_iter()
                    .filter_map(DoneOrClaimed::claimed)
                    .collect();
                (done, claimed)
            }
            Pool::Sqlite(_) => {
                // One write transaction: one turn of the write lock instead of two.
                let (succeed, claim) = (SUCCEED.sqlite, CLAIM.sqlite);
                let (batch, kinds) = (results_json(results), labels_json(kinds));
                write!(self.pool(), |ex| {
                    let done = sqlx::query(succeed)
                        .bind(&batch)
                        .bind(now)
                        .bind(node)
                        .execute(&mut *ex)
                        .await?
                        .rows_affected();
                    let rows: Vec<ClaimRow> = sqlx::query_as(claim)
                        .bind(now)
                        .bind(node)
                        .bind(&kinds)
                        .bind(&labels)
                        .bind(max)
                        .fetch_all(&mut *ex)
                        .await?;
                    (done, rows)
                })?
            }
        };
        let mut jobs: Vec<ClaimedJob> = rows.into_iter().map(ClaimRow::decode).collect();
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        Ok((done, jobs))
    }

    async fn succeed(&self, node: &str, results: &[(Lease, Value)]) -> Result<u64, PoolError> {
        if results.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let n = match self.pool() {
            Pool::Postgres(p) => {
                let (ids, attempts, values) = results_arrays(results);
                sqlx::query(SUCCEED.postgres)
                    .bind(ids)
                    .bind(attempts)
                    .bind(values)
                    .bind(now)
                    .bind(node)
                    .execute(p)
                    .await?
                    .rows_affected()
            }
            Pool::Sqlite(_) => {
                let batch = results_json(results);
                write!(self.pool(), |ex| {
                    sqlx::query(SUCCEED.sqlite)
                        .bind(&batch)
                        .bind(now)
                        .bind(node)
                        .execute(ex)
                        .await?
                        .rows_affected()
                })?
            }
        };
        Ok(n)
    }

    async fn fail(
        &self,
        node: &str,
        job: &ClaimedJob,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome, PoolError> {
        let now = now_ms();
        let (state, run_at, finished, outcome) = if !retryable {
            (JobState::Failed, None, Some(now), FailOutcome::Failed)
        } else if job.attempt >= job.max_attempts {
            (JobState::Dead, None, Some(now), FailOutcome::Dead)
        } else {
            let at = now + duration_ms(self.retry.delay(job.attempt));
            (
                JobState::Queued,
                Some(at),
                None,
                FailOutcome::Retry { at: ms_to_time(at) },
            )
        };
        let sql = FAIL.for_pool(self.pool());
        let n = write!(self.pool(), |ex| {
            sqlx::query(sql)
                .bind(&job.id)
                .bind(node)
                .bind(job.attempt)
                .bind(state.as_str())
                .bind(error)
                .bind(run_at)
                .bind(finished)
                .execute(ex)
                .await?
                .rows_affected()
        })?;
        if n == 0 {
            return Ok(FailOutcome::LeaseLost);
        }
        if state == JobState::Queued {
            self.notify().await?;
        }
        Ok(outcome)
    }

    async fn release(&self, node: &str, lease: &Lease) -> Result<bool, PoolError> {
        let sql = RELEASE.for_pool(self.pool());
        let now = now_ms();
        let n = write!(self.pool(), |ex| {
            sqlx::query(sql)
                .bind(&lease.id)
                .bind(node)
                .bind(lease.attempt)
                .bind(now)
                .execute(ex)
                .await?
                .rows_affected()
        })?;
        if n > 0 {
            self.notify().await?;
        }
        Ok(n > 0)
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, PoolError> {
        let sql = CANCEL.for_pool(self.pool());
        let now = now_ms();
        let row: Option<Option<i64>> = write!(self.pool(), |ex| {
            sqlx::query_scalar(sql)
                .bind(id)
                .bind(now)
                .fetch_optional(ex)
                .await?
        })?;
        match row {
            Some(Some(_)) => Ok(Cancelled::Queued),
            Some(None) => Ok(Cancelled::Running),
            None => match self.get(id).await? {
                None => Err(PoolError::NoSuchJob(id.to_owned())),
                Some(job) => Err(PoolError::Invalid(format!(
                    "cannot cancel job {id}: it already ended ({})",
                    job.state
                ))),
            },
        }
    }

    async fn cancel_ack(&self, id: &str) -> Result<(), PoolError> {
        let sql = CANCEL_ACK.for_pool(self.pool());
        let now = now_ms();
        write!(self.pool(), |ex| {
            sqlx::query(sql)
                .bind(id)
                .bind(now)
                .execute(ex)
                .await?
                .rows_affected()
        })?;
        Ok(())
    }

    async fn register_node(&self, node: &NodeSpec) -> Result<(), PoolError> {
        let sql = NODE_REGISTER.for_pool(self.pool());
        let now = now_ms();
        let (labels, kinds) = (labels_json(&node.labels), labels_json(&node.kinds));
        write!(self.pool(), |ex| {
            sqlx::query(sql)
                .bind(&node.id)
                .bind(&node.hostname)
                .bind(node.pid)
                .bind(&labels)
                .bind(&kinds)
                .bind(node.capacity)
                .bind(now)
                .bind(duration_ms(node.timeout))
                .execute(ex)
                .await?
                .rows_affected()
        })?;
        Ok(())
    }

    async fn heartbeat(&self, node: &str, state: &str) -> Result<(), PoolError> {
        let sql = NODE_HEARTBEAT.for_pool(self.pool());
        let now = now_ms();
        write!(self.pool(), |ex| {
            sqlx::query(sql)
                .bind(node)
                .bind(now)
                .bind(state)
                .execute(ex)
                .await?
                .rows_affected()
        })?;
        Ok(())
    }

    async fn lost_leases(&self, node: &str, leases: &[Lease]) -> Result<Vec<LostLease>, PoolError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = LOST_LEASES.for_pool(self.pool());
        let batch = serde_json::to_string(leases)
            .map_err(|e| PoolError::Worker(format!("encoding leases: {e}")))?;
        let rows: Vec<(String, Option<String>)> = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query_as(sql)
                .bind(&batch)
                .bind(node)
                .fetch_all(p)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, state)| LostLease {
                id,
                state: state.and_then(|s| s.parse().ok()),
            })
            .collect())
    }

    async fn reclaim(&self) -> Result<Vec<String>, PoolError> {
        let (reclaim, lost) = (
            RECLAIM.for_pool(self.pool()),
            NODES_LOST.for_pool(self.pool()),
        );
        let now = now_ms();
        let ids: Vec<String> = write!(self.pool(), |ex| {
            let ids = sqlx::query_scalar(reclaim)
                .bind(now)
                .fetch_all(&mut *ex)
                .await?;
            sqlx::query(lost).bind(now).execute(&mut *ex).await?;
            ids
        })?;
        if !ids.is_empty() {
            self.notify().await?;
        }
        Ok(ids)
    }

    async fn next_run(
        &self,
        kinds: &[String],
        labels: &[String],
        recheck: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, PoolError> {
        let sql = NEXT_RUN.for_pool(self.pool());
        let (kinds, labels) = (labels_json(kinds), labels_json(labels));
        let at: Option<i64> = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query_scalar(sql)
                .bind(&kinds)
                .bind(&labels)
                .bind(recheck.timestamp_millis())
                .fetch_one(p)
                .await
        })?;
        Ok(at.map(ms_to_time))
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, PoolError> {
        let sql = format!("{JOB_SELECT} WHERE id = $1");
        let row: Option<JobRow> = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql).bind(id).fetch_optional(p).await
        })?;
        row.map(JobRow::decode).transpose()
    }

    async fn list(&self, state: Option<JobState>, limit: i64) -> Result<Vec<Job>, PoolError> {
        let sql = format!(
            "{JOB_SELECT} WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<JobRow> = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query_as(&sql)
                .bind(state.map(JobState::as_str))
                .bind(limit.max(0))
                .fetch_all(p)
                .await
        })?;
        rows.into_iter().map(JobRow::decode).collect()
    }

    async fn nodes(&self, limit: i64) -> Result<Vec<Node>, PoolError> {
        let sql = NODES.for_pool(self.pool());
        let rows: Vec<NodeRow> = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query_as(sql).bind(limit.max(0)).fetch_all(p).await
        })?;
        Ok(rows.into_iter().map(NodeRow::decode).collect())
    }

    async fn stats(&self) -> Result<Stats, PoolError> {
        let sql = STATS.for_pool(self.pool());
        let rows = zocalo_store::with_pool!(self.pool(), |p| {
            sqlx::query(sql).fetch_all(p).await.and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
        })?;
        let mut stats = Stats::default();
        for (state, n) in rows {
            match state.parse::<JobState>() {
                Ok(JobState::Queued) => stats.queued = n,
                Ok(JobState::Running) => stats.running = n,
                Ok(JobState::Succeeded) => stats.succeeded = n,
                Ok(JobState::Failed) => stats.failed = n,
                Ok(JobState::Dead) => stats.dead = n,
                Ok(JobState::Cancelled) => stats.cancelled = n,
                Err(_) => {}
            }
        }
        Ok(stats)
    }
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    kind: String,
    payload: String,
    priority: i32,
    attempts: i32,
    max_attempts: i32,
    timeout_ms: i64,
}

impl ClaimRow {
    fn decode(self) -> ClaimedJob {
        ClaimedJob {
            // A payload that no longer parses reaches the handler as a string, which rejects it.
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::String(self.payload)),
            id: self.id,
            kind: self.kind,
            priority: self.priority,
            attempt: self.attempts,
            max_attempts: self.max_attempts,
            timeout: Duration::from_millis(u64::try_from(self.timeout_ms).unwrap_or(1)),
        }
    }
}

/// A row of succeed_and_claim.sql: a claimed job, or (done) the id of a recorded success.
#[derive(sqlx::FromRow)]
struct DoneOrClaimed {
    done: bool,
    id: String,
    kind: Option<String>,
    payload: Option<String>,
    priority: Option<i32>,
    attempts: Option<i32>,
    max_attempts: Option<i32>,
    timeout_ms: Option<i64>,
}

impl DoneOrClaimed {
    fn claimed(self) -> Option<ClaimRow> {
        if self.done {
            return None;
        }
        Some(ClaimRow {
            id: self.id,
            kind: self.kind?,
            payload: self.payload?,
            priority: self.priority?,
            attempts: self.attempts?,
            max_attempts: self.max_attempts?,
            timeout_ms: self.timeout_ms?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    payload: String,
    priority: i32,
    labels: String,
    idempotency_key: Option<String>,
    state: String,
    attempts: i32,
    max_attempts: i32,
    timeout_ms: i64,
    run_at: i64,
    lease_owner: Option<String>,
    lease_expires: Option<i64>,
    result: Option<String>,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl JobRow {
    fn decode(self) -> Result<Job, PoolError> {
        let corrupt = |what: String| {
            PoolError::Store(zocalo_store::StoreError::Corrupt(format!(
                "job {}: {what}",
                self.id
            )))
        };
        let state = self
            .state
            .parse::<JobState>()
            .map_err(|_| corrupt(format!("unknown state {:?}", self.state)))?;
        let json = |s: &str| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.into()));
        Ok(Job {
            payload: json(&self.payload),
            labels: parse_json_list(&self.labels),
            result: self.result.as_deref().map(json),
            state,
            id: self.id,
            kind: self.kind,
            priority: self.priority,
            key: self.idempotency_key,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            run_at: ms_to_time(self.run_at),
            node: self.lease_owner,
            lease_expires: self.lease_expires.map(ms_to_time),
            error: self.error,
            created_at: ms_to_time(self.created_at),
            started_at: self.started_at.map(ms_to_time),
            finished_at: self.finished_at.map(ms_to_time),
        })
    }
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    hostname: String,
    pid: i64,
    labels: String,
    kinds: String,
    capacity: i32,
    state: String,
    started_at: i64,
    last_seen: i64,
    timeout_ms: i64,
    running: i64,
}

impl NodeRow {
    fn decode(self) -> Node {
        Node {
            labels: parse_json_list(&self.labels),
            kinds: parse_json_list(&self.kinds),
            id: self.id,
            hostname: self.hostname,
            pid: self.pid,
            capacity: self.capacity,
            state: self.state,
            started_at: ms_to_time(self.started_at),
            last_seen: ms_to_time(self.last_seen),
            timeout_ms: self.timeout_ms,
            running: self.running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d10 = p.delay(10);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1000));
        }
    }
}
