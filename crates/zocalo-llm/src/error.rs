use std::time::Duration;

/// Why a model call failed. Messages are written for the user and never contain a key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{provider} rejected the API key (HTTP {status}): {message}. Check the key: `zocalo keys set {provider}` or the {key_env} variable")]
    Auth {
        provider: String,
        status: u16,
        message: String,
        key_env: String,
    },
    #[error("{provider} rate limit (HTTP 429){}: {message}", retry_after.map(|d| format!(", retry after {}s", d.as_secs_f32())).unwrap_or_default())]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{provider} server error (HTTP {status}): {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("{provider} refused the request (HTTP {status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("cannot connect to {provider} at {url}: {message}")]
    Connect {
        provider: String,
        url: String,
        message: String,
    },
    #[error("{provider} did not answer within {}s", after.as_secs_f32())]
    Timeout { provider: String, after: Duration },
    #[error("the model's stream was cut before it finished ({received} bytes of text received)")]
    StreamCut { received: usize },
    #[error("{provider} sent something that is not its documented format: {message}")]
    Protocol { provider: String, message: String },
    #[error("no API key for {provider}: run `zocalo keys set {provider}` or set {key_env}")]
    MissingKey { provider: String, key_env: String },
    #[error("unknown provider {name:?}; known providers: {}", known.join(", "))]
    UnknownProvider { name: String, known: Vec<String> },
    #[error("every provider in the fallback chain failed: {}", attempts.join("; "))]
    AllFailed {
        /// `provider: error` per member tried, in order.
        attempts: Vec<String>,
        /// The last member's error.
        last: Box<LlmError>,
    },
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("{0}")]
    Other(String),
}

impl LlmError {
    /// Whether trying again (the same provider after a wait, or the next in a fallback
    /// chain) can help: rate limits, 5xx, connection failures, timeouts and cut streams.
    /// Authentication and bad requests will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Connect { .. }
                | LlmError::Timeout { .. }
                | LlmError::StreamCut { .. }
        )
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True for errors the user must fix (bad input / configuration), as opposed to runtime
    /// failures; the CLI maps these to exit code 2.
    pub fn is_usage(&self) -> bool {
        match self {
            LlmError::UnknownProvider { .. } => true,
            LlmError::Vault(v) => v.is_usage(),
            _ => false,
        }
    }
}
