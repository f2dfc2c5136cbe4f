//! Sub-agents: many asks at once, bounded, cancellable, each recorded.
//!
//! A [`Spawner`] runs [`AgentTask`]s through an [`AgentRunner`] (an [`Asker`] in this process,
//! or anything else that turns a prompt into an answer, such as the CLI's pool runner):
//!
//! - at most [`SpawnOptions::concurrency`] agents run at once, started in input order;
//! - each agent may take at most [`SpawnOptions::timeout`]; the whole batch at most
//!   [`SpawnOptions::deadline`]; [`SpawnOptions::cancel`] stops it from outside. A stopped agent's
//!   future is dropped (its HTTP request closed, nothing half-written) and it ends as
//!   `status: error` with an [`ErrorKind`] saying why; agents not started yet end the same way;
//! - a failing agent is an `error` result; the others go on;
//! - [`AgentEvent`]s stream out as agents start and finish, and the final
//!   [`BatchReport::results`] keeps input order;
//! - with a store ([`Spawner::with_store`]) the batch and every agent are recorded (see
//!   [`crate::batches`]), each agent's conversation linked to its batch and the batch to the
//!   conversation that spawned it. A finished agent's conversation is written together with
//!   its result row, and with every other agent that finished meanwhile, in one transaction
//!   ([`AgentRunner::run_uncommitted`]): each agent is recorded whole or not at all, and a
//!   thousand agents are a few commits, not a thousand. The record is complete when the
//!   batch's report is; an [`AgentEvent::Finished`] may come just before its agent's commit.
//!
//! Agents spawned by agents know their depth ([`current_depth`]), so the `spawn_agents` tool
//! can refuse to go deeper than its limit.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zocalo_core::ConversationId;
use zocalo_store::{PreparedTurn, Store};

use crate::ask::{PendingTurn, TurnHook};
use crate::batches::{BatchState, Batches, NewBatch};
use crate::{AgentError, AskRequest, Asker};

/// Longest task id accepted.
pub const MAX_TASK_ID_LEN: usize = 200;

/// One agent to run: an id of the caller's choosing (unique in its batch) and its prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTask {
    pub id: String,
    pub prompt: String,
}

impl AgentTask {
    pub fn new(id: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            prompt: prompt.into(),
        }
    }
}

/// `ok` or `error` (the `zocalo agents` JSON contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Ok,
    Error,
}

/// Why an agent ended in error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The ask failed (provider error, tool failure, ...): `error` says how.
    Failed,
    /// It ran longer than the per-agent timeout.
    Timeout,
    /// The batch was cancelled before it finished (or before it started).
    Cancelled,
    /// The batch deadline passed before it finished (or before it started).
    Deadline,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Deadline => "deadline",
        }
    }
}

/// How one agent ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentResult {
    /// Position in the input, from 0.
    #[serde(skip)]
    pub index: usize,
    pub id: String,
    pub status: AgentStatus,
    /// The answer (`None` on error).
    pub output: Option<String>,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The agent's own conversation, once its answer is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    /// The pool job that ran it, for agents run on the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl AgentResult {
    fn failed(index: usize, id: &str, kind: ErrorKind, error: String, elapsed: Duration) -> Self {
        Self {
            index,
            id: id.to_owned(),
            status: AgentStatus::Error,
            output: None,
            elapsed_ms: elapsed.as_millis() as u64,
            error: Some(error),
            error_kind: Some(kind),
            conversation_id: None,
            job_id: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == AgentStatus::Ok
    }
}

/// What streams out of a running batch.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// Agent `index` started running.
    Started { index: usize, id: String },
    /// An agent ended (also for agents that never started because the batch stopped).
    Finished(AgentResult),
}

/// A finished batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    /// One result per task, in input order.
    pub results: Vec<AgentResult>,
    /// Stopped by cancellation or the deadline before every agent could finish.
    pub stopped: Option<ErrorKind>,
    pub elapsed_ms: u64,
}

impl BatchReport {
    pub fn ok_count(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }
}

