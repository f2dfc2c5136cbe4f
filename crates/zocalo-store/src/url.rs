//! Database URLs: which backend, and where.
//!
//! Accepted: `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `postgres://…`,
//! `postgresql://…` (anything libpq-style URLs allow, such as `?sslmode=` or `?host=/socket`).

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::error::{redact_url, StoreError};

pub(crate) enum Target {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres {
        options: Box<PgConnectOptions>,
        /// Password spellings found in the URL, to scrub from driver messages.
        secrets: Vec<String>,
    },
}

const EXPECTED: &str = "expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE";

pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: redact_url(url),
        reason,
    };
    let url_trimmed = url.trim();
    if url_trimmed.is_empty() {
        return Err(bad(format!("empty; {EXPECTED}")));
    }
    let Some((scheme, rest)) = url_trimmed.split_once(':') else {
        return Err(bad(format!("no scheme; {EXPECTED}")));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => parse_sqlite(rest).map_err(bad),
        "postgres" | "postgresql" => parse_postgres(url_trimmed).map_err(bad),
        "" => Err(bad(format!("no scheme; {EXPECTED}"))),
        other => Err(bad(format!("unsupported database `{other}`; {EXPECTED}"))),
    }
}

fn parse_sqlite(rest: &str) -> Result<Target, String> {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    // Query parameters (`?mode=rwc`) are sqlx/SQLite options we set ourselves; ignore them.
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if path == ":memory:" {
        return Ok(Target::SqliteMemory);
    }
    if path.is_empty() {
        return Err(
            "empty SQLite path; expected sqlite://PATH, e.g. sqlite:///home/me/zocalo.db".into(),
        );
    }
    Ok(Target::SqliteFile(PathBuf::from(path)))
}

fn parse_postgres(url: &str) -> Result<Target, String> {
    let parsed = ::url::Url::parse(url).map_err(|e| format!("{e}; {EXPECTED}"))?;
    let mut secrets = Vec::new();
    if let Some(pw) = parsed.password() {
        secrets.push(pw.to_owned());
        if let Ok(decoded) = percent_decode(pw) {
            secrets.push(decoded);
        }
    }
    let mut query_host = false;
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "password" => secrets.push(v.into_owned()),
            "host" | "hostaddr" if !v.is_empty() => query_host = true,
            _ => {}
        }
    }
    let host_missing = parsed.host_str().is_none_or(str::is_empty);
    if host_missing && !query_host {
        return Err(format!("no host; {EXPECTED}"));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| crate::error::scrub(&e.to_string(), &secrets))?;
    Ok(Target::Postgres {
        options: Box::new(options),
        secrets,
    })
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match parse(url) {
            Err(StoreError::BadUrl { reason, .. }) => reason,
            Err(e) => panic!("{url}: unexpected error {e}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }

    #[test]
    fn sqlite_forms() {
        for (url, want) in [
            ("sqlite:///tmp/a.db", "/tmp/a.db"),
            ("sqlite://rel/a.db", "rel/a.db"),
            ("sqlite:a.db", "a.db"),
            ("sqlite:/abs/a.db?mode=rwc", "/abs/a.db"),
        ] {
            match parse(url) {
                Ok(Target::SqliteFile(p)) => assert_eq!(p, PathBuf::from(want), "{url}"),
                _ => panic!("{url} not a sqlite file"),
            }
        }
        assert!(matches!(parse("sqlite::memory:"), Ok(Target::SqliteMemory)));
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(reason("mysql://x").contains("unsupported database `mysql`"));
        assert!(reason("sqlite://").contains("empty SQLite path"));
        assert!(reason("sqlite:").contains("empty SQLite path"));
        assert!(reason("postgres://").contains("no host"));
        assert!(reason("garbage").contains("no scheme"));
        assert!(reason("").contains("empty"));
        assert!(reason("postgres://u:pw@host:notaport/db").contains("port"));
    }

    #[test]
    fn postgres_forms() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgresql://u:p@localhost/db?sslmode=disable",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert!(matches!(parse(url), Ok(Target::Postgres { .. })), "{url}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40ss%2f").ok().as_deref(), Some("p@ss/"));
        assert_eq!(percent_decode("100%").ok().as_deref(), Some("100%"));
    }
}
