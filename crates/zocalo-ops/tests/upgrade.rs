//! Upgrades (issue 25 item 2): databases of an earlier schema, committed under
//! tests/fixtures/upgrade/ and made by `write_fixtures` below from the seed in common/ (code,
//! never hand edits), are opened by the current code: migrations run forward and every record
//! is still there. A database of a newer schema is refused, naming both versions.
//!
//! When a migration is added, keep the old fixtures and add today's:
//! `cargo test -p zocalo-ops --test upgrade -- --ignored write_fixtures` writes
//! `sqlite-vNNNN.db` and `postgres-vNNNN.sql` for the current schema version NNNN.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sqlx::{Connection, Executor, PgConnection};
use zocalo_ops::{backup, export, restore, OpsError};
use zocalo_store::{Store, StoreError};
use zocalo_testkit::both_backends;
use zocalo_testkit::db::pg_url;

/// The schema the Postgres fixture is dumped from; a test loads it under a name of its own.
const FIXTURE_SCHEMA: &str = "zocalo_upgrade_fixture";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// The fixtures of one backend, by file suffix, oldest first.
fn fixtures(suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no *{suffix} fixture in {}",
        fixtures_dir().display()
    );
    found
}

#[tokio::test]
#[ignore = "writes the fixtures of today's schema; run by hand when a migration is added"]
async fn write_fixtures() {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).unwrap();

    // SQLite: the seeded file, compacted into one self-contained file (no WAL beside it).
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite_file(&tmp.path().join("zocalo.db"))
        .await
        .unwrap();
    seed(&store).await;
    let version = store.schema_version().await.unwrap();
    let out = dir.join(format!("sqlite-v{version:04}.db"));
    let _ = std::fs::remove_file(&out);
    let zocalo_store::Pool::Sqlite(pool) = store.pool() else {
        unreachable!()
    };
    sqlx::query("VACUUM INTO $1")
        .bind(out.to_str().unwrap())
        .execute(pool)
        .await
        .unwrap();
    store.close().await;

    // Postgres: a schema of its own, seeded, then pg_dump's plain SQL. psql's meta-commands
    // (pg_dump 15.14+ brackets the dump with \restrict) are dropped so the dump runs over
    // any connection.
    let mut admin = PgConnection::connect(&pg_url()).await.unwrap();
    admin
        .execute(format!("DROP SCHEMA IF EXISTS {FIXTURE_SCHEMA} CASCADE").as_str())
        .await
        .unwrap();
    let store = Store::connect_postgres_schema(&pg_url(), FIXTURE_SCHEMA)
        .await
        .unwrap();
    seed(&store).await;
    assert_eq!(store.schema_version().await.unwrap(), version);
    store.close().await;
    let dump = std::process::Command::new("pg_dump")
        .args([
            "--schema",
            FIXTURE_SCHEMA,
            "--no-owner",
            "--no-privileges",
            "--column-inserts",
            &pg_url(),
        ])
        .output()
        .expect("pg_dump (PostgreSQL's client tools) must be installed");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text: String = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join(format!("postgres-v{version:04}.sql")), text).unwrap();
    admin
        .execute(format!("DROP SCHEMA {FIXTURE_SCHEMA} CASCADE").as_str())
        .await
        .unwrap();
}

/// The current code opens each committed SQLite fixture, migrates it forward and finds
/// everything the seed wrote.
#[tokio::test]
async fn sqlite_fixtures_migrate_forward_with_their_data() {
    for fixture in fixtures(".db") {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("zocalo.db");
        std::fs::copy(&fixture, &path).unwrap();
        let store = Store::open_sqlite_file(&path)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        check_upgraded(&store).await;
        store.close().await;
    }
}

#[tokio::test]
async fn postgres_fixtures_migrate_forward_with_their_data() {
    for fixture in fixtures(".sql") {
        let schema = format!("t_{}", uuid_like());
        let dump = std::fs::read_to_string(&fixture).unwrap();
        assert!(dump.contains(FIXTURE_SCHEMA), "{}", fixture.display());
        let mut conn = PgConnection::connect(&pg_url()).await.unwrap();
        sqlx::raw_sql(&dump.replace(FIXTURE_SCHEMA, &schema))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", fixture.display()));
        let opened = Store::connect_postgres_schema(&pg_url(), &schema).await;
        let result = match opened {
            Ok(store) => {
                let outcome = tokio::spawn({
                    let store = store.clone();
                    async move { check_upgraded(&store).await }
                })
                .await;
                store.close().await;
                outcome.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("{}: {e}", fixture.display())),
        };
        conn.execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .unwrap();
        result.unwrap();
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{}", std::process::id())
}

async fn check_upgraded(store: &Store) {
    assert_eq!(
        store.schema_version().await.unwrap(),
        store.known_schema_version()
    );
    check_seeded(&export(store).await.unwrap());
    memory_is_searchable(store).await;
    // The store's own reads work on the old rows.
    let conv = store
        .conversation_of_key("telegram:42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.messages(&conv).await.unwrap().len(), 2);
}

/// Marks the database as migrated by a zocalo that knows one more migration than this one.
async fn from_the_future(store: &Store) -> i64 {
    let newer = store.known_schema_version() + 1;
    zocalo_store::with_pool!(store.pool(), |p| sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer zocalo', TRUE, $2, 0)"
    )
    .bind(newer)
    .bind(vec![0u8; 48])
    .execute(p)
    .await
    .map(drop))
    .unwrap();
    newer
}

both_backends!(
    a_newer_schema_is_refused_naming_both_versions,
    |store, db| async move {
        let known = store.known_schema_version();
        let tmp = tempfile::tempdir().unwrap();
        let home = zocalo_core::paths::DataHome::at(tmp.path().join("home"));
        seed(&store).await;
        let newer = from_the_future(&store).await;

        // Opening it.
        let err = Store::connect(&db.url()).await.unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("version {newer}")), "{msg}");
        assert!(msg.contains(&format!("up to {known}")), "{msg}");

        // Its backup (the backup itself reads it fine) is refused by restore, also naming both.
        let archive = tmp.path().join("newer.zip");
        let report = backup(&home, &store, &archive).await.unwrap();
        assert_eq!(report.manifest.schema_version, newer);
        let err = restore(&archive, &home, None, false).await.unwrap_err();
        assert!(matches!(err, OpsError::NewerSchema { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&newer.to_string()) && msg.contains(&known.to_string()),
            "{msg}"
        );
        assert!(
            !home.root().exists(),
            "the refused restore created the home"
        );
    }
);
