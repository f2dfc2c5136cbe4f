//! Jobs and nodes as plain data: states, what to enqueue, what a worker claims, what listings
//! show.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::PoolError;

/// Priorities run from -1000 to 1000; higher runs first.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// At most this many attempts per job.
pub const MAX_ATTEMPTS_LIMIT: i32 = 100;
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a job is in its life. A job waiting for a retry is `Queued` (with `run_at` later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be claimed (possibly not before `run_at`).
    Queued,
    /// Claimed by a node that holds its lease.
    Running,
    Succeeded,
    /// Failed with an error retrying cannot fix (the handler said so).
    Failed,
    /// Failed on every one of its `max_attempts`.
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Ended for good: nothing will run it again.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                PoolError::Invalid(format!(
                    "unknown job state `{s}`: one of queued, running, succeeded, failed, dead, cancelled"
                ))
            })
    }
}

/// A new job `job_<uuidv7>`: ids sort by creation time.
pub fn new_job_id() -> String {
    zocalo_core::ids::new_prefixed("job")
}

/// What to enqueue. [`NewJob::new`] gives the defaults: priority 0, no labels, no key,
/// 3 attempts, a 10 minute timeout, runnable now.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// -1000..=1000, higher first.
    pub priority: i32,
    /// Only nodes having every one of these labels run the job.
    pub labels: Vec<String>,
    /// Idempotency key: enqueueing a job whose key exists returns the existing job.
    pub key: Option<String>,
    pub max_attempts: i32,
    /// How long one attempt may run before it is stopped and counted as failed.
    pub timeout: Duration,
    /// Not before this instant (default: now).
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            priority: 0,
            labels: Vec::new(),
            key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
            run_at: None,
        }
    }

    /// Checks every field but the payload (the handler registry checks that).
    pub fn validate(&self) -> Result<(), PoolError> {
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(PoolError::Invalid(format!(
                "priority {} out of range: use {} to {} (higher runs first)",
                self.priority,
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            )));
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(PoolError::Invalid(format!(
                "max attempts {} out of range: use 1 to {MAX_ATTEMPTS_LIMIT}",
                self.max_attempts
            )));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(7 * 24 * 3600) {
            return Err(PoolError::Invalid(
                "job timeout must be between 1 ms and 7 days".into(),
            ));
        }
        for l in &self.labels {
            check_label(l)?;
        }
        if let Some(k) = &self.key {
            if k.is_empty() || k.len() > 200 {
                return Err(PoolError::Invalid(
                    "idempotency key must be 1 to 200 characters".into(),
                ));
            }
        }
        Ok(())
    }
}

fn check_label(l: &str) -> Result<(), PoolError> {
    let ok = !l.is_empty()
        && l.len() <= 64
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'='));
    if ok {
        Ok(())
    } else {
        Err(PoolError::Invalid(format!(
            "invalid label {l:?}: use 1 to 64 letters, digits, '-', '_', '.', ':' or '='"
        )))
    }
}

/// Parses `a,b,c` into sorted, deduplicated labels; empty input gives none.
pub fn parse_labels(s: &str) -> Result<Vec<String>, PoolError> {
    let mut labels = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err(PoolError::Invalid(format!(
                "invalid labels {s:?}: an empty label between commas"
            )));
        }
        check_label(part)?;
        labels.push(part.to_owned());
    }
    labels.sort();
    labels.dedup();
    Ok(labels)
}

/// What enqueueing one job gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: String,
    /// False when its idempotency key already named a job (`id` is that job).
    pub created: bool,
}

/// A job a worker holds the lease of.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    /// 1 on the first run.
    pub attempt: i32,
    pub max_attempts: i32,
    pub timeout: Duration,
}

impl ClaimedJob {
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id.clone(),
            attempt: self.attempt,
        }
    }
}

/// A job id with the attempt a worker runs: finishing only counts while both still match.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Lease {
    pub id: String,
    pub attempt: i32,
}

/// One job as listings show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    pub labels: Vec<String>,
    pub key: Option<String>,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeout_ms: i64,
    pub run_at: DateTime<Utc>,
    /// The node running it, or that ran it last.
    pub node: Option<String>,
    pub lease_expires: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A worker node as `pool nodes` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub pid: i64,
    pub labels: Vec<String>,
    pub kinds: Vec<String>,
    pub capacity: i32,
    /// active, draining, stopped, or lost (silent past its timeout).
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub timeout_ms: i64,
    pub running: i64,
}

/// Jobs per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub cancelled: i64,
}

impl Stats {
    pub fn total(&self) -> i64 {
        self.queued + self.running + self.succeeded + self.failed + self.dead + self.cancelled
    }
}

/// Milliseconds since the Unix epoch, the unit the tables keep instants in.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_sorted_and_deduplicated() {
        assert_eq!(
            parse_labels("gpu, linux,gpu").unwrap(),
            vec!["gpu", "linux"]
        );
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("a,,b").is_err());
        assert!(parse_labels("a b").is_err());
    }

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let mut j = NewJob::new("noop", Value::Null);
        j.priority = 1001;
        assert!(j
            .validate()
            .unwrap_err()
            .to_string()
            .contains("priority 1001"));
        j.priority = 0;
        j.max_attempts = 0;
        assert!(j
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max attempts"));
    }

    proptest::proptest! {
        #[test]
        fn parse_labels_never_panics_and_output_is_valid(s in ".{0,80}") {
            if let Ok(labels) = parse_labels(&s) {
                let mut sorted = labels.clone();
                sorted.sort();
                sorted.dedup();
                proptest::prop_assert_eq!(&labels, &sorted);
                for l in &labels {
                    proptest::prop_assert!(check_label(l).is_ok());
                }
            }
        }
    }
}
