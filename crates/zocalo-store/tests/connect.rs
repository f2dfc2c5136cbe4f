//! Connecting, migrating, and the errors on the way there.

use std::time::{Duration, Instant};

use zocalo_store::{Backend, Store, StoreError};
use zocalo_testkit::{both_backends, db};

both_backends!(migrations_are_idempotent, |store, db| async move {
    let version = store.schema_version().await.unwrap();
    assert!(version >= 1);
    assert_eq!(version, store.known_schema_version());
    store.ping().await.unwrap();

    // Connecting again to the same database runs nothing new and works.
    let again = reopen(db).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), version);
    let third = reopen(db).await.unwrap();
    assert_eq!(third.schema_version().await.unwrap(), version);
    third.ping().await.unwrap();
    again.close().await;
    third.close().await;
});

both_backends!(newer_schema_is_refused, |store, db| async move {
    let known = store.known_schema_version();
    let future = 99_990_101_000_000_i64;
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
               execution_time) VALUES ($1, $2, $3, $4, $5)";
    zocalo_store::with_pool!(store.pool(), |p| sqlx::query(sql)
        .bind(future)
        .bind("from the future")
        .bind(true)
        .bind(vec![0u8; 48])
        .bind(0_i64)
        .execute(p)
        .await
        .map(drop))
    .unwrap();

    match reopen(db).await {
        Err(StoreError::NewerSchema { found, known: k }) => {
            assert_eq!(found, future);
            assert_eq!(k, known);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = reopen(db).await.unwrap_err().to_string();
    assert!(
        message.contains("newer than this zocalo") && message.contains("upgrade zocalo"),
        "{message}"
    );
});

both_backends!(backend_is_reported, |store, db| async move {
    let want = if db.sqlite_path().is_some() {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(store.backend(), want);
});

/// A second store on the same database as `db`.
async fn reopen(db: &db::TestDb) -> Result<Store, StoreError> {
    match (db.sqlite_path(), db.pg_schema()) {
        (Some(path), _) => Store::connect(&format!("sqlite://{}", path.display())).await,
        (None, Some(schema)) => Store::connect_postgres_schema(&db::pg_url(), schema).await,
        (None, None) => unreachable!("a TestDb is one or the other"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zocalo.db");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { Store::open_sqlite_file(&path).await })
        })
        .collect();
    for task in tasks {
        let store = task.await.unwrap().unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            store.known_schema_version()
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_fresh_postgres_schema() {
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(
                async move { Store::connect_postgres_schema(&db::pg_url(), &schema).await },
            )
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    drop_schema(&schema).await;
    for store in results {
        let store = store.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn password_is_not_in_debug_output() {
    // The local cluster trusts everyone, so a made-up password still connects.
    let url = db::pg_url().replacen("postgres@", "postgres:hunter2@", 1);
    assert!(
        url.contains("hunter2"),
        "ZOCALO_TEST_PG_URL has no `postgres@`: {url}"
    );
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let result = Store::connect_postgres_schema(&url, &schema).await;
    let shown = format!("{result:?}");
    if let Ok(store) = result {
        store.ping().await.unwrap();
        store.close().await;
    }
    drop_schema(&schema).await;
    assert!(!shown.contains("hunter2"), "{shown}");
}

async fn drop_schema(schema: &str) {
    use sqlx::{Connection, Executor};
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let result = async {
        let mut conn = sqlx::PgConnection::connect(&db::pg_url()).await?;
        conn.execute(sql.as_str()).await
    }
    .await;
    if let Err(e) = result {
        panic!("drop schema {schema}: {e}");
    }
}

#[tokio::test]
async fn malformed_urls_are_usage_errors_without_passwords() {
    for url in [
        "mysql://x",
        "mysql://root:hunter2@db/x",
        "postgres://",
        "postgres://:hunter2@",
        "postgresql://bob:hunter2@db.example:notaport/app",
        "postgres://bob:hunter2@[::1/app",
        "sqlite://",
        "sqlite:",
        "garbage",
        "hunter2",
        "",
        "://bob:hunter2@host",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(err.is_usage(), "{url:?}: {err:?}");
        assert!(matches!(err, StoreError::BadUrl { .. }), "{url:?}: {err:?}");
        let shown = format!("{err} {err:?}");
        if url != "hunter2" {
            assert!(!shown.contains("hunter2"), "{url:?} leaked: {shown}");
        }
    }
    let err = Store::connect("postgres://bob:hunter2@db.example:notaport/app")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bob:***@db.example"), "{err}");
}

#[tokio::test]
async fn bad_schema_names_are_usage_errors() {
    for schema in ["", "Bad", "a;drop", "1x"] {
        let err = Store::connect_postgres_schema(&db::pg_url(), schema)
            .await
            .unwrap_err();
        assert!(err.is_usage(), "{schema:?}: {err:?}");
    }
    let err = Store::connect_postgres_schema("sqlite:///tmp/x.db", "s")
        .await
        .unwrap_err();
    assert!(err.is_usage(), "{err:?}");
}

#[tokio::test]
async fn unreachable_postgres_names_host_and_port_quickly() {
    let started = Instant::now();
    let err = Store::connect("postgres://bob:hunter2@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    match &err {
        StoreError::Unreachable { host, port, .. } => {
            assert_eq!(host, "127.0.0.1");
            assert_eq!(*port, 1);
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(!err.is_usage());
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("cannot reach PostgreSQL at 127.0.0.1:1"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_private_and_in_wal_mode() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home").join("zocalo.db");
    let store = Store::open_sqlite_file(&path).await.unwrap();
    store
        .append_turn(
            &zocalo_core::ConversationId::new(),
            None,
            &[zocalo_core::Message::user("hi").into()],
        )
        .await
        .unwrap();

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "database file");
    assert_eq!(
        mode(path.parent().unwrap()),
        0o700,
        "data home created for it"
    );
    let wal = path.with_extension("db-wal");
    assert!(wal.exists(), "WAL file exists while open");
    assert_eq!(mode(&wal), 0o600, "WAL file");

    let zocalo_store::Pool::Sqlite(pool) = store.pool() else {
        panic!("not sqlite")
    };
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    // A bounded page cache (SQLite's own default is -2000, i.e. 2 MiB per connection).
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(cache, -256, "page cache in KiB");
    store.close().await;

    // The URL forms reach the same file.
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
    ] {
        let again = Store::connect(&url).await.unwrap();
        assert_eq!(
            again.list_conversations(10).await.unwrap().len(),
            1,
            "{url}"
        );
        again.close().await;
    }
}

#[tokio::test]
async fn sqlite_memory_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let id = zocalo_core::ConversationId::new();
    store
        .append_turn(&id, None, &[zocalo_core::Message::user("hi").into()])
        .await
        .unwrap();
    assert_eq!(store.messages(&id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unwritable_sqlite_path_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    // A path under a regular file cannot be created.
    let err = Store::open_sqlite_file(&file.join("zocalo.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
}
