//! A server over an in-process stub model, for the tests that drive real HTTP on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use zocalo_agent::{AskSettings, Asker, ToolRegistry};
use zocalo_core::embed::Embedder;
use zocalo_core::{CompletionRequest, StopReason, StreamEvent, Usage};
use zocalo_llm::{EventStream, LlmError, Provider};
use zocalo_memory::Memory;
use zocalo_server::{Backend, BackendError, ServerBuilder, Token};
use zocalo_store::Store;

/// Answers "ok" to everything, streamed as two pieces.
pub struct Stub;

#[async_trait]
impl Provider for Stub {
    fn name(&self) -> &str {
        "stub"
    }

    fn default_model(&self) -> &str {
        "stub-1"
    }

    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        let events = vec![
            Ok(StreamEvent::TextDelta("o".into())),
            Ok(StreamEvent::TextDelta("k".into())),
            Ok(StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 1,
            })),
            Ok(StreamEvent::Done {
                stop_reason: StopReason::EndTurn,
                model: request.model,
            }),
        ];
        Ok(stream::iter(events).boxed())
    }
}

/// The ask loop and the `stub` provider over [`Stub`]; no embedder, no memory.
struct StubBackend {
    asker: Arc<Asker>,
}

#[async_trait]
impl Backend for StubBackend {
    async fn asker(&self) -> Result<Arc<Asker>, BackendError> {
        Ok(self.asker.clone())
    }

    async fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, BackendError> {
        if name == "stub" {
            Ok(Arc::new(Stub))
        } else {
            Err(BackendError::NotFound(format!("no provider {name:?}")))
        }
    }

    fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        None
    }

    fn memory(&self) -> Option<Arc<Memory>> {
        None
    }
}

/// A server builder over [`Stub`] on an in-memory SQLite store, guarded by `token`.
pub async fn stub_builder(token: Token) -> ServerBuilder {
    let store = Store::open_sqlite_memory().await.unwrap();
    let asker = Asker::new(
        store.clone(),
        Arc::new(Stub),
        ToolRegistry::new(),
        AskSettings::default(),
    );
    let backend = Arc::new(StubBackend {
        asker: Arc::new(asker),
    });
    ServerBuilder::new(store, backend, token)
}