/// One agent's run, as an [`AgentRunner`] sees it.
#[derive(Clone, Debug)]
pub struct AgentRun {
    pub batch_id: String,
    pub index: usize,
    pub task_id: String,
    pub prompt: String,
    /// Model override for the batch (`None`: the provider's default).
    pub model: Option<String>,
    /// The agent's depth in the agent tree (1 for agents a user spawned). A runner that
    /// runs the agent elsewhere (a pool worker) carries it along, so the `spawn_agents`
    /// depth limit holds there too (see [`at_depth`]).
    pub depth: u32,
}

/// An agent's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentAnswer {
    pub text: String,
    pub conversation_id: Option<ConversationId>,
    pub job_id: Option<String>,
}

/// Why one agent's run failed. The spawner records its message; whether it was a failure, a
/// timeout, a cancel or the deadline is the spawner's to say, not the runner's.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ask loop failed (provider, budget, store, ...).
    #[error(transparent)]
    Ask(#[from] AgentError),
    /// A runner of its own failed (the pool: the job could not be queued, or it died).
    #[error("{0}")]
    Runner(String),
}

impl From<String> for RunError {
    fn from(message: String) -> Self {
        RunError::Runner(message)
    }
}

impl From<&str> for RunError {
    fn from(message: &str) -> Self {
        RunError::Runner(message.to_owned())
    }
}

/// Turns one prompt into one answer. The future is dropped to stop it (timeout,
/// cancellation), so implementations must leave nothing half-done when dropped.
#[async_trait]
pub trait AgentRunner: Send + Sync {
    /// `local` for an ask loop in this process, `pool` for pool jobs (recorded per batch).
    fn kind(&self) -> &'static str {
        "local"
    }

    /// The provider name recorded with the batch.
    fn provider(&self) -> Option<String> {
        None
    }

    async fn run(&self, run: &AgentRun) -> Result<AgentAnswer, RunError>;

    /// [`AgentRunner::run`], leaving the agent's conversation unwritten for the spawner to
    /// store with its result row (many agents per transaction). The default runs `run` and
    /// has nothing left to write.
    async fn run_uncommitted(
        &self,
        run: &AgentRun,
    ) -> Result<(AgentAnswer, Option<PendingTurn>), RunError> {
        Ok((self.run(run).await?, None))
    }
}

/// Each agent is one ask in a new conversation, unattended (nobody is there to approve: `ask`
/// means deny) and limited by `[budgets] agent_tokens`.
#[async_trait]
impl AgentRunner for Asker {
    fn provider(&self) -> Option<String> {
        Some(self.provider_name().to_owned())
    }

    async fn run(&self, run: &AgentRun) -> Result<AgentAnswer, RunError> {
        let (answer, turn) = self.run_uncommitted(run).await?;
        if let Some(turn) = turn {
            turn.commit().await?;
        }
        Ok(answer)
    }

    async fn run_uncommitted(
        &self,
        run: &AgentRun,
    ) -> Result<(AgentAnswer, Option<PendingTurn>), RunError> {
        let request = AskRequest {
            conversation: None,
            message: run.prompt.clone(),
            model: run.model.clone(),
        };
        let options = crate::AskOptions {
            approvals: crate::Approvals::unattended(),
            token_limit: crate::TokenLimit::agent(self.budgets()),
        };
        let (outcome, turn) = self.ask_uncommitted(request, &options, &mut |_| {}).await?;
        let answer = AgentAnswer {
            text: outcome.text,
            conversation_id: Some(outcome.conversation_id),
            job_id: None,
        };
        Ok((answer, Some(turn)))
    }
}

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// Agents running at once (at least 1).
    pub concurrency: usize,
    /// Longest one agent may run.
    pub timeout: Option<Duration>,
    /// Longest the whole batch may run; agents still running then end as `deadline`.
    pub deadline: Option<Duration>,
    /// Cancel to stop the batch: running agents are stopped, unstarted ones never start.
    pub cancel: CancellationToken,
    /// Model for every agent (`None`: the provider's default).
    pub model: Option<String>,
    /// The conversation that spawned this batch, recorded with it. Default: the conversation
    /// whose tool call is running ([`current_conversation`]), if any.
    pub parent: Option<ConversationId>,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            timeout: None,
            deadline: None,
            cancel: CancellationToken::new(),
            model: None,
            parent: None,
        }
    }
}

