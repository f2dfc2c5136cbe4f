//! [`SchedulerError`]: what parsing a schedule, storing an automation or firing it can fail with.

use zocalo_pool::PoolError;
use zocalo_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A part of the RRULE (or an EXDATE/RDATE line) is malformed or not allowed by RFC 5545.
    #[error("invalid RRULE: `{part}`: {reason}")]
    Rule { part: String, reason: String },
    /// Not an IANA zone name.
    #[error("unknown time zone `{name}`{}", suggest(.suggestions))]
    UnknownZone {
        name: String,
        suggestions: Vec<String>,
    },
    /// `--start` is not a local date-time.
    #[error("invalid start `{value}`: {reason}")]
    Start { value: String, reason: String },
    /// Any other bad input (empty name, empty command, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("an automation named `{0}` already exists: pick another name or `zocalo schedule rm {0}` first")]
    Duplicate(String),
    #[error("no automation named `{0}` (see `zocalo schedule list`)")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A stored row that does not parse (written by hand, or by a newer build).
    #[error("stored automation `{name}` is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        ": use an IANA name such as Europe/Berlin or America/New_York".into()
    } else {
        format!(": did you mean {}?", s.join(", "))
    }
}

impl SchedulerError {
    /// True when the user gave bad input (exit 2) rather than the environment failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            SchedulerError::Rule { .. }
            | SchedulerError::UnknownZone { .. }
            | SchedulerError::Start { .. }
            | SchedulerError::Invalid(_)
            | SchedulerError::Duplicate(_)
            | SchedulerError::NotFound(_) => true,
            SchedulerError::Store(e) => e.is_usage(),
            SchedulerError::Pool(e) => e.is_usage(),
            SchedulerError::Corrupt { .. } => false,
        }
    }

    pub(crate) fn rule(part: impl Into<String>, reason: impl Into<String>) -> Self {
        SchedulerError::Rule {
            part: part.into(),
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for SchedulerError {
    fn from(e: sqlx::Error) -> Self {
        SchedulerError::Store(StoreError::from(e))
    }
}
