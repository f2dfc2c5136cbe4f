//! Shared set-up for the provider tests: endpoints pointed at a [`FakeServer`], with fast
//! retries and short timeouts so failures show in milliseconds.
#![allow(dead_code)]

use std::time::Duration;

use zocalo_core::{CompletionRequest, CompletionResponse, Message, Secret, StreamEvent};
use zocalo_llm::anthropic::AnthropicProvider;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::{collect_stream, LlmError, Provider, RetryPolicy};
use zocalo_testkit::fake::FakeServer;

pub const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789abcdef";

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

pub fn openai_endpoint(server: &FakeServer) -> Endpoint {
    let mut ep = Endpoint::new(
        "openai",
        &format!("{}/v1", server.url()),
        Some(Secret::new(OPENAI_KEY)),
        "OPENAI_API_KEY",
        "gpt-test",
    );
    ep.retry = fast_retry();
    ep.idle_timeout = Duration::from_secs(5);
    ep.connect_timeout = Duration::from_secs(2);
    ep
}

pub fn anthropic_endpoint(server: &FakeServer) -> Endpoint {
    let mut ep = Endpoint::new(
        "anthropic",
        &server.url(),
        Some(Secret::new(ANTHROPIC_KEY)),
        "ANTHROPIC_API_KEY",
        "claude-test",
    );
    ep.retry = fast_retry();
    ep.idle_timeout = Duration::from_secs(5);
    ep.connect_timeout = Duration::from_secs(2);
    ep
}

pub fn openai(server: &FakeServer) -> OpenAiProvider {
    OpenAiProvider::new(openai_endpoint(server))
}

pub fn anthropic(server: &FakeServer) -> AnthropicProvider {
    AnthropicProvider::new(anthropic_endpoint(server))
}

pub fn ask(text: &str) -> CompletionRequest {
    CompletionRequest {
        model: String::new(),
        system: None,
        messages: vec![Message::user(text)],
        tools: vec![],
        max_tokens: 256,
        temperature: None,
    }
}

/// Every item of the stream, errors included, in order.
pub async fn events(
    p: &dyn Provider,
    req: CompletionRequest,
) -> Result<Vec<Result<StreamEvent, LlmError>>, LlmError> {
    use futures::StreamExt;
    let s = p.stream(req).await?;
    Ok(s.collect().await)
}

pub async fn complete(
    p: &dyn Provider,
    req: CompletionRequest,
) -> Result<CompletionResponse, LlmError> {
    let s = p.stream(req).await?;
    collect_stream(s, |_| {}).await
}
