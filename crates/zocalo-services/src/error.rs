//! [`ServicesError`]: what defining, starting, stopping or reading a service can fail with.

use zocalo_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// Bad input: an empty or unparsable command, a bad name, env entry, URL or directory.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a service named `{0}` already exists: pick another name or `zocalo services rm {0}` first"
    )]
    Duplicate(String),
    #[error("no service named `{0}` (see `zocalo services list`)")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row that does not parse (edited by hand, or written by a newer build).
    #[error("stored service `{name}` is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The supervisor is shutting down and takes no more work.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

impl ServicesError {
    /// True when the user gave bad input (exit 2) rather than the environment failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            ServicesError::Invalid(_)
            | ServicesError::Duplicate(_)
            | ServicesError::NotFound(_) => true,
            ServicesError::Store(e) => e.is_usage(),
            ServicesError::Corrupt { .. }
            | ServicesError::Io { .. }
            | ServicesError::ShuttingDown => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ServicesError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<sqlx::Error> for ServicesError {
    fn from(e: sqlx::Error) -> Self {
        ServicesError::Store(StoreError::from(e))
    }
}
