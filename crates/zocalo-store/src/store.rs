//! [`Store`]: one pool on one backend, connected and migrated.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::error::{redact_url, scrub, StoreError};
use crate::url::{self, Target};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long to wait for PostgreSQL to accept a connection (and for a pooled one later).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SQLite writer waits for another writer before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Each SQLite connection's page cache, in KiB (SQLite's default is 2 MiB per connection).
/// The pages are in the OS page cache anyway (WAL reads are `pread`s of a local file), and a
/// long-running server or daemon filled four 2 MiB caches slowly as its database grew: the
/// 10-minute serve soak's RSS grew +30.5% with the default and +13.3% with 256 KiB, the
/// daemon's +11.1% and +7.7%, at the same throughput (docs/BENCHMARKS.md, "Soak and load").
const SQLITE_CACHE_KIB: u32 = 256;
/// Prepared statements kept per SQLite connection (sqlx's default is 100). Each costs SQLite
/// memory, and over a long run every connection ends up holding every statement it ever
/// ran; preparing one again costs microseconds. Measured with the page cache above: soak
/// throughput unchanged (591 vs 592 req/s), RSS growth +15.9% vs +30.5% alone.
const SQLITE_STATEMENT_CACHE: usize = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The pool behind a [`Store`]. Public so that other crates can run their own SQL through
/// [`with_pool!`](crate::with_pool) on whichever backend is configured.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression on either backend's pool: `with_pool!(store.pool(), |p| ...)`.
/// The body is compiled once per backend, so it may bind and decode backend-specific types as
/// long as the SQL text works on both.
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}

/// A connected, migrated database. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Checks that `url` is a database URL we speak, without connecting: a malformed one is
    /// [`StoreError::BadUrl`] (a usage error), reported before anything else is looked at.
    pub fn check_url(url: &str) -> Result<Backend, StoreError> {
        Ok(match url::parse(url)? {
            Target::SqliteFile(_) | Target::SqliteMemory => Backend::Sqlite,
            Target::Postgres { .. } => Backend::Postgres,
        })
    }

    /// Parses `url` (`sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `postgres://…`,
    /// `postgresql://…`), connects and runs migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        match url::parse(url)? {
            Target::SqliteFile(path) => Self::open_sqlite_file(&path).await,
            Target::SqliteMemory => Self::open_sqlite_memory().await,
            Target::Postgres { options, secrets } => {
                Self::open_postgres(*options, None, &secrets).await
            }
        }
    }

    /// The embedded default: a SQLite file (created 0600 in a 0700 directory if missing), WAL
    /// journal, foreign keys on, a 5 s busy timeout.
    pub async fn open_sqlite_file(path: &Path) -> Result<Store, StoreError> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
            .statement_cache_capacity(SQLITE_STATEMENT_CACHE);
        // Processes opening a fresh file at once can get SQLITE_BUSY where SQLite does not call
        // the busy handler (switching the new file to WAL, recovering its WAL index): a
        // daemon and a CLI started together on a new home must both open it, so retry those
        // for up to the busy timeout.
        let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        loop {
            let opened = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .connect_with(options.clone())
                    .await?;
                Self::finish_sqlite(pool).await
            }
            .await;
            match opened {
                Err(StoreError::Db(sqlx::Error::Database(e)))
                    if e.code()
                        .and_then(|c| c.parse::<u32>().ok())
                        .is_some_and(|c| c & 0xff == 5)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// A private in-memory database (one connection, gone when the store is closed).
    pub async fn open_sqlite_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // Every connection to :memory: is its own database, so keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::finish_sqlite(pool).await
    }

    /// PostgreSQL restricted to `schema` (created if missing): every connection's
    /// `search_path` is that schema alone, so tables and the migrations ledger live there.
    /// `schema` must be lowercase ASCII letters, digits and `_`, not starting with a digit.
    pub async fn connect_postgres_schema(url: &str, schema: &str) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redact_url(url),
            reason,
        };
        if !valid_schema_name(schema) {
            return Err(bad(format!(
                "invalid schema name {schema:?}: use lowercase letters, digits and _ (at most 63)"
            )));
        }
        match url::parse(url)? {
            Target::Postgres { options, secrets } => {
                Self::open_postgres(*options, Some(schema), &secrets).await
            }
            _ => Err(bad("a schema needs a postgres:// URL".into())),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool, for crates that keep their own tables in this database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether `other` is this store (a clone of it: the same pool), so writes for both can
    /// share one transaction. Two stores opened on one database separately are not.
    pub fn same_pool(&self, other: &Store) -> bool {
        match (&self.pool, &other.pool) {
            (Pool::Sqlite(a), Pool::Sqlite(b)) => {
                std::sync::Arc::ptr_eq(&a.connect_options(), &b.connect_options())
            }
            (Pool::Postgres(a), Pool::Postgres(b)) => {
                std::sync::Arc::ptr_eq(&a.connect_options(), &b.connect_options())
            }
            _ => false,
        }
    }

    /// The highest migration applied (0 for none).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let version: i64 = with_pool!(&self.pool, |p| sqlx::query_scalar(sql).fetch_one(p).await)?;
        Ok(version)
    }

    /// The highest migration this build knows for its backend.
    pub fn known_schema_version(&self) -> i64 {
        known_version(match self.backend() {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        })
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Closes every connection; later calls fail. Waits for checked-out connections.
    pub async fn close(&self) {
        with_pool!(&self.pool, |p| p.close().await)
    }

    async fn finish_sqlite(pool: SqlitePool) -> Result<Store, StoreError> {
        let result = async {
            let mut conn = pool.acquire().await?;
            // SQLite has no migration lock: take the write lock up front so that two processes
            // opening a fresh file at once do not both try to create the tables. The
            // migrator's own transactions become savepoints inside this one.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            migrate(&mut *tx, &SQLITE_MIGRATOR).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(Store {
                pool: Pool::Sqlite(pool),
            }),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    async fn open_postgres(
        options: PgConnectOptions,
        schema: Option<&str>,
        secrets: &[String],
    ) -> Result<Store, StoreError> {
        let host = options.get_host().to_owned();
        let port = options.get_port();
        let options = match schema {
            Some(schema) => options.options([("search_path", schema)]),
            None => options,
        };
        let unreachable = |message: String| StoreError::Unreachable {
            host: host.clone(),
            port,
            message: scrub(&message, secrets),
        };

        // One direct connection first: it fails fast with the real cause (a pool would retry
        // a refused connection until its timeout and then only say "timed out"), and it runs
        // the migrations, so the session-level migration lock dies with it if anything fails.
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(sqlx::Error::Io(e))) => return Err(unreachable(e.to_string())),
            Ok(Err(sqlx::Error::Tls(e))) => return Err(unreachable(format!("TLS: {e}"))),
            Ok(Err(e)) => return Err(StoreError::Db(e)),
            Ok(Ok(conn)) => conn,
        };
        if let Some(schema) = schema {
            // Validated by the caller: only [a-z0-9_], so quoting is enough.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            match conn.execute(create.as_str()).await {
                Ok(_) => {}
                // Two connections creating the same schema at once: IF NOT EXISTS is not atomic,
                // and the loser sees a duplicate. The schema exists, which is all we wanted.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
                Err(e) => return Err(e.into()),
            }
            conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                .await?;
        }
        migrate(&mut conn, &POSTGRES_MIGRATOR).await?;
        conn.close().await?;

        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Store {
            pool: Pool::Postgres(pool),
        })
    }
}

