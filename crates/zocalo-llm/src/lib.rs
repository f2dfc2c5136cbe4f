//! zocalo-llm: talking to language models.
//!
//! - [`Provider`]: the one trait the ask loop uses (`stream`, and `complete` built on it).
//! - [`LlmError`]: typed failures that say whether failing over / retrying is allowed.
//! - [`openai`]: OpenAI-compatible Chat Completions (OpenAI, Groq, OpenRouter, Ollama, any URL).
//! - [`anthropic`]: native Anthropic Messages.
//! - [`retry`]: bounded retries with `Retry-After` and jittered exponential backoff.
//! - `http` / `sse` (private): the shared POST, status → error mapping, SSE decoding with
//!   idle timeouts and cut detection.
//! - [`registry`]: provider names → endpoints, keys from flag > environment > vault; model
//!   listing and key checks against the vendors' `/models`.
//! - [`fallback`]: [`FallbackProvider`], a chain tried in order on failover-eligible errors.
//! - [`throttle`]: [`Throttled`], a provider behind a shared [`Gate`] (requests per minute,
//!   everyone pauses after a 429).
//! - [`vault`]: API keys encrypted at rest (`vault.bin`, XChaCha20-Poly1305, Argon2id).
//! - [`redact`]: registered secret values scrubbed from every log line.

pub mod anthropic;
pub mod embeddings;
pub mod error;
pub mod fallback;
mod http;
pub mod openai;
pub mod provider;
pub mod redact;
pub mod registry;
pub mod retry;
mod sse;
pub mod throttle;
pub mod vault;

pub use embeddings::OpenAiEmbedder;
pub use error::LlmError;
pub use fallback::FallbackProvider;
pub use provider::{collect_stream, EventStream, NamedStream, Provider};
pub use registry::{Detected, ProviderSpec, Registry, ResolveOptions};
pub use retry::{with_retry, RetryPolicy};
pub use throttle::{Gate, Throttled};
pub use vault::{Vault, VaultError};
