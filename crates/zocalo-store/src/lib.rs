//! zocalo-store: the database behind zocalo, SQLite (embedded default) or PostgreSQL.
//!
//! - [`Store`]: connect by URL, open the SQLite file, or a Postgres schema; migrations run on
//!   connect, are idempotent, and a database migrated by a newer zocalo is refused.
//! - [`conversations`]: conversations and messages; a turn is appended in one transaction.
//! - [`usage`]: token usage of the stored messages, grouped by provider, model or day, and
//!   the totals the ask loop's budgets are checked against.
//! - [`settings`]: what a conversation keeps between asks (persona, model).
//! - [`summaries`]: the model's summaries of a conversation's oldest turns (context
//!   compression); the turns themselves stay.
//! - [`StoreError`]: what can fail; URLs in errors never carry a password.
//! - [`with_pool!`]: run the same SQL on whichever backend is configured.
//! - [`Dialects`] / [`dialects!`]: a statement whose text differs between the backends.
//!
//! Migrations live in `migrations/sqlite` and `migrations/postgres` (same versions on both);
//! longer statements live in `src/sql/*.sql`. The SQL text is shared between backends: sqlx's
//! SQLite driver maps `$N` to the N-th argument just as Postgres does.

pub mod conversations;
pub mod dialect;
pub mod error;
pub mod settings;
mod store;
pub mod summaries;
mod ts;
mod url;
pub mod usage;

pub use conversations::{Conversation, NewMessage, PreparedTurn, StoredMessage, TurnWriter};
pub use dialect::Dialects;
pub use error::{redact_url, StoreError};
pub use settings::ConversationSettings;
pub use store::{Backend, Pool, Store};
pub use summaries::ConversationSummary;
pub use usage::{parse_since, UsageBy, UsageRow};