/// Applies the migrations `migrator` knows and the database lacks; refuses (before changing
/// anything but the ledger's `CREATE TABLE IF NOT EXISTS`) a database that has applied
/// migrations this build does not know.
async fn migrate<C: Migrate>(conn: &mut C, migrator: &Migrator) -> Result<(), StoreError> {
    // Under the migration lock (Postgres: an advisory lock on the database), because
    // concurrent `CREATE TABLE IF NOT EXISTS` of the ledger can fail on Postgres.
    conn.lock().await?;
    let applied = async {
        conn.ensure_migrations_table().await?;
        conn.list_applied_migrations().await
    }
    .await;
    conn.unlock().await?;
    let known = known_version(migrator);
    if let Some(found) = applied?
        .iter()
        .map(|m| m.version)
        .filter(|v| !migrator.version_exists(*v))
        .max()
    {
        return Err(StoreError::NewerSchema {
            found: found.max(known),
            known,
        });
    }
    migrator.run_direct(conn).await?;
    Ok(())
}

fn known_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Creates `path` empty with mode 0600 (and its directory with 0700) if it does not exist, so
/// SQLite never creates it with the umask's wider default. SQLite gives the `-wal` and `-shm`
/// files the database file's mode.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(io)?;
        }
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    open.open(path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(valid_schema_name("t_0193abc"));
        assert!(valid_schema_name("zocalo"));
        for bad in ["", "1abc", "Abc", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn migrators_know_the_same_versions() {
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&SQLITE_MIGRATOR), versions(&POSTGRES_MIGRATOR));
        assert!(known_version(&SQLITE_MIGRATOR) >= 1);
    }

    #[tokio::test]
    async fn memory_store_migrates() -> Result<(), StoreError> {
        let store = Store::open_sqlite_memory().await?;
        assert_eq!(store.schema_version().await?, store.known_schema_version());
        store.ping().await?;
        store.close().await;
        Ok(())
    }
}
