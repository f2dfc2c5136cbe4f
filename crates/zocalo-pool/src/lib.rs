//! zocalo-pool: the compute pool, a durable job queue that machines join as workers.
//!
//! - [`job`]: the plain data: [`JobState`] (queued, running, succeeded, failed, dead,
//!   cancelled), [`NewJob`], [`ClaimedJob`], [`Job`], [`Node`], [`Stats`].
//! - [`queue`]: the [`JobQueue`] trait and [`SqlQueue`] on SQLite or PostgreSQL: enqueue
//!   (idempotency keys), batched claims (`FOR UPDATE SKIP LOCKED` on Postgres, a short
//!   `BEGIN IMMEDIATE` write on SQLite), lease-checked finishing, retries with backoff and
//!   jitter, cancel, reclaiming the jobs of silent nodes, LISTEN/NOTIFY wake-ups. The SQL is
//!   in `src/sql/`.
//! - [`handler`]: the [`Handler`] trait and [`Registry`] of job kinds; `noop` and `shell`.
//! - [`worker`]: [`Worker`], one node: heartbeat, claim loop, recorder, graceful shutdown.
//! - [`PoolError`]: what fails; [`PoolError::is_usage`] tells bad input from a failing
//!   environment.

pub mod error;
pub mod handler;
pub mod job;
pub mod queue;
pub mod tools;
pub mod worker;

pub use error::PoolError;
pub use handler::{
    Handler, JobError, JobRun, Noop, PayloadError, Registry, Shell, ShellPayload, StopReason,
    StopSignal,
};
pub use job::{
    new_job_id, parse_labels, ClaimedJob, Enqueued, Job, JobState, Lease, NewJob, Node, Stats,
};
pub use queue::{Cancelled, FailOutcome, JobQueue, LostLease, NodeSpec, RetryPolicy, SqlQueue};
pub use worker::{Worker, WorkerConfig, WorkerReport};
