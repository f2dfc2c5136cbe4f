//! zocalo-llm: talking to language models.
//!
//! - [`Provider`]: the one trait the ask loop uses (`stream`, and `complete` built on it).
//! - [`LlmError`]: typed failures that say whether failing over / retrying is allowed.
//! - [`openai`]: OpenAI-compatible Chat Completions (OpenAI, Groq, OpenRouter, Ollama, any URL).
//! - [`anthropic`]: native Anthropic Messages.
//! - [`retry`]: bounded retries with `Retry-After` and jittered exponential backoff.
//! - `http` / `sse` (private): the shared POST, status → error mapping, SSE decoding with
//!   idle timeouts and cut detection.
//! - [`registry`]: provider names → endpoints, keys from flag > environment.

pub mod anthropic;
pub mod error;
mod http;
pub mod openai;
pub mod provider;
pub mod registry;
pub mod retry;
mod sse;

pub use error::LlmError;
pub use provider::{collect_stream, EventStream, Provider};
pub use registry::{ProviderSpec, Registry, ResolveOptions};
pub use retry::{with_retry, RetryPolicy};
