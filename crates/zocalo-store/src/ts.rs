//! Timestamps as the two backends store them.
//!
//! Postgres has `timestamptz` (microseconds). SQLite has text, and sqlx would write
//! `DateTime<Utc>` with a variable number of fractional digits (`…:00Z`, `…:00.5Z`), which does
//! not sort as time. [`Ts`] writes exactly six digits so `ORDER BY` on the text is time order;
//! reading back uses sqlx's own `DateTime<Utc>` decoding on both backends.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo};
use sqlx::{Encode, Type};

/// Now, at the precision both backends keep (so a value read back equals the one written).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A timestamp to bind as a query argument.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ts(pub DateTime<Utc>);

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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn sqlite_text_sorts_as_time() -> Result<(), BoxDynError> {
        let text = |t: DateTime<Utc>| -> Result<String, BoxDynError> {
            let mut buf = Vec::new();
            let _ = <Ts as Encode<Sqlite>>::encode_by_ref(&Ts(t), &mut buf)?;
            match buf.pop() {
                Some(SqliteArgumentValue::Text(s)) => Ok(s.to_string()),
                other => Err(format!("unexpected {other:?}").into()),
            }
        };
        let whole = Utc
            .with_ymd_and_hms(2026, 3, 8, 7, 30, 0)
            .single()
            .ok_or("date")?;
        let later = whole + chrono::Duration::microseconds(500_000);
        assert_eq!(text(whole)?, "2026-03-08T07:30:00.000000Z");
        assert!(text(whole)? < text(later)?);
        Ok(())
    }
}
