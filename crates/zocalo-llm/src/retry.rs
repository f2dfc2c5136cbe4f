//! Bounded retries around *establishing* a stream (sending the request and reading the
//! status). Once text has streamed, a failure is the caller's to handle: replaying would
//! duplicate what the user already saw.
//!
//! Waits follow the server's `Retry-After` when it sent one (capped at `max_delay`), else
//! "full jitter" exponential backoff: a uniform draw from `0..=min(max_delay, base * 2^n)`.
//! Full jitter spreads the retries of many clients hit by the same outage.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::LlmError;

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

impl RetryPolicy {
    /// A policy that tries once and never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Whether `err` is worth another try of the same request. A cut stream is not: it
    /// happens after text has streamed, past the point where this policy applies.
    pub fn should_retry(err: &LlmError) -> bool {
        err.is_retryable() && !matches!(err, LlmError::StreamCut { .. })
    }

    /// The upper bound of the backoff after failed attempt `attempt` (0-based):
    /// `min(max_delay, base_delay * 2^attempt)`.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before the next try after failed attempt `attempt` (0-based) with `err`.
    /// `jitter` is a draw from `0.0..=1.0` (clamped), so the computation itself is
    /// deterministic and testable.
    pub fn delay_for(&self, attempt: u32, err: &LlmError, jitter: f64) -> Duration {
        if let Some(wait) = err.retry_after() {
            return wait.min(self.max_delay);
        }
        self.backoff_ceiling(attempt)
            .mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Run `f` until it succeeds, fails with an error not worth retrying, or `policy` runs out of
/// attempts; the last error is returned. Each retry is logged at `warn` (the error texts never
/// contain a key).
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    mut f: F,
) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LlmError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(err) => {
                if attempt + 1 >= max_attempts || !RetryPolicy::should_retry(&err) {
                    return Err(err);
                }
                let jitter: f64 = rand::thread_rng().gen_range(0.0..=1.0);
                let wait = policy.delay_for(attempt, &err, jitter);
                tracing::warn!(
                    provider,
                    attempt = attempt + 1,
                    max_attempts,
                    wait_ms = wait.as_millis() as u64,
                    error = %err,
                    "model call failed; retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    fn server() -> LlmError {
        LlmError::Server {
            provider: "p".into(),
            status: 500,
            message: "boom".into(),
        }
    }

    fn limited(after: Option<Duration>) -> LlmError {
        LlmError::RateLimited {
            provider: "p".into(),
            retry_after: after,
            message: "slow down".into(),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        let ms: Vec<u128> = (0..6).map(|a| p.backoff_ceiling(a).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        // Absurd attempt numbers saturate instead of overflowing.
        assert_eq!(p.backoff_ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        let p = policy();
        assert_eq!(p.delay_for(2, &server(), 0.0), Duration::ZERO);
        assert_eq!(p.delay_for(2, &server(), 1.0), Duration::from_millis(400));
        assert_eq!(p.delay_for(2, &server(), 0.5), Duration::from_millis(200));
        // Out-of-range draws are clamped.
        assert_eq!(p.delay_for(0, &server(), 7.0), Duration::from_millis(100));
        assert_eq!(p.delay_for(0, &server(), -1.0), Duration::ZERO);
        // A 429 without Retry-After backs off like any other retryable error.
        assert_eq!(
            p.delay_for(1, &limited(None), 1.0),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = policy();
        let d = p.delay_for(0, &limited(Some(Duration::from_millis(700))), 0.0);
        assert_eq!(d, Duration::from_millis(700));
        let d = p.delay_for(0, &limited(Some(Duration::from_secs(60))), 0.0);
        assert_eq!(d, Duration::from_secs(1));
    }

    #[test]
    fn what_is_retried() {
        assert!(RetryPolicy::should_retry(&server()));
        assert!(RetryPolicy::should_retry(&limited(None)));
        assert!(!RetryPolicy::should_retry(&LlmError::StreamCut {
            received: 3
        }));
        assert!(!RetryPolicy::should_retry(&LlmError::BadRequest {
            provider: "p".into(),
            status: 400,
            message: "no".into()
        }));
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_on_fatal() {
        let fast = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let r = with_retry(&fast, "p", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(server())
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry(&fast, "p", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(LlmError::Auth {
                provider: "p".into(),
                status: 401,
                message: "bad key".into(),
                key_env: "K".into(),
            })
        })
        .await;
        assert!(matches!(r, Err(LlmError::Auth { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let fast = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry(&fast, "p", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(server())
        })
        .await;
        assert!(matches!(r, Err(LlmError::Server { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
