//! [`PoolError`]: what the queue and the worker can fail with.

use zocalo_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The kind has no handler or validator here (a usage error).
    #[error("unknown job kind `{kind}`: known kinds are {known}")]
    UnknownKind { kind: String, known: String },
    /// The payload does not fit the kind (a usage error).
    #[error("bad payload for `{kind}` job: {reason}")]
    BadPayload { kind: String, reason: String },
    /// Any other field of a job or worker setting out of range (a usage error).
    #[error("{0}")]
    Invalid(String),
    #[error("no job {0}")]
    NoSuchJob(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot run the worker: {0}")]
    Worker(String),
}

impl PoolError {
    /// True when the user gave bad input (exit 2) rather than the environment failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            PoolError::UnknownKind { .. }
            | PoolError::BadPayload { .. }
            | PoolError::Invalid(_)
            | PoolError::NoSuchJob(_) => true,
            PoolError::Store(e) => e.is_usage(),
            PoolError::Worker(_) => false,
        }
    }
}

impl From<sqlx::Error> for PoolError {
    fn from(e: sqlx::Error) -> Self {
        PoolError::Store(StoreError::from(e))
    }
}
