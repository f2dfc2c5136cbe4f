//! Automations in the database, and firing them: [`Scheduler`] and [`run_ticker`].
//!
//! Exactly once, with several tickers (tasks, processes, machines) on one database:
//! 1. ONE transaction per batch of due automations: read them (on Postgres `FOR UPDATE SKIP
//!    LOCKED`, so concurrent tickers take disjoint batches; on SQLite under `BEGIN
//!    IMMEDIATE`), move each `next_run_at` on with a compare-and-set on the value read (only
//!    rows still holding it move, and only those fire), and insert the run rows, unique on
//!    (automation, occurrence), `ON CONFLICT DO NOTHING`.
//! 2. After that commit, enqueue the pool jobs of the rows inserted, in one call, with the
//!    idempotency key `sched:<automation id>:<occurrence ms>`, and record them on the run
//!    rows. The pool's public API enqueues in a transaction of its own, so the two cannot
//!    share one; the key makes that safe: a ticker that died between commit and enqueue
//!    leaves run rows without a job, which the next tick (on any node) enqueues under the
//!    same keys, and two tickers doing so get the same jobs.
//!
//! Missed occurrences (the scheduler was down): each automation has a misfire policy. The
//! default, `run-once`, fires only the LATEST occurrence that has come and moves on to the
//! first one after now: a daily job after a week of downtime runs once, not seven times.
//! `skip` fires nothing more than a minute late; `run-all` fires every missed occurrence, at
//! most the automation's catch-up limit (the latest ones). Resuming a paused automation skips
//! what fell in the pause.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Connection;
use zocalo_pool::{JobQueue, NewJob, SqlQueue};
use zocalo_store::{with_pool, Store};

use crate::recur::{fmt_utc, Schedule};
use crate::SchedulerError;

const INSERT_AUTOMATION: &str = include_str!("sql/insert_automation.sql");
const AUTOMATION_SELECT: &str = include_str!("sql/automation_select.sql");
const DELETE_AUTOMATION: &str = include_str!("sql/delete_automation.sql");
const SET_PAUSED: &str = include_str!("sql/set_paused.sql");
use zocalo_store::{dialects, Dialects as Sql};

const DUE: Sql = dialects!("due.sql");
const ADVANCE: Sql = dialects!("advance.sql");
const INSERT_RUNS: Sql = dialects!("insert_runs.sql");
const SET_RUN_JOBS: Sql = dialects!("set_run_jobs.sql");
const UNQUEUED_RUNS: &str = include_str!("sql/unqueued_runs.sql");
const RUNS: &str = include_str!("sql/runs.sql");
const NEXT_DUE: &str = include_str!("sql/next_due.sql");

/// Automations handled per tick (a tick that fills it is followed by another at once).
pub const TICK_BATCH: i64 = 500;
/// A run row without a job is re-enqueued by other tickers only after this long.
pub const ENQUEUE_GRACE: Duration = Duration::from_secs(10);
/// Longest automation name.
pub const MAX_NAME: usize = 100;

