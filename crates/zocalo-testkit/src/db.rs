//! A fresh database per test: a temp SQLite file, or a fresh schema in the test Postgres
//! database, so store tests run in parallel without seeing each other.
//!
//! ```ignore
//! zocalo_testkit::both_backends!(appends_in_order, |store| async move {
//!     store.append_turn(&id, None, &msgs).await.unwrap();
//! });
//! // -> tests `appends_in_order::sqlite` and `appends_in_order::postgres`
//! ```

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use zocalo_store::Store;

/// Where Postgres tests connect: `ZOCALO_TEST_PG_URL`, else the local cluster's `test` db.
pub fn pg_url() -> String {
    std::env::var("ZOCALO_TEST_PG_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store on a database of its own. Dropping it removes the database (the temp file, or the
/// Postgres schema, best effort); [`TestDb::cleanup`] does the same and waits for it.
pub struct TestDb {
    pub store: Store,
    keep: Keep,
}

enum Keep {
    Sqlite(tempfile::TempDir),
    Postgres { schema: String, dropped: bool },
}

/// A migrated store on a new SQLite file in a new temp directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("zocalo.db");
    let store = Store::open_sqlite_file(&path)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    TestDb {
        store,
        keep: Keep::Sqlite(dir),
    }
}

/// A migrated store in a new schema `t_<uuid>` of the database at [`pg_url`].
pub async fn postgres() -> TestDb {
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let store = Store::connect_postgres_schema(&pg_url(), &schema)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n(Postgres tests need the local cluster: `pg_ctlcluster 15 main start`, \
                 or set ZOCALO_TEST_PG_URL)"
            )
        });
    TestDb {
        store,
        keep: Keep::Postgres {
            schema,
            dropped: false,
        },
    }
}

impl TestDb {
    /// The path of the SQLite file (None on Postgres).
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match &self.keep {
            Keep::Sqlite(dir) => Some(dir.path().join("zocalo.db")),
            Keep::Postgres { .. } => None,
        }
    }

    /// The Postgres schema (None on SQLite).
    pub fn pg_schema(&self) -> Option<&str> {
        match &self.keep {
            Keep::Sqlite(_) => None,
            Keep::Postgres { schema, .. } => Some(schema),
        }
    }

    /// A database URL that reaches this same database from another process (for example
    /// `zocalo --database-url`): the SQLite file, or the Postgres URL with `search_path`
    /// pinned to this test's schema.
    pub fn url(&self) -> String {
        match &self.keep {
            Keep::Sqlite(dir) => format!("sqlite://{}", dir.path().join("zocalo.db").display()),
            Keep::Postgres { schema, .. } => {
                let base = pg_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    /// Closes the store and removes the database, waiting for it.
    pub async fn cleanup(mut self) {
        self.store.close().await;
        if let Keep::Postgres { schema, dropped } = &mut self.keep {
            if let Err(e) = drop_schema(schema).await {
                eprintln!("testkit: cannot drop schema {schema}: {e}");
            }
            *dropped = true;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Reached without cleanup() when a test panicked. We may be inside a runtime that
        // cannot block, so drop the schema from a thread with its own runtime; the lock
        // timeout keeps a connection of ours still holding locks from hanging the test.
        if let Keep::Postgres {
            schema,
            dropped: false,
        } = &self.keep
        {
            let schema = schema.clone();
            let handle = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(drop_schema(&schema));
                }
            });
            let _ = handle.join();
        }
    }
}

async fn drop_schema(schema: &str) -> Result<(), sqlx::Error> {
    let work = async {
        let mut conn = PgConnection::connect(&pg_url()).await?;
        conn.execute("SET lock_timeout = '2s'").await?;
        conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
            .await?;
        conn.close().await
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
}

/// Defines a module `$name` with two tests, `sqlite` and `postgres`, each running `$body` on a
/// fresh [`TestDb`]'s store. The body gets the [`Store`] (and, in the second form, the
/// [`TestDb`] too, for its path or schema).
///
/// ```ignore
/// both_backends!(name, |store| async move { ... });
/// both_backends!(name, |store, db| async move { ... });
/// ```
#[macro_export]
macro_rules! both_backends {
    ($name:ident, |$store:ident| $body:expr) => {
        $crate::both_backends!($name, |$store, _db| $body);
    };
    ($name:ident, |$store:ident, $db:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::db::sqlite().await;
                {
                    let $store = db.store.clone();
                    let $db = &db;
                    $body.await;
                }
                db.cleanup().await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::db::postgres().await;
                {
                    let $store = db.store.clone();
                    let $db = &db;
                    $body.await;
                }
                db.cleanup().await;
            }
        }
    };
}
