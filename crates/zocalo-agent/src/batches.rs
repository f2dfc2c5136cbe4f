//! [`Batches`]: the record of sub-agent batches (tables `agent_batches` and `agent_runs`,
//! migration 0050), on whichever backend the store uses.
//!
//! A batch row is written with one `pending` row per agent before any agent starts, so a
//! batch that dies with its process still shows what never finished. Each agent's row gets
//! its status, output or error, elapsed time and conversation when it ends.

use serde::Serialize;
use zocalo_core::ConversationId;
use zocalo_store::{with_pool, PreparedTurn, Store, StoreError, TurnWriter};

use crate::spawn::{AgentResult, AgentStatus, AgentTask, ErrorKind};

const BATCH_SELECT: &str = include_str!("sql/batch_select.sql");
const RUN_SELECT: &str = include_str!("sql/run_select.sql");
const BATCH_INSERT: &str = include_str!("sql/batch_insert.sql");
const BATCH_FINISH: &str = include_str!("sql/batch_finish.sql");
const RUN_FINISH: &str = include_str!("sql/run_finish.sql");
const RUN_SET_JOB: &str = include_str!("sql/run_set_job.sql");
/// Rows per multi-row INSERT (5 parameters each, far below SQLite's limit).
const INSERT_CHUNK: usize = 500;

/// What a batch was started with.
#[derive(Clone, Debug)]
pub(crate) struct NewBatch<'a> {
    pub id: &'a str,
    pub parent: Option<&'a ConversationId>,
    pub depth: u32,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub runner: &'a str,
    pub concurrency: usize,
    pub timeout_ms: Option<u64>,
}

/// Where a batch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Started and not finished (or its process died before it could say so).
    Running,
    /// Every agent ended (ok or error).
    Finished,
    /// Stopped by a cancellation before every agent ended.
    Cancelled,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Finished => "finished",
            BatchState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "running" => Ok(BatchState::Running),
            "finished" => Ok(BatchState::Finished),
            "cancelled" => Ok(BatchState::Cancelled),
            other => Err(corrupt(format!("unknown batch state {other:?}"))),
        }
    }
}

/// One batch as `agents list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchSummary {
    pub id: String,
    pub parent_conversation_id: Option<String>,
    pub depth: u32,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// `local` or `pool`.
    pub runner: String,
    pub concurrency: u64,
    pub timeout_ms: Option<u64>,
    pub state: BatchState,
    pub total: u64,
    pub ok: u64,
    pub error: u64,
    pub pending: u64,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub finished_at: Option<String>,
}

/// One agent of a batch as `agents show` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    /// `pending` while it has not ended, else `ok` or `error`.
    pub status: String,
    pub prompt: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub elapsed_ms: Option<u64>,
    pub conversation_id: Option<String>,
    pub job_id: Option<String>,
}

/// A batch and its agents, in input order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub batch: BatchSummary,
    pub agents: Vec<RunRecord>,
}

/// The batch record on a [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Batches {
    store: Store,
}