/// What an automation does when it fires: the pool job it enqueues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// An `ask` job: {"message", "conversation_id"?, "persona"?}.
    Ask {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        /// `[personas.NAME]` the runs ask as: its prompt, tools and permissions (the runs are
        /// unattended, so only what it or `[permissions]` allows runs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        persona: Option<String>,
        /// Where each run's answer is delivered (`telegram:42`, `email:ADDR`,
        /// `webhook:NAME`; checked by whoever creates the automation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deliver: Option<String>,
    },
    /// A `skill` job: {"name", "args"}.
    Skill {
        name: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// A `shell` job running `sh -c COMMAND`, with `ZOCALO_SCHEDULE` (the automation's name)
    /// and `ZOCALO_SCHEDULED_FOR` (the occurrence, UTC) in its environment.
    Shell { command: String },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Ask { .. } => "ask",
            Action::Skill { .. } => "skill",
            Action::Shell { .. } => "shell",
        }
    }

    /// Checks the action before anything is stored.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |m: &str| Err(SchedulerError::Invalid(m.to_owned()));
        match self {
            Action::Ask {
                message,
                conversation_id,
                persona,
                deliver,
            } => {
                if deliver.as_deref().is_some_and(|d| d.trim().is_empty()) {
                    return bad("--deliver: the target is empty");
                }
                if message.trim().is_empty() {
                    return bad("--ask: the message is empty");
                }
                if persona.as_deref().is_some_and(|p| p.trim().is_empty()) {
                    return bad("--persona: the name is empty");
                }
                if let Some(c) = conversation_id {
                    if c.parse::<zocalo_core::ids::ConversationId>().is_err() {
                        return Err(SchedulerError::Invalid(format!(
                            "--conv {c:?} is not a conversation id (conv_…)"
                        )));
                    }
                }
            }
            Action::Skill { name, .. } => {
                if name.trim().is_empty() {
                    return bad("--skill: the skill name is empty");
                }
            }
            Action::Shell { command } => {
                if command.trim().is_empty() {
                    return bad("--shell: the command is empty");
                }
            }
        }
        Ok(())
    }

    /// The pool job for one occurrence of automation `name`.
    pub fn job(&self, name: &str, occurrence: DateTime<Utc>) -> NewJob {
        let payload = match self {
            Action::Ask {
                message,
                conversation_id,
                persona,
                deliver,
            } => {
                let mut p = json!({"message": message});
                match conversation_id {
                    Some(c) => p["conversation_id"] = json!(c),
                    // The automation's own conversation: each run sees the earlier ones.
                    None => p["conv_key"] = json!(format!("automation:{name}")),
                }
                if let Some(target) = deliver {
                    p["deliver"] = json!(target);
                }
                if let Some(name) = persona {
                    p["persona"] = json!(name);
                }
                p
            }
            Action::Skill { name, args } => json!({"name": name, "args": args}),
            Action::Shell { command } => json!({
                "cmd": ["sh", "-c", command],
                "env": {"ZOCALO_SCHEDULE": name, "ZOCALO_SCHEDULED_FOR": fmt_utc(occurrence)},
            }),
        };
        NewJob::new(self.kind(), payload)
    }
}

/// What to do with occurrences that came while no scheduler was running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Misfire {
    /// Fire nothing late: only an occurrence at most [`MISFIRE_GRACE`] old fires.
    Skip,
    /// Fire the latest missed occurrence, once.
    #[default]
    RunOnce,
    /// Fire every missed occurrence, at most the automation's catch-up limit (the latest).
    RunAll,
}

/// Under [`Misfire::Skip`], an occurrence older than this when a tick sees it is skipped.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(60);
/// Largest catch-up limit.
pub const MAX_CATCHUP: u32 = 10_000;

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run-once",
            Misfire::RunAll => "run-all",
        }
    }
}

impl std::str::FromStr for Misfire {
    type Err = SchedulerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Misfire::Skip),
            "run-once" => Ok(Misfire::RunOnce),
            "run-all" => Ok(Misfire::RunAll),
            _ => Err(SchedulerError::Invalid(format!(
                "unknown misfire policy `{s}`: use skip, run-once or run-all"
            ))),
        }
    }
}

/// What `schedule add` stores.
#[derive(Clone, Debug)]
pub struct NewAutomation {
    pub name: String,
    /// The rule text (RRULE plus optional EXDATE/RDATE lines).
    pub rrule: String,
    /// Local start, `YYYY-MM-DDTHH:MM:SS`.
    pub start: String,
    pub tz: String,
    pub action: Action,
    pub misfire: Misfire,
    /// Under [`Misfire::RunAll`], at most this many missed occurrences fire (1 to 10,000).
    pub catchup_limit: u32,
}

impl NewAutomation {
    /// With the default misfire policy (run-once) and a catch-up limit of 100.
    pub fn new(name: &str, rrule: &str, start: &str, tz: &str, action: Action) -> Self {
        Self {
            name: name.to_owned(),
            rrule: rrule.to_owned(),
            start: start.to_owned(),
            tz: tz.to_owned(),
            action,
            misfire: Misfire::RunOnce,
            catchup_limit: 100,
        }
    }
}