/// Where an agent runs: its batch and depth (1 for agents a user spawned).
#[derive(Clone, Debug)]
struct AgentScope {
    depth: u32,
}

tokio::task_local! {
    static SCOPE: AgentScope;
    static CONVERSATION: ConversationId;
}

/// How deep the current task is in the agent tree: 0 outside any agent, 1 inside an agent
/// a user spawned, 2 inside an agent that agent spawned, ...
pub fn current_depth() -> u32 {
    SCOPE.try_with(|s| s.depth).unwrap_or(0)
}

/// The conversation whose tool call is running on this task (set by the ask loop around
/// tool calls), if any.
pub fn current_conversation() -> Option<ConversationId> {
    CONVERSATION.try_with(Clone::clone).ok()
}

/// Runs `fut` as an agent at `depth` (its [`current_depth`]): how a pool worker runs an
/// agent's ask job, so agents spawned over the pool still count towards the depth limit.
pub async fn at_depth<F: std::future::Future>(depth: u32, fut: F) -> F::Output {
    SCOPE.scope(AgentScope { depth }, fut).await
}

/// Runs `fut` with `conversation` as [`current_conversation`].
pub async fn in_conversation<F: std::future::Future>(
    conversation: ConversationId,
    fut: F,
) -> F::Output {
    CONVERSATION.scope(conversation, fut).await
}

/// Checks tasks before anything runs: ids non-empty, at most [`MAX_TASK_ID_LEN`] bytes,
/// unique; prompts non-empty. `line_of(i)` names task `i` in errors (a JSONL line number,
/// for example).
pub fn validate_tasks(
    tasks: &[AgentTask],
    line_of: impl Fn(usize) -> Option<usize>,
) -> Result<(), AgentError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let bad = |message: String| AgentError::BadTask {
            line: line_of(i),
            message,
        };
        if t.id.trim().is_empty() {
            return Err(bad("`id` is empty".into()));
        }
        if t.id.len() > MAX_TASK_ID_LEN {
            return Err(bad(format!(
                "`id` is {} bytes long; at most {MAX_TASK_ID_LEN}",
                t.id.len()
            )));
        }
        if t.prompt.trim().is_empty() {
            return Err(bad(format!("`prompt` of {:?} is empty", t.id)));
        }
        if let Some(first) = seen.insert(t.id.as_str(), i) {
            let first = match line_of(first) {
                Some(l) => format!("line {l}"),
                None => format!("task {first}"),
            };
            return Err(bad(format!(
                "duplicate id {:?} (first used on {first})",
                t.id
            )));
        }
    }
    Ok(())
}

/// Parses JSONL: one `{"id": "...", "prompt": "..."}` per line; blank lines are skipped.
/// The first malformed line, missing field, unknown field, empty value or duplicate id is
/// an error naming its (1-based) line.
pub fn parse_tasks_jsonl(text: &str) -> Result<Vec<AgentTask>, AgentError> {
    let mut tasks = Vec::new();
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let task: AgentTask = serde_json::from_str(line).map_err(|e| AgentError::BadTask {
            line: Some(line_no),
            message: format!("{e}; expected {{\"id\": \"...\", \"prompt\": \"...\"}}"),
        })?;
        tasks.push(task);
        lines.push(line_no);
    }
    validate_tasks(&tasks, |i| lines.get(i).copied())?;
    Ok(tasks)
}

/// Runs batches of agents through one [`AgentRunner`]. Cheap to clone.
#[derive(Clone)]
pub struct Spawner {
    runner: Arc<dyn AgentRunner>,
    batches: Option<Batches>,
}

