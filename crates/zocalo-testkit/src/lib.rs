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
