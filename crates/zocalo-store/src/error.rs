//! [`StoreError`], and the password scrubbing every error that quotes a URL goes through.

use std::path::PathBuf;

/// Everything the store can fail with. Messages are shown to users as they are, so none of them
/// may contain a password: URLs pass through [`redact_url`] before they get here.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is malformed or names a backend we do not speak (a usage error, exit 2).
    #[error("invalid database URL `{url}`: {reason}")]
    BadUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        reason: String,
    },
    /// Connecting to PostgreSQL failed before any SQL ran (refused, timed out, DNS, TLS).
    #[error("cannot reach PostgreSQL at {host}:{port}: {message}")]
    Unreachable {
        host: String,
        port: u16,
        message: String,
    },
    /// The database was migrated by a newer zocalo; running our migrations could damage it.
    #[error(
        "database schema version {found} is newer than this zocalo (knows up to {known}): upgrade zocalo"
    )]
    NewerSchema { found: i64, known: i64 },
    /// A value the caller chose that the store cannot take (a conversation key that is empty,
    /// too long or has control characters): a usage error.
    #[error("{0}")]
    Invalid(String),
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// A row that cannot be decoded into our types (edited by hand, or a bug).
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// The disk (or the PostgreSQL server's disk) is full. The change that hit it was rolled
    /// back as a whole; what was stored before is intact.
    #[error(
        "the disk holding the database is full ({0}): the change was not saved and the data \
         stored before it is intact; free some space and try again"
    )]
    DiskFull(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("cannot create or open {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the user gave bad input (exit 2) rather than the environment failing (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, StoreError::BadUrl { .. } | StoreError::Invalid(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A column that does not decode (bad JSON in tool_calls, a mangled timestamp) is
            // a corrupt row, not a failing database.
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            sqlx::Error::Database(ref d) if is_disk_full(d.as_ref()) => {
                StoreError::DiskFull(d.message().to_owned())
            }
            other => StoreError::Db(other),
        }
    }
}

/// SQLITE_FULL (13, whatever its extended bits) or PostgreSQL's `disk_full` (53100).
fn is_disk_full(d: &dyn sqlx::error::DatabaseError) -> bool {
    let code = d.code();
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|n| n & 0xff == 13)
    } else {
        code.as_deref() == Some("53100")
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Migrate(other.to_string()),
        }
    }
}

/// `url` with the password of its user-info and any `password=` query parameter replaced by
/// `***`. Works on text that is not a valid URL too, since that is exactly when we quote it.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                let pw_start = auth_start + colon + 1;
                let pw_end = auth_start + at;
                if pw_end > pw_start {
                    out.replace_range(pw_start..pw_end, "***");
                }
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("password") && !v.is_empty() => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// Replaces every occurrence of `secret` in `text` by `***` (a driver error may quote options).
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db.example:5432/app"),
            "postgres://bob:***@db.example:5432/app"
        );
        assert_eq!(
            redact_url("postgres://bob:p@ss@db/app"),
            "postgres://bob:***@db/app"
        );
        assert_eq!(redact_url("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(redact_url("garbage"), "garbage");
    }

    #[test]
    fn redacts_query_password() {
        assert_eq!(
            redact_url("postgres://db/app?user=bob&password=s3cret&sslmode=off"),
            "postgres://db/app?user=bob&password=***&sslmode=off"
        );
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        assert_eq!(scrub("a s3 b s3", &["s3".into()]), "a *** b ***");
        assert_eq!(scrub("abc", &[String::new()]), "abc");
    }

    #[test]
    fn only_bad_url_is_usage() {
        let e = StoreError::BadUrl {
            url: "x".into(),
            reason: "y".into(),
        };
        assert!(e.is_usage());
        assert!(!StoreError::Corrupt("x".into()).is_usage());
    }
}