/// A batch started with [`Spawner::start`]: its id at once, events as they happen, the
/// report at the end.
pub struct RunningBatch {
    pub batch_id: String,
    pub events: tokio::sync::mpsc::UnboundedReceiver<AgentEvent>,
    /// Cancels the batch (the same token as [`SpawnOptions::cancel`]).
    pub cancel: CancellationToken,
    pub report: tokio::task::JoinHandle<Result<BatchReport, AgentError>>,
}

impl Spawner {
    pub fn new(runner: Arc<dyn AgentRunner>) -> Self {
        Self {
            runner,
            batches: None,
        }
    }

    /// Record batches and agents in `store`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.batches = Some(Batches::new(store));
        self
    }

    pub fn batches(&self) -> Option<&Batches> {
        self.batches.as_ref()
    }

    /// A new batch id, `batch_<uuidv7>`.
    pub fn new_batch_id() -> String {
        zocalo_core::ids::new_prefixed("batch")
    }

    /// Runs one agent (a batch of one).
    pub async fn spawn(
        &self,
        task: AgentTask,
        options: SpawnOptions,
    ) -> Result<AgentResult, AgentError> {
        let mut report = self.spawn_all(vec![task], options, |_| {}).await?;
        report.results.pop().ok_or_else(|| AgentError::BadTask {
            line: None,
            message: "no result".into(),
        })
    }

    /// Runs every task (see the module docs), calling `on_event` as agents start and end.
    /// Fails only on bad tasks (before anything runs) or when the record cannot be written.
    pub async fn spawn_all(
        &self,
        tasks: Vec<AgentTask>,
        options: SpawnOptions,
        mut on_event: impl FnMut(AgentEvent) + Send,
    ) -> Result<BatchReport, AgentError> {
        let id = Self::new_batch_id();
        self.run_batch(id, tasks, options, &mut on_event).await
    }

    /// [`Spawner::spawn_all`] in a background task: events come through a channel, the report
    /// through the join handle. Tasks are checked, and the batch and its agents recorded (with
    /// a store), before it returns, so the batch id can be looked up at once
    /// (`/api/agents/batches`). The batch runs one level below the caller's depth, as
    /// `spawn_all` would.
    pub async fn start(
        &self,
        tasks: Vec<AgentTask>,
        options: SpawnOptions,
    ) -> Result<RunningBatch, AgentError> {
        validate_tasks(&tasks, |_| None)?;
        let batch_id = Self::new_batch_id();
        let depth = current_depth() + 1;
        self.record_batch(&batch_id, &tasks, &options, depth)
            .await?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let cancel = options.cancel.clone();
        let this = self.clone();
        let id = batch_id.clone();
        let report = tokio::spawn(SCOPE.scope(AgentScope { depth: depth - 1 }, async move {
            this.run_recorded(id, tasks, options, &mut |e| {
                let _ = tx.send(e);
            })
            .await
        }));
        Ok(RunningBatch {
            batch_id,
            events,
            cancel,
            report,
        })
    }

    /// Writes the batch and its agents (pending) to the store, if there is one.
    async fn record_batch(
        &self,
        batch_id: &str,
        tasks: &[AgentTask],
        options: &SpawnOptions,
        depth: u32,
    ) -> Result<(), AgentError> {
        let Some(b) = &self.batches else {
            return Ok(());
        };
        let parent = options.parent.clone().or_else(current_conversation);
        b.create(
            &NewBatch {
                id: batch_id,
                parent: parent.as_ref(),
                depth,
                provider: self.runner.provider().as_deref(),
                model: options.model.as_deref(),
                runner: self.runner.kind(),
                concurrency: options.concurrency.max(1),
                timeout_ms: options.timeout.map(|t| t.as_millis() as u64),
            },
            tasks,
        )
        .await?;
        Ok(())
    }

    async fn run_batch(
        &self,
        batch_id: String,
        tasks: Vec<AgentTask>,
        options: SpawnOptions,
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<BatchReport, AgentError> {
        validate_tasks(&tasks, |_| None)?;
        self.record_batch(&batch_id, &tasks, &options, current_depth() + 1)
            .await?;
        self.run_recorded(batch_id, tasks, options, on_event).await
    }

    /// Runs a batch whose record (if any) exists already.
    async fn run_recorded(
        &self,
        batch_id: String,
        tasks: Vec<AgentTask>,
        options: SpawnOptions,
        on_event: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<BatchReport, AgentError> {
        let started = Instant::now();
        let concurrency = options.concurrency.max(1);
        let depth = current_depth() + 1;

        // Stops the agents of this batch: the caller's token, or the deadline.
        let stop = options.cancel.child_token();
        let why: Arc<OnceLock<ErrorKind>> = Arc::new(OnceLock::new());
        let deadline = options.deadline.map(|d| tokio::time::Instant::now() + d);

        // Results, with the agents' conversations, are recorded by a task of their own, many
        // agents per transaction, so the loop below never waits for the database before
        // starting the next agent.
        let (record, recorder) = match &self.batches {
            Some(b) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
                let task = tokio::spawn(record_results(b.clone(), batch_id.clone(), rx));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let defer = record.is_some();
        let mut results: Vec<Option<AgentResult>> = vec![None; tasks.len()];
        let mut set: JoinSet<Finished> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, (usize, String)> = HashMap::new();
        let mut next = 0usize;
        let mut record_error: Option<AgentError> = None;
        loop {
            while !stop.is_cancelled() && set.len() < concurrency && next < tasks.len() {
                let task = &tasks[next];
                let run = AgentRun {
                    batch_id: batch_id.clone(),
                    index: next,
                    task_id: task.id.clone(),
                    prompt: task.prompt.clone(),
                    model: options.model.clone(),
                    depth,
                };
                let fut = run_one(
                    Arc::clone(&self.runner),
                    run,
                    options.timeout,
                    stop.clone(),
                    Arc::clone(&why),
                    defer,
                );
                let handle = set.spawn(SCOPE.scope(AgentScope { depth }, fut));
                running.insert(handle.id(), (next, task.id.clone()));
                on_event(AgentEvent::Started {
                    index: next,
                    id: task.id.clone(),
                });
                next += 1;
            }
            if set.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = set.join_next_with_id() => joined,
                _ = stop.cancelled(), if !stop.is_cancelled() => {
                    let _ = why.set(ErrorKind::Cancelled);
                    continue;
                }
                _ = sleep_until(deadline), if !stop.is_cancelled() => {
                    let _ = why.set(ErrorKind::Deadline);
                    stop.cancel();
                    continue;
                }
            };
            let (result, turn) = match joined {
                Some(Ok((id, r))) => {
                    running.remove(&id);
                    r
                }
                Some(Err(e)) => {
                    let (index, task_id) = running.remove(&e.id()).unwrap_or_default();
                    let r = AgentResult::failed(
                        index,
                        &task_id,
                        ErrorKind::Failed,
                        format!("the agent's task ended abnormally: {e}"),
                        Duration::ZERO,
                    );
                    (r, None)
                }
                None => break,
            };
            if let Some(record) = &record {
                let _ = record.send((result.clone(), turn));
            }
            let index = result.index;
            on_event(AgentEvent::Finished(result.clone()));
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(result);
            }
        }

        // The caller's cancel may have been seen only by the agents (their results can all
        // arrive before this loop notices the token).
        if stop.is_cancelled() {
            let _ = why.set(ErrorKind::Cancelled);
        }
        // Agents that never started: the batch was stopped first.
        let stopped = why.get().copied();
        let kind = stopped.unwrap_or(ErrorKind::Cancelled);
        let mut unstarted: Vec<AgentResult> = Vec::new();
        for (index, slot) in results.iter_mut().enumerate() {
            if slot.is_none() {
                let r = AgentResult::failed(
                    index,
                    &tasks[index].id,
                    kind,
                    stop_message(kind, None),
                    Duration::ZERO,
                );
                on_event(AgentEvent::Finished(r.clone()));
                unstarted.push(r.clone());
                *slot = Some(r);
            }
        }
        if let Some(record) = record {
            for r in unstarted {
                let _ = record.send((r, None));
            }
        }
        if let Some(recorder) = recorder {
            match recorder.await {
                Ok(recorded) => {
                    // Agents whose conversation could not be stored are recorded, and
                    // reported, as failed.
                    for r in recorded.failed {
                        let index = r.index;
                        if let Some(slot) = results.get_mut(index) {
                            *slot = Some(r);
                        }
                    }
                    if let Some(e) = recorded.error {
                        record_error.get_or_insert(e.into());
                    }
                }
                Err(e) => {
                    record_error.get_or_insert(AgentError::BadTask {
                        line: None,
                        message: format!("the batch recorder stopped: {e}"),
                    });
                }
            }
        }
        if let Some(b) = &self.batches {
            let cut_short = results.iter().flatten().any(|r| {
                matches!(
                    r.error_kind,
                    Some(ErrorKind::Cancelled | ErrorKind::Deadline)
                )
            });
            let state = if cut_short {
                BatchState::Cancelled
            } else {
                BatchState::Finished
            };
            if let Err(e) = b.finish_batch(&batch_id, state).await {
                record_error.get_or_insert(e.into());
            }
        }
        if let Some(e) = record_error {
            return Err(e);
        }
        Ok(BatchReport {
            batch_id,
            results: results.into_iter().flatten().collect(),
            stopped,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// An agent's result, and its conversation still to be written (see
/// [`AgentRunner::run_uncommitted`]).
type Finished = (AgentResult, Option<PendingTurn>);

/// Agents at most per transaction of the recorder.
const RECORD_BURST: usize = 500;

/// What the recorder leaves behind.
#[derive(Default)]
struct Recorded {
    /// The first error that left an agent unrecorded.
    error: Option<zocalo_store::StoreError>,
    /// Agents that answered but whose conversation could not be stored: recorded as failed.
    failed: Vec<AgentResult>,
}

/// Writes results as they come, with the finished agents' conversations: all that are waiting
/// (at most [`RECORD_BURST`]) in one transaction. If that transaction fails, each agent of it
/// is tried in one of its own, so one agent the database refuses does not cost the others;
/// an agent whose conversation still cannot be stored is recorded as failed, saying why.
async fn record_results(
    batches: Batches,
    batch_id: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Finished>,
) -> Recorded {
    let mut recorded = Recorded::default();
    let mut hooks = JoinSet::new();
    let mut pending: Vec<Finished> = Vec::new();
    while let Some(f) = rx.recv().await {
        pending.push(f);
        while pending.len() < RECORD_BURST {
            match rx.try_recv() {
                Ok(f) => pending.push(f),
                Err(_) => break,
            }
        }
        let mut burst = std::mem::take(&mut pending);
        // A turn for another database than the record's cannot share its transaction: it is
        // committed on its own first (the rare runner with a store of its own).
        for (result, turn) in &mut burst {
            if turn
                .as_ref()
                .is_some_and(|t| !t.store().same_pool(batches.store()))
            {
                if let Some(t) = turn.take() {
                    if let Err(e) = t.commit().await {
                        *result = unstored(result, &e.to_string());
                        recorded.failed.push(result.clone());
                    }
                }
            }
        }
        // One transaction for the burst: every conversation, then every result row.
        // Each row, and where its turn is in `prepared` (and its hook in `after`).
        let mut rows = Vec::with_capacity(burst.len());
        let mut turn_at = Vec::with_capacity(burst.len());
        let mut prepared = Vec::with_capacity(burst.len());
        let mut after = Vec::with_capacity(burst.len());
        for (result, turn) in burst {
            turn_at.push(turn.map(|t| {
                let (turn, hook) = t.into_parts();
                prepared.push(turn);
                after.push(hook);
                prepared.len() - 1
            }));
            rows.push(result);
        }
        match batches.finish_runs(&batch_id, &rows, &mut prepared).await {
            Ok(()) => run_hooks(&mut hooks, after),
            Err(e) => {
                tracing::warn!(
                    batch = %batch_id,
                    "cannot record {} agents at once ({e}); recording them one by one",
                    rows.len()
                );
                let mut after = after.into_iter().map(Some).collect::<Vec<_>>();
                for (result, at) in rows.into_iter().zip(turn_at) {
                    let turn = at.and_then(|i| Some((prepared[i].clone(), after[i].take()?)));
                    record_alone(&batches, &batch_id, result, turn, &mut recorded, &mut hooks)
                        .await;
                }
            }
        }
    }
    while hooks.join_next().await.is_some() {}
    recorded
}

/// Records one agent (its conversation and result row) in a transaction of its own; if its
/// conversation cannot be stored, records it as failed instead.
async fn record_alone(
    batches: &Batches,
    batch_id: &str,
    result: AgentResult,
    turn: Option<(PreparedTurn, TurnHook)>,
    recorded: &mut Recorded,
    hooks: &mut JoinSet<()>,
) {
    let (mut prepared, hook): (Vec<PreparedTurn>, Option<TurnHook>) = match turn {
        Some((t, h)) => (vec![t], Some(h)),
        None => (Vec::new(), None),
    };
    let e = match batches
        .finish_runs(batch_id, std::slice::from_ref(&result), &mut prepared)
        .await
    {
        Ok(()) => return run_hooks(hooks, hook),
        Err(e) => e,
    };
    let failed = if hook.is_some() {
        unstored(&result, &e.to_string())
    } else {
        result
    };
    match batches
        .finish_runs(batch_id, std::slice::from_ref(&failed), &mut [])
        .await
    {
        Ok(()) if hook.is_some() => recorded.failed.push(failed),
        Ok(()) => {}
        Err(e) => {
            tracing::error!(batch = %batch_id, "cannot record agent {}: {e}", failed.id);
            recorded.error.get_or_insert(e);
        }
    }
}

/// `result` of an agent whose answer could not be stored.
fn unstored(result: &AgentResult, why: &str) -> AgentResult {
    let mut r = AgentResult::failed(
        result.index,
        &result.id,
        ErrorKind::Failed,
        format!("the agent answered but its conversation could not be stored: {why}"),
        Duration::from_millis(result.elapsed_ms),
    );
    r.job_id = result.job_id.clone();
    r
}

/// Runs the after-turn hooks (memory) of stored turns, in the background; the recorder waits
/// for them before it ends.
fn run_hooks(hooks: &mut JoinSet<()>, after: impl IntoIterator<Item = TurnHook>) {
    for hook in after {
        if !hook.is_empty() {
            hooks.spawn(hook.run());
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn stop_message(kind: ErrorKind, timeout: Option<Duration>) -> String {
    match kind {
        ErrorKind::Timeout => format!(
            "timed out after {} s",
            timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
        ),
        ErrorKind::Cancelled => "cancelled before it finished".into(),
        ErrorKind::Deadline => "the batch deadline passed before it finished".into(),
        ErrorKind::Failed => "failed".into(),
    }
}

async fn run_one(
    runner: Arc<dyn AgentRunner>,
    run: AgentRun,
    timeout: Option<Duration>,
    stop: CancellationToken,
    why: Arc<OnceLock<ErrorKind>>,
    defer: bool,
) -> Finished {
    let started = Instant::now();
    // With a recorder, the conversation is left for it to write with the result row.
    let work = async {
        if defer {
            runner.run_uncommitted(&run).await
        } else {
            runner.run(&run).await.map(|a| (a, None))
        }
    };
    let limited = async {
        match timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| ()),
            None => Ok(work.await),
        }
    };
    let outcome = tokio::select! {
        biased;
        _ = stop.cancelled() => Err(why.get().copied().unwrap_or(ErrorKind::Cancelled)),
        r = limited => match r {
            Ok(r) => Ok(r),
            Err(()) => Err(ErrorKind::Timeout),
        },
    };
    let elapsed = started.elapsed();
    let result = match outcome {
        Ok(Ok((answer, turn))) => {
            let r = AgentResult {
                index: run.index,
                id: run.task_id,
                status: AgentStatus::Ok,
                output: Some(answer.text),
                elapsed_ms: elapsed.as_millis() as u64,
                error: None,
                error_kind: None,
                conversation_id: answer.conversation_id,
                job_id: answer.job_id,
            };
            return (r, turn);
        }
        Ok(Err(e)) => AgentResult::failed(
            run.index,
            &run.task_id,
            ErrorKind::Failed,
            e.to_string(),
            elapsed,
        ),
        Err(kind) => AgentResult::failed(
            run.index,
            &run.task_id,
            kind,
            stop_message(kind, timeout),
            elapsed,
        ),
    };
    (result, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn jsonl_errors_name_the_line() {
        let cases = [
            ("{\"id\":\"a\",\"prompt\":\"x\"}\nnot json\n", 2, "expected"),
            ("\n\n{\"id\":\"a\"}\n", 3, "prompt"),
            ("{\"id\":\"a\",\"prompt\":\"x\",\"extra\":1}", 1, "unknown field"),
            ("{\"id\":\"\",\"prompt\":\"x\"}", 1, "`id` is empty"),
            ("{\"id\":\"a\",\"prompt\":\"  \"}", 1, "`prompt`"),
            ("{\"id\":3,\"prompt\":\"x\"}", 1, "invalid type"),
            ("[1,2]", 1, "expected"),
            (
                "{\"id\":\"a\",\"prompt\":\"x\"}\n\n{\"id\":\"b\",\"prompt\":\"y\"}\n{\"id\":\"a\",\"prompt\":\"z\"}",
                4,
                "duplicate id \"a\" (first used on line 1)",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_tasks_jsonl(text).unwrap_err();
            let AgentError::BadTask { line: Some(l), .. } = &e else {
                panic!("{text:?}: {e:?}");
            };
            assert_eq!(*l, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(e.to_string().contains(&format!("line {line}")), "{e}");
            assert!(e.is_usage());
        }
    }

    #[test]
    fn jsonl_parses_in_order_and_skips_blank_lines() {
        let t = parse_tasks_jsonl(
            "{\"id\":\"b\",\"prompt\":\"two\"}\n\r\n  {\"prompt\":\"one\",\"id\":\"a\"}  \n",
        )
        .unwrap();
        assert_eq!(
            t,
            vec![AgentTask::new("b", "two"), AgentTask::new("a", "one")]
        );
        assert!(parse_tasks_jsonl("").unwrap().is_empty());
    }

    proptest::proptest! {
        // Whatever a user's file holds: no panic; an error names a line that exists; what
        // parses is exactly the valid lines, in order, with unique ids.
        #[test]
        fn any_input_parses_or_names_a_line(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-c]{0,2}".prop_map(|id| serde_json::json!({"id": id, "prompt": "p"}).to_string()),
                    proptest::string::string_regex(".{0,30}").unwrap(),
                    proptest::strategy::Just(String::new()),
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            match parse_tasks_jsonl(&text) {
                Ok(tasks) => {
                    let valid = lines.iter().filter(|l| !l.trim().is_empty()).count();
                    proptest::prop_assert_eq!(tasks.len(), valid);
                    let mut ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    proptest::prop_assert_eq!(ids.len(), tasks.len());
                }
                Err(AgentError::BadTask { line: Some(l), .. }) => {
                    proptest::prop_assert!(l >= 1 && l <= text.lines().count());
                }
                Err(e) => proptest::prop_assert!(false, "unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn long_ids_are_refused() {
        let t = vec![AgentTask::new("x".repeat(MAX_TASK_ID_LEN + 1), "p")];
        assert!(validate_tasks(&t, |_| None).is_err());
        let t = vec![AgentTask::new("x".repeat(MAX_TASK_ID_LEN), "p")];
        assert!(validate_tasks(&t, |_| None).is_ok());
    }
}
