//! Dev-only test helpers.
//!
//! - [`fake`]: a local HTTP server that answers with scripted responses (status, headers, body
//!   split into chunks, optionally cut) and records every request; recorded real OpenAI and
//!   Anthropic SSE bodies live in `fixtures/`.
//! - [`db`]: a fresh SQLite file or a fresh Postgres schema per test.
//! - [`telegram`]: a local Telegram Bot API server (documented JSON, long polling, 429/409).
//! - [`mail`]: real IMAP (Dovecot) and SMTP (aiosmtpd) servers on loopback for the email channel.
//! - [`pages`]: a tiny web server for browser tests, plus process-table and skip helpers.
//! - [`load`] (feature `load`): soak and load runs against the real `zocalo serve` and
//!   `zocalo daemon run`; the `soak` example runs them from the command line.

pub mod db;
pub mod fake;
#[cfg(feature = "load")]
pub mod load;
pub mod mail;
pub mod pages;
pub mod telegram;

/// The variables a developer's shell (or CI) may have set that would change what a `zocalo`
/// process started by a test does: remove them all, then set what the test means.
pub const SCRUB_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "FIREWORKS_API_KEY",
    "OLLAMA_HOST",
    "LMSTUDIO_BASE_URL",
    "ZOCALO_PROVIDER",
    "ZOCALO_MODEL",
    "ZOCALO_DATABASE_URL",
    "ZOCALO_SERVER_TOKEN",
    "ZOCALO_VAULT_PASSPHRASE",
    "ZOCALO_LOG",
    "ZOCALO_HOME",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE",
    "ZOCALO_EMAIL_PASSWORD",
];
