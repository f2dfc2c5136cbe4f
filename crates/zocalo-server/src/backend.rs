//! [`Backend`]: what the server needs from whoever wires the crates together (the CLI).
//!
//! The server owns HTTP; building providers (keys: flag > environment > vault), the ask loop
//! with memory and tools, and the local models stays in one place, the CLI's wiring, which
//! implements this trait. Tests implement it over a FakeServer-backed provider.

use std::sync::Arc;

use axum::http::StatusCode;
use zocalo_agent::Asker;
use zocalo_core::embed::Embedder;
use zocalo_llm::{LlmError, Provider};
use zocalo_memory::Memory;

use crate::error::ApiError;

/// Why the backend could not hand out what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No such provider or model: the client named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Exists but cannot be used as configured (no API key, weights not fetched).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<LlmError> for BackendError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::UnknownProvider { .. } => BackendError::NotFound(e.to_string()),
            LlmError::MissingKey { .. } | LlmError::Vault(_) => {
                BackendError::Unavailable(e.to_string())
            }
            other => BackendError::Failed(other.to_string()),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound(m) => ApiError::not_found(m).code("model_not_found"),
            BackendError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m).code("unavailable")
            }
            BackendError::Failed(m) => ApiError::internal(m),
        }
    }
}

/// The wiring the server runs on.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The ask loop on the default provider with memory and tools: the model `zocalo` and
    /// `/api/conversations/.../ask`. Implementations build it once and hand out clones.
    async fn asker(&self) -> Result<Arc<Asker>, BackendError>;

    /// One provider by registry name, for `PROVIDER/MODEL` pass-through on `/v1`.
    async fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, BackendError>;

    /// `PROVIDER/MODEL` names to list on `/v1/models` besides `zocalo`.
    fn models(&self) -> Vec<String> {
        Vec::new()
    }

    /// The embedder behind `/v1/embeddings`; `None` when its weights are missing.
    fn embedder(&self) -> Option<Arc<dyn Embedder>>;

    /// The long-term memory `/api/memory` reads and writes; the same instance the ask loop
    /// recalls from, so what the API adds the next ask can find.
    fn memory(&self) -> Option<Arc<Memory>>;

    /// The job kinds `/api/jobs` accepts, with their payload checks (default: the pool's
    /// built-in `noop` and `shell`).
    fn job_kinds(&self) -> zocalo_pool::Registry {
        zocalo_pool::Registry::builtin()
    }

    /// The supervisor `/api/services` drives: the one this process runs as the data home's
    /// daemon. `Unavailable` (503, with the reason) when this process supervises nothing,
    /// which is the default.
    fn supervisor(&self) -> Result<zocalo_services::Supervisor, BackendError> {
        Err(BackendError::Unavailable(
            "this server does not supervise services".into(),
        ))
    }
}