/// One stored automation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Automation {
    pub id: String,
    pub name: String,
    pub rrule: String,
    /// Local wall time in `tz`.
    pub start: String,
    pub tz: String,
    pub action: Action,
    pub paused: bool,
    /// None when the rule has no more occurrences.
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub misfire: Misfire,
    pub catchup_limit: u32,
}

impl Automation {
    pub fn schedule(&self) -> Result<Schedule, SchedulerError> {
        Schedule::parse(&self.rrule, &self.start, &self.tz).map_err(|e| SchedulerError::Corrupt {
            name: self.name.clone(),
            reason: e.to_string(),
        })
    }
}

type AutomationRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    bool,
    Option<i64>,
    i64,
    String,
    i32,
);

fn decode(row: AutomationRow) -> Result<Automation, SchedulerError> {
    let (id, name, rrule, start, tz, action, paused, next, created, misfire, catchup) = row;
    let action = serde_json::from_str(&action).map_err(|e| SchedulerError::Corrupt {
        name: name.clone(),
        reason: format!("action: {e}"),
    })?;
    let misfire = misfire
        .parse()
        .map_err(|e: SchedulerError| SchedulerError::Corrupt {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    Ok(Automation {
        id,
        name,
        rrule,
        start,
        tz,
        action,
        paused,
        next_run_at: next.map(ms_to_time),
        created_at: ms_to_time(created),
        misfire,
        catchup_limit: u32::try_from(catchup).unwrap_or(1),
    })
}

/// One firing of an automation, as `schedule runs` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub id: String,
    /// The occurrence (UTC).
    pub scheduled_for: DateTime<Utc>,
    /// When the ticker recorded it.
    pub fired_at: DateTime<Utc>,
    pub job_id: Option<String>,
    /// `pending` (not enqueued yet), or the pool job's state: queued, running, succeeded,
    /// failed, dead, cancelled.
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The job's result, or its error as a string.
    pub output: Option<Value>,
    /// Where the answer was delivered and how that went: {"target", "job_id", "status",
    /// "error"?} (an automation with `--deliver`, once its ask succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Value>,
}

/// One occurrence a tick fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fired {
    pub automation: String,
    pub occurrence: DateTime<Utc>,
    pub job_id: String,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TickReport {
    /// Occurrences fired by this tick.
    pub fired: Vec<Fired>,
    /// Run rows left without a job by a ticker that died, enqueued now.
    pub recovered: usize,
    /// Due automations handled (fired or advanced); TICK_BATCH means there may be more.
    pub handled: usize,
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Checks a catch-up limit: 1 to [`MAX_CATCHUP`].
pub fn check_catchup(n: u32) -> Result<(), SchedulerError> {
    if n == 0 || n > MAX_CATCHUP {
        return Err(SchedulerError::Invalid(format!(
            "--catch-up {n} out of range: use 1 to {MAX_CATCHUP}"
        )));
    }
    Ok(())
}

/// Checks an automation name: 1 to 100 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), SchedulerError> {
    if name.is_empty() {
        return Err(SchedulerError::Invalid(
            "the automation name is empty".into(),
        ));
    }
    if name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(SchedulerError::Invalid(format!(
            "invalid automation name {name:?}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// Automations on a [`Store`], firing into the pool's queue on the same database.
#[derive(Clone, Debug)]
pub struct Scheduler {
    store: Store,
    queue: SqlQueue,
}

impl Scheduler {
    pub fn new(store: Store) -> Self {
        Self {
            queue: SqlQueue::new(store.clone()),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks everything, then stores the automation with its first occurrence at or after
    /// `now` (earlier ones are not fired). Nothing is written if anything is wrong.
    pub async fn add(
        &self,
        new: NewAutomation,
        now: DateTime<Utc>,
    ) -> Result<Automation, SchedulerError> {
        check_name(&new.name)?;
        new.action.validate()?;
        check_catchup(new.catchup_limit)?;
        let schedule = Schedule::parse(&new.rrule, &new.start, &new.tz)?;
        let next = schedule.first_at_or_after(now);
        let start = schedule.start().format("%Y-%m-%dT%H:%M:%S").to_string();
        let a = Automation {
            id: zocalo_core::ids::new_prefixed("sched"),
            name: new.name,
            rrule: new.rrule.trim().to_owned(),
            start,
            tz: schedule.tz().name().to_owned(),
            action: new.action,
            paused: false,
            next_run_at: next,
            created_at: now,
            misfire: new.misfire,
            catchup_limit: new.catchup_limit,
        };
        let action = serde_json::to_string(&a.action)
            .map_err(|e| SchedulerError::Invalid(format!("action: {e}")))?;
        let r = with_pool!(self.store.pool(), |p| sqlx::query(INSERT_AUTOMATION)
            .bind(&a.id)
            .bind(&a.name)
            .bind(&a.rrule)
            .bind(&a.start)
            .bind(&a.tz)
            .bind(&action)
            .bind(a.next_run_at.map(|t| t.timestamp_millis()))
            .bind(now.timestamp_millis())
            .bind(a.misfire.as_str())
            .bind(i32::try_from(a.catchup_limit).unwrap_or(1))
            .execute(p)
            .await
            .map(drop));
        match r {
            Ok(_) => Ok(a),
            Err(e) if is_unique_violation(&e) => Err(SchedulerError::Duplicate(a.name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every automation, by name.
    pub async fn list(&self) -> Result<Vec<Automation>, SchedulerError> {
        let sql = format!("{AUTOMATION_SELECT} ORDER BY name");
        let rows: Vec<AutomationRow> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    pub async fn get(&self, name: &str) -> Result<Automation, SchedulerError> {
        let sql = format!("{AUTOMATION_SELECT} WHERE name = $1");
        let row: Option<AutomationRow> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(p)
            .await)?;
        row.map(decode)
            .transpose()?
            .ok_or_else(|| SchedulerError::NotFound(name.to_owned()))
    }

    /// Removes the automation and its run history (jobs already enqueued stay in the pool).
    pub async fn remove(&self, name: &str) -> Result<(), SchedulerError> {
        let n = with_pool!(self.store.pool(), |p| sqlx::query(DELETE_AUTOMATION)
            .bind(name)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(SchedulerError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    pub async fn pause(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Automation, SchedulerError> {
        let a = self.get(name).await?;
        self.set_paused(name, true, a.next_run_at, now).await?;
        self.get(name).await
    }

    /// Unpauses; the next occurrence is the first at or after `now`.
    pub async fn resume(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Automation, SchedulerError> {
        let a = self.get(name).await?;
        let next = a.schedule()?.first_at_or_after(now);
        self.set_paused(name, false, next, now).await?;
        self.get(name).await
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let n = with_pool!(self.store.pool(), |p| sqlx::query(SET_PAUSED)
            .bind(name)
            .bind(paused)
            .bind(next.map(|t| t.timestamp_millis()))
            .bind(now.timestamp_millis())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(SchedulerError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// The runs of one automation, newest occurrence first, with their jobs' state.
    pub async fn runs(&self, name: &str, limit: i64) -> Result<Vec<Run>, SchedulerError> {
        self.get(name).await?;
        let rows: Vec<(String, i64, Option<String>, i64)> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(RUNS)
                .bind(name)
                .bind(limit)
                .fetch_all(p)
                .await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, occurrence, job_id, created) in rows {
            let job = match &job_id {
                Some(j) => self.queue.get(j).await?,
                None => None,
            };
            let (status, started_at, finished_at, output) = match job {
                Some(j) => (
                    j.state.as_str().to_owned(),
                    j.started_at,
                    j.finished_at,
                    j.result.or(j.error.map(Value::String)),
                ),
                None if job_id.is_some() => ("unknown".to_owned(), None, None, None),
                None => ("pending".to_owned(), None, None, None),
            };
            let delivery = match output.as_ref().and_then(|o| o.get("delivery")) {
                Some(d) => {
                    let mut d = d.clone();
                    if let Some(job) = d["job_id"].as_str().map(str::to_owned) {
                        match self.queue.get(&job).await? {
                            Some(j) => {
                                d["status"] = json!(j.state.as_str());
                                if let Some(e) = j.error {
                                    d["error"] = json!(e);
                                }
                            }
                            None => d["status"] = json!("unknown"),
                        }
                    }
                    Some(d)
                }
                None => None,
            };
            out.push(Run {
                id,
                scheduled_for: ms_to_time(occurrence),
                fired_at: ms_to_time(created),
                job_id,
                status,
                started_at,
                finished_at,
                output,
                delivery,
            });
        }
        Ok(out)
    }

    /// The earliest `next_run_at` of an active automation.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let ms: Option<i64> = with_pool!(self.store.pool(), |p| sqlx::query_scalar(NEXT_DUE)
            .fetch_one(p)
            .await)?;
        Ok(ms.map(ms_to_time))
    }

    /// Fires every automation due at `now` (the clock is the caller's, so tests control it).
    /// Safe to run from any number of tickers at once: each occurrence fires exactly once.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let recovered = self.recover(now).await?;
        let (handled, to_fire) = self.claim_due(now).await?;
        let fired = self.enqueue(&to_fire).await?;
        Ok(TickReport {
            fired,
            recovered,
            handled,
        })
    }

    /// One transaction: read the due automations (locked on Postgres, SKIP LOCKED), move
    /// each to its next occurrence (compare-and-set), insert the run rows of the occurrences
    /// to fire. Returns how many were handled and the runs inserted.
    async fn claim_due(&self, now: DateTime<Utc>) -> Result<(usize, Vec<ToFire>), SchedulerError> {
        let now_ms = now.timestamp_millis();
        let (due, advance, insert) = (
            DUE.for_store(&self.store),
            ADVANCE.for_store(&self.store),
            INSERT_RUNS.for_store(&self.store),
        );
        with_pool!(self.store.pool(), |p| {
            async {
                let mut conn = p.acquire().await?;
                let mut tx = match self.store.backend() {
                    zocalo_store::Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
                    zocalo_store::Backend::Postgres => conn.begin().await?,
                };
                let rows: Vec<AutomationRow> = sqlx::query_as(due)
                    .bind(now_ms)
                    .bind(TICK_BATCH)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    tx.rollback().await?;
                    return Ok::<_, SchedulerError>((0, Vec::new()));
                }
                let mut moves = Vec::with_capacity(rows.len());
                let mut candidates = Vec::with_capacity(rows.len());
                for row in rows {
                    let name = row.1.clone();
                    let (a, schedule) = match decode(row).and_then(|a| a.schedule().map(|s| (a, s)))
                    {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(automation = %name, "skipping automation: {e}");
                            continue;
                        }
                    };
                    let Some(old) = a.next_run_at else { continue };
                    let (fire, next) = match a.misfire {
                        Misfire::RunOnce => {
                            let (latest, next) = schedule.latest_in(old, now);
                            (latest.into_iter().collect::<Vec<_>>(), next)
                        }
                        Misfire::Skip => {
                            let (latest, next) = schedule.latest_in(old, now);
                            let grace = chrono::Duration::from_std(MISFIRE_GRACE)
                                .unwrap_or(chrono::Duration::MAX);
                            (
                                latest.filter(|l| now - *l <= grace).into_iter().collect(),
                                next,
                            )
                        }
                        Misfire::RunAll => {
                            schedule.occurrences_in(old, now, a.catchup_limit as usize)
                        }
                    };
                    moves.push(json!({
                        "id": a.id,
                        "old": old.timestamp_millis(),
                        "next": next.map(|t| t.timestamp_millis()),
                    }));
                    for occurrence in fire {
                        candidates.push(ToFire {
                            run_id: zocalo_core::ids::new_prefixed("srun"),
                            automation_id: a.id.clone(),
                            name: a.name.clone(),
                            action: a.action.clone(),
                            occurrence,
                        });
                    }
                }
                let moved: Vec<String> = sqlx::query_scalar(advance)
                    .bind(Value::from(moves).to_string())
                    .bind(now_ms)
                    .fetch_all(&mut *tx)
                    .await?;
                let handled = moved.len();
                let moved: std::collections::HashSet<String> = moved.into_iter().collect();
                candidates.retain(|c| moved.contains(&c.automation_id));
                let runs: Vec<Value> = candidates
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.run_id,
                            "automation_id": c.automation_id,
                            "occurrence": c.occurrence.timestamp_millis(),
                        })
                    })
                    .collect();
                let inserted: Vec<String> = if runs.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_scalar(insert)
                        .bind(Value::from(runs).to_string())
                        .bind(now_ms)
                        .fetch_all(&mut *tx)
                        .await?
                };
                tx.commit().await?;
                let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
                candidates.retain(|c| inserted.contains(&c.run_id));
                Ok((handled, candidates))
            }
            .await
        })
    }

    /// Enqueues the jobs of `runs` (one pool call, keyed `sched:<automation>:<occurrence>`
    /// so enqueueing a run twice gives one job) and records them on the run rows.
    async fn enqueue(&self, runs: &[ToFire]) -> Result<Vec<Fired>, SchedulerError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<NewJob> = runs
            .iter()
            .map(|r| {
                let mut job = r.action.job(&r.name, r.occurrence);
                job.key = Some(format!(
                    "sched:{}:{}",
                    r.automation_id,
                    r.occurrence.timestamp_millis()
                ));
                job
            })
            .collect();
        let enqueued = self.queue.enqueue(&jobs).await?;
        if enqueued.len() != runs.len() {
            return Err(SchedulerError::Invalid(format!(
                "the pool enqueued {} jobs for {} runs",
                enqueued.len(),
                runs.len()
            )));
        }
        let pairs: Vec<Value> = runs
            .iter()
            .zip(&enqueued)
            .map(|(r, e)| json!({"id": r.run_id, "job_id": e.id}))
            .collect();
        let sql = SET_RUN_JOBS.for_store(&self.store);
        let body = Value::from(pairs).to_string();
        with_pool!(self.store.pool(), |p| sqlx::query(sql)
            .bind(&body)
            .execute(p)
            .await
            .map(drop))?;
        Ok(runs
            .iter()
            .zip(enqueued)
            .map(|(r, e)| Fired {
                automation: r.name.clone(),
                occurrence: r.occurrence,
                job_id: e.id,
            })
            .collect())
    }

    /// Enqueues the jobs of run rows a dead ticker left without one.
    async fn recover(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let cutoff = now.timestamp_millis() - ENQUEUE_GRACE.as_millis() as i64;
        let rows: Vec<(String, i64, String, String, String)> =
            with_pool!(self.store.pool(), |p| sqlx::query_as(UNQUEUED_RUNS)
                .bind(cutoff)
                .bind(TICK_BATCH)
                .fetch_all(p)
                .await)?;
        let mut runs = Vec::with_capacity(rows.len());
        for (run_id, occurrence, automation_id, name, action) in rows {
            match serde_json::from_str(&action) {
                Ok(action) => runs.push(ToFire {
                    run_id,
                    automation_id,
                    name,
                    action,
                    occurrence: ms_to_time(occurrence),
                }),
                Err(e) => tracing::error!(automation = %name, "cannot enqueue run {run_id}: {e}"),
            }
        }
        Ok(self.enqueue(&runs).await?.len())
    }
}

/// A run row inserted (or found without a job), whose job to enqueue.
struct ToFire {
    run_id: String,
    automation_id: String,
    name: String,
    action: Action,
    occurrence: DateTime<Utc>,
}

/// The scheduler loop for the daemon: ticks with the real clock, then sleeps until the next
/// due occurrence (at most `interval`, so automations added by other processes are seen),
/// until `shutdown` completes. A failing tick is logged and retried after `interval`.
pub async fn run_ticker<F>(
    store: Store,
    interval: Duration,
    shutdown: F,
) -> Result<(), SchedulerError>
where
    F: Future<Output = ()>,
{
    let sched = Scheduler::new(store);
    tokio::pin!(shutdown);
    loop {
        let mut wait = interval;
        match sched.tick(Utc::now()).await {
            Ok(r) => {
                for f in &r.fired {
                    tracing::info!(automation = %f.automation, occurrence = %fmt_utc(f.occurrence), job = %f.job_id, "fired");
                }
                if r.handled as i64 >= TICK_BATCH {
                    wait = Duration::ZERO;
                } else if let Ok(Some(next)) = sched.next_due().await {
                    let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    wait = wait.min(until);
                }
            }
            Err(e) => tracing::warn!("scheduler tick failed: {e}"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