impl Batches {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The batch row and one `pending` row per task, in one transaction.
    pub(crate) async fn create(
        &self,
        batch: &NewBatch<'_>,
        tasks: &[AgentTask],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let total = i64::try_from(tasks.len()).unwrap_or(i64::MAX);
        let timeout = batch
            .timeout_ms
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let concurrency = i64::try_from(batch.concurrency).unwrap_or(i64::MAX);
        with_pool!(self.store.pool(), |p| {
            async {
                let mut tx = p.begin().await?;
                sqlx::query(BATCH_INSERT)
                    .bind(batch.id)
                    .bind(batch.parent.map(ConversationId::as_str))
                    .bind(i64::from(batch.depth))
                    .bind(batch.provider)
                    .bind(batch.model)
                    .bind(batch.runner)
                    .bind(concurrency)
                    .bind(timeout)
                    .bind(total)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                for (chunk_no, chunk) in tasks.chunks(INSERT_CHUNK).enumerate() {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO agent_runs (batch_id, seq, task_id, prompt, status) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut row, (i, task)| {
                        let seq = (chunk_no * INSERT_CHUNK + i) as i64;
                        row.push_bind(batch.id)
                            .push_bind(seq)
                            .push_bind(task.id.as_str())
                            .push_bind(task.prompt.as_str())
                            .push_bind("pending");
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// Records how these agents ended, with the conversations of those that answered
    /// (`turns`, written first: the rows point at them), in one transaction: each agent is
    /// recorded whole or not at all. The spawner batches its writes: one commit per agent
    /// would make a thousand agents queue behind SQLite's write lock.
    pub(crate) async fn finish_runs(
        &self,
        batch_id: &str,
        results: &[AgentResult],
        turns: &mut [PreparedTurn],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self.store.pool(), |p| {
            async {
                let mut tx = p.begin().await?;
                (*tx).append_turns(turns).await?;
                for result in results {
                    let (status, kind) = match (result.status, result.error_kind) {
                        (AgentStatus::Ok, _) => ("ok", None),
                        (AgentStatus::Error, k) => {
                            ("error", Some(k.unwrap_or(ErrorKind::Failed).as_str()))
                        }
                    };
                    sqlx::query(RUN_FINISH)
                        .bind(batch_id)
                        .bind(result.index as i64)
                        .bind(status)
                        .bind(kind)
                        .bind(result.error.as_deref())
                        .bind(result.output.as_deref())
                        .bind(result.conversation_id.as_ref().map(ConversationId::as_str))
                        .bind(result.job_id.as_deref())
                        .bind(i64::try_from(result.elapsed_ms).unwrap_or(i64::MAX))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// Notes the pool job that runs agent `seq` (so a cancelled batch can be traced).
    pub async fn set_job(
        &self,
        batch_id: &str,
        seq: usize,
        job_id: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self.store.pool(), |p| {
            sqlx::query(RUN_SET_JOB)
                .bind(batch_id)
                .bind(seq as i64)
                .bind(job_id)
                .execute(p)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    pub(crate) async fn finish_batch(
        &self,
        batch_id: &str,
        state: BatchState,
    ) -> Result<(), StoreError> {
        with_pool!(self.store.pool(), |p| {
            sqlx::query(BATCH_FINISH)
                .bind(batch_id)
                .bind(state.as_str())
                .bind(now_ms())
                .execute(p)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    /// The `limit` most recent batches, newest first, with their agents counted by status.
    pub async fn list(&self, limit: i64) -> Result<Vec<BatchSummary>, StoreError> {
        let sql = format!("{BATCH_SELECT} ORDER BY b.created_at DESC, b.id DESC LIMIT $1");
        let rows: Vec<BatchRow> = with_pool!(self.store.pool(), |p| {
            sqlx::query_as(&sql).bind(limit.max(0)).fetch_all(p).await
        })?;
        rows.into_iter().map(BatchRow::decode).collect()
    }

    /// One batch with its agents in input order; `None` if there is no such batch.
    pub async fn show(&self, id: &str) -> Result<Option<BatchDetail>, StoreError> {
        let sql = format!("{BATCH_SELECT} WHERE b.id = $1");
        let row: Option<BatchRow> = with_pool!(self.store.pool(), |p| {
            sqlx::query_as(&sql).bind(id).fetch_optional(p).await
        })?;
        let Some(row) = row else { return Ok(None) };
        let batch = row.decode()?;
        let runs: Vec<RunRow> = with_pool!(self.store.pool(), |p| {
            sqlx::query_as(RUN_SELECT).bind(id).fetch_all(p).await
        })?;
        Ok(Some(BatchDetail {
            batch,
            agents: runs.into_iter().map(RunRow::decode).collect(),
        }))
    }
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: String,
    parent_conversation_id: Option<String>,
    depth: i64,
    provider: Option<String>,
    model: Option<String>,
    runner: String,
    concurrency: i64,
    timeout_ms: Option<i64>,
    state: String,
    total: i64,
    ok: i64,
    error: i64,
    created_at: i64,
    finished_at: Option<i64>,
}

impl BatchRow {
    fn decode(self) -> Result<BatchSummary, StoreError> {
        let total = u64::try_from(self.total).unwrap_or(0);
        let ok = u64::try_from(self.ok).unwrap_or(0);
        let error = u64::try_from(self.error).unwrap_or(0);
        Ok(BatchSummary {
            id: self.id,
            parent_conversation_id: self.parent_conversation_id,
            depth: u32::try_from(self.depth).unwrap_or(0),
            provider: self.provider,
            model: self.model,
            runner: self.runner,
            concurrency: u64::try_from(self.concurrency).unwrap_or(0),
            timeout_ms: self.timeout_ms.and_then(|t| u64::try_from(t).ok()),
            state: BatchState::parse(&self.state)?,
            total,
            ok,
            error,
            pending: total.saturating_sub(ok + error),
            created_at: rfc3339(self.created_at),
            finished_at: self.finished_at.map(rfc3339),
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    task_id: String,
    status: String,
    prompt: String,
    output: Option<String>,
    error: Option<String>,
    error_kind: Option<String>,
    elapsed_ms: Option<i64>,
    conversation_id: Option<String>,
    job_id: Option<String>,
}

impl RunRow {
    fn decode(self) -> RunRecord {
        RunRecord {
            id: self.task_id,
            status: self.status,
            prompt: self.prompt,
            output: self.output,
            error: self.error,
            error_kind: self.error_kind,
            elapsed_ms: self.elapsed_ms.and_then(|t| u64::try_from(t).ok()),
            conversation_id: self.conversation_id,
            job_id: self.job_id,
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}
