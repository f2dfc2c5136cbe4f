//! [`Throttled`]: a provider that waits its turn, so a thousand agents slow down together
//! instead of failing one by one.
//!
//! Every request first takes a slot from the provider's [`Gate`], shared by the whole
//! process (one per provider name):
//! - with a requests-per-minute limit, slots are spaced evenly, `60 s / rpm` apart;
//! - a 429 the provider still returns after its own retries (those already honour
//!   `Retry-After` per request) closes the gate for everyone for the wait the server asked
//!   for (or a doubling backoff), and the request is tried again, a bounded number of times.
//!   Other agents stop hammering a vendor that said "slow down" instead of burning their own
//!   retries against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use zocalo_core::CompletionRequest;

use crate::{EventStream, LlmError, NamedStream, Provider};

/// Tries after a 429 that outlived the provider's own retries.
pub const DEFAULT_RATE_LIMIT_RETRIES: u32 = 6;
/// First wait after a 429 without `Retry-After`; doubles per try.
const BASE_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Admission control for one provider: even spacing under a requests-per-minute limit, and
/// a pause for everyone after a 429.
#[derive(Debug)]
pub struct Gate {
    spacing: Option<Duration>,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    /// The earliest instant the next slot may start.
    next_slot: Instant,
    /// Nobody starts before this (set by a 429).
    paused_until: Instant,
}

impl Gate {
    /// A gate of its own: `rpm` requests per minute at most (`None`: no spacing, only the
    /// pause after a 429).
    pub fn new(rpm: Option<u32>) -> Self {
        let now = Instant::now();
        Self {
            spacing: rpm.filter(|r| *r > 0).map(|r| Duration::from_secs(60) / r),
            state: Mutex::new(GateState {
                next_slot: now,
                paused_until: now,
            }),
        }
    }

    /// The process-wide gate of provider `name` with limit `rpm` (the same pair always gives
    /// the same gate).
    pub fn shared(name: &str, rpm: Option<u32>) -> Arc<Gate> {
        type Gates = HashMap<(String, Option<u32>), Arc<Gate>>;
        static GATES: OnceLock<Mutex<Gates>> = OnceLock::new();
        let gates = GATES.get_or_init(Default::default);
        let mut gates = gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            gates
                .entry((name.to_owned(), rpm))
                .or_insert_with(|| Arc::new(Gate::new(rpm))),
        )
    }

    /// The spacing between requests (`60 s / rpm`), if limited.
    pub fn spacing(&self) -> Option<Duration> {
        self.spacing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this request's turn.
    pub async fn acquire(&self) {
        loop {
            let start = {
                let mut s = self.lock();
                let now = Instant::now();
                let start = now.max(s.paused_until).max(s.next_slot);
                if let Some(spacing) = self.spacing {
                    s.next_slot = start + spacing;
                }
                start
            };
            tokio::time::sleep_until(start).await;
            // A 429 may have closed the gate while this request slept: wait again.
            if self.lock().paused_until <= Instant::now() {
                return;
            }
        }
    }

    /// Nobody starts for `wait` from now (a longer pause already set stays).
    pub fn pause(&self, wait: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + wait;
        if until > s.paused_until {
            s.paused_until = until;
        }
    }
}

/// `inner` behind a [`Gate`].
pub struct Throttled {
    inner: Arc<dyn Provider>,
    gate: Arc<Gate>,
    retries: u32,
}

impl Throttled {
    pub fn new(inner: Arc<dyn Provider>, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            retries: DEFAULT_RATE_LIMIT_RETRIES,
        }
    }

    /// How many times a request is tried again after a 429 (default
    /// [`DEFAULT_RATE_LIMIT_RETRIES`]).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }
}

#[async_trait]
impl Provider for Throttled {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    fn supports_tools(&self) -> bool {
        self.inner.supports_tools()
    }

    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        Ok(self.stream_named(request).await?.stream)
    }

    async fn stream_named(&self, request: CompletionRequest) -> Result<NamedStream, LlmError> {
        let mut attempt = 0u32;
        loop {
            self.gate.acquire().await;
            match self.inner.stream_named(request.clone()).await {
                Err(e @ LlmError::RateLimited { .. }) if attempt < self.retries => {
                    let backoff = BASE_PAUSE
                        .checked_mul(1 << attempt.min(16))
                        .unwrap_or(MAX_PAUSE)
                        .min(MAX_PAUSE);
                    let wait = e.retry_after().unwrap_or(backoff).min(MAX_PAUSE);
                    tracing::warn!(
                        provider = self.inner.name(),
                        wait_ms = wait.as_millis() as u64,
                        attempt = attempt + 1,
                        "rate limited: pausing every request to this provider"
                    );
                    self.gate.pause(wait);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (tokio's paused clock needs a feature the workspace does not build with):
    // the assertions allow for a slow machine but not for missing waits.
    #[tokio::test]
    async fn slots_are_spaced_evenly() {
        let gate = Arc::new(Gate::new(Some(600)));
        assert_eq!(gate.spacing(), Some(Duration::from_millis(100)));
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..5 {
            let g = Arc::clone(&gate);
            handles.push(tokio::spawn(async move {
                g.acquire().await;
                Instant::now()
            }));
        }
        let mut at = Vec::new();
        for h in handles {
            at.push(h.await.unwrap() - t0);
        }
        at.sort_unstable();
        assert!(at[0] < Duration::from_millis(50), "{at:?}");
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(95), "{at:?}");
        }
    }

    #[tokio::test]
    async fn a_pause_holds_everyone() {
        let gate = Gate::new(None);
        let t0 = Instant::now();
        gate.acquire().await;
        assert!(t0.elapsed() < Duration::from_millis(50));
        gate.pause(Duration::from_millis(300));
        gate.pause(Duration::from_millis(100)); // shorter: ignored
        gate.acquire().await;
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn shared_gates_are_per_name_and_limit() {
        let a = Gate::shared("p", Some(10));
        let b = Gate::shared("p", Some(10));
        let c = Gate::shared("q", Some(10));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
