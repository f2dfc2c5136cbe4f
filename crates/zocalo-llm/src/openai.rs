//! OpenAI-compatible Chat Completions. (Implementation pending.)
use async_trait::async_trait;
use zocalo_core::CompletionRequest;

use crate::registry::Endpoint;
use crate::{EventStream, LlmError, Provider};

pub struct OpenAiProvider {
    endpoint: Endpoint,
}

impl OpenAiProvider {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }
    fn default_model(&self) -> &str {
        &self.endpoint.default_model
    }
    async fn stream(&self, _request: CompletionRequest) -> Result<EventStream, LlmError> {
        Err(LlmError::Other("not yet".into()))
    }
}
