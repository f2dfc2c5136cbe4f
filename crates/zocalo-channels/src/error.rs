//! What can fail on a channel.

use std::time::Duration;

use zocalo_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Bad configuration or input (a malformed target, a missing token): a usage error.
    #[error("{0}")]
    Invalid(String),
    /// The service asked us to wait (Telegram's 429 `retry_after`).
    #[error("rate limited: retry after {0:?}")]
    RetryAfter(Duration),
    /// Another program is taking this bot's updates (Telegram's 409).
    #[error("{0}")]
    Conflict(String),
    /// The credentials were refused (a revoked bot token, a wrong password).
    #[error("{0}")]
    Unauthorized(String),
    /// The service answered with an error.
    #[error("{service} said {code}: {description}")]
    Api {
        service: &'static str,
        code: i64,
        description: String,
    },
    /// The service could not be reached or its answer could not be read. Never carries a
    /// URL (a Telegram URL holds the bot token).
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChannelError {
    /// Bad input or configuration (exit 2), rather than the service or the network failing.
    pub fn is_usage(&self) -> bool {
        matches!(self, ChannelError::Invalid(_))
            || matches!(self, ChannelError::Store(e) if e.is_usage())
    }

    /// Worth trying again later (the service was down or busy), as opposed to a mistake that
    /// the same call would repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            ChannelError::RetryAfter(_) | ChannelError::Transport(_) => true,
            ChannelError::Api { code, .. } => *code >= 500 || *code == 429,
            ChannelError::Store(_) | ChannelError::Conflict(_) => true,
            ChannelError::Invalid(_) | ChannelError::Unauthorized(_) => false,
        }
    }
}

impl From<sqlx::Error> for ChannelError {
    fn from(e: sqlx::Error) -> Self {
        ChannelError::Store(StoreError::from(e))
    }
}
