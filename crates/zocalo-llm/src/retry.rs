//! Retry policy. (Implementation pending: see the helper task.)
use std::time::Duration;

/// Bounded retries: `max_attempts` tries in all; waits follow `Retry-After` when the server
/// sends it, else jittered exponential backoff from `base_delay`, capped at `max_delay`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}
