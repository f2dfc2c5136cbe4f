//! [`FallbackProvider`]: several providers tried in order, as one.
//!
//! A member is left for the next only on a failover-eligible error (rate limit after the
//! member's own retries, 5xx, timeout, connection failure) that happens *before any answer
//! streamed*: once text or a tool call has reached the caller, switching vendors would
//! splice two different answers. Authentication failures and bad requests are reported, not
//! failed over: they are the user's to fix, and hiding them behind another vendor would
//! make a revoked key look like it works.
//!
//! Members after the first answer with their own default model: a model name belongs to the
//! vendor it was chosen for.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use zocalo_core::{CompletionRequest, StreamEvent};

use crate::{EventStream, LlmError, NamedStream, Provider};

pub struct FallbackProvider {
    chain: Vec<Arc<dyn Provider>>,
}

impl std::fmt::Debug for FallbackProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.chain.iter().map(|p| p.name()).collect();
        f.debug_struct("FallbackProvider")
            .field("chain", &names)
            .finish()
    }
}

impl FallbackProvider {
    /// The chain, first choice first. `None` if `chain` is empty.
    pub fn new(chain: Vec<Arc<dyn Provider>>) -> Option<Self> {
        (!chain.is_empty()).then_some(Self { chain })
    }

    /// The members' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.chain.iter().map(|p| p.name().to_owned()).collect()
    }
}

/// Whether `err`, seen before any answer streamed, allows moving to the next provider.
pub fn is_failover_eligible(err: &LlmError) -> bool {
    matches!(
        err,
        LlmError::RateLimited { .. }
            | LlmError::Server { .. }
            | LlmError::Timeout { .. }
            | LlmError::Connect { .. }
            // Cut before a single byte of answer: nothing reached the user.
            | LlmError::StreamCut { received: 0 }
    )
}

/// Open `provider`'s stream and read up to its first answer event (text, tool call or the
/// end), so that an error the vendor reports in-stream before answering (Anthropic's
/// `overloaded_error`, an idle timeout) can still fail over. Events read ahead are replayed.
async fn open_until_answer(
    provider: &dyn Provider,
    request: CompletionRequest,
) -> Result<EventStream, LlmError> {
    let mut inner = provider.stream(request).await?;
    let mut ahead = Vec::new();
    loop {
        match inner.next().await {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(ev)) => {
                let answered = !matches!(ev, StreamEvent::Usage(_));
                ahead.push(Ok(ev));
                if answered {
                    break;
                }
            }
        }
    }
    Ok(stream::iter(ahead).chain(inner).boxed())
}

#[async_trait]
impl Provider for FallbackProvider {
    fn name(&self) -> &str {
        self.chain.first().map(|p| p.name()).unwrap_or("fallback")
    }

    fn default_model(&self) -> &str {
        self.chain.first().map(|p| p.default_model()).unwrap_or("")
    }

    /// The chain's first choice decides: tools are offered when it can use them.
    fn supports_tools(&self) -> bool {
        self.chain.first().is_some_and(|p| p.supports_tools())
    }

    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        Ok(self.stream_named(request).await?.stream)
    }

    async fn stream_named(&self, request: CompletionRequest) -> Result<NamedStream, LlmError> {
        let mut failures: Vec<String> = Vec::new();
        let last = self.chain.len().saturating_sub(1);
        for (i, provider) in self.chain.iter().enumerate() {
            let mut req = request.clone();
            if i > 0 {
                req.model = String::new();
            }
            match open_until_answer(provider.as_ref(), req).await {
                Ok(stream) => {
                    if !failures.is_empty() {
                        tracing::info!(provider = provider.name(), "answered after failover");
                    }
                    return Ok(NamedStream {
                        provider: provider.name().to_owned(),
                        stream,
                    });
                }
                Err(e) if i < last && is_failover_eligible(&e) => {
                    tracing::warn!(
                        provider = provider.name(),
                        next = self.chain[i + 1].name(),
                        error = %e,
                        "provider failed; trying the next in the fallback chain"
                    );
                    failures.push(format!("{}: {e}", provider.name()));
                }
                Err(e) if failures.is_empty() => return Err(e),
                Err(e) => {
                    failures.push(format!("{}: {e}", provider.name()));
                    return Err(LlmError::AllFailed {
                        attempts: failures,
                        last: Box::new(e),
                    });
                }
            }
        }
        Err(LlmError::Other("the fallback chain is empty".into()))
    }
}
