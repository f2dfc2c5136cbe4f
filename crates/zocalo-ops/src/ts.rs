//! Timestamps as the two backends keep them, for binding.
//!
//! The conversation tables hold SQLite text with exactly six fractional digits (so text order
//! is time order) and Postgres `timestamptz`; zocalo-store writes them that way and so must we,
//! or restored rows would sort wrong next to new ones. The other tables hold integer
//! milliseconds, which need no help.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo};
use sqlx::{Encode, Type};

/// A timestamp to bind into a conversation table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ts(pub DateTime<Utc>);

impl Ts {
    /// At the precision both backends keep.
    pub(crate) fn of(t: DateTime<Utc>) -> Self {
        Ts(t.trunc_subsecs(6))
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        let text = self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        <String as Encode<'q, Sqlite>>::encode(text, buf)
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// Milliseconds since the epoch as a timestamp (the integer columns).
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} ms is out of range"))
}
