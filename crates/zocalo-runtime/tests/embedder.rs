//! `[memory] embedder = "PROVIDER:MODEL"`: memory's vectors from a local server speaking the
//! OpenAI embeddings wire format (hashed bag-of-words vectors, so results are checkable), on
//! SQLite and PostgreSQL: add and search through it, switching embedders (search refused,
//! nothing re-embedded behind the user's back, `reindex` with progress, resumable), and what
//! `doctor` says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use zocalo_memory::{MemoryError, NewMemory, Retrieval};
use zocalo_runtime::{Options, Runtime};
use zocalo_testkit::db::TestDb;
use zocalo_testkit::fake::{embeddings_reply, FakeServer, Reply};

const DIM: usize = 64;

/// A runtime on `db` whose config names `embedder`, with `[providers.emb]` (keyless) at the
/// fake server.
async fn runtime(db: &TestDb, server: &FakeServer, embedder: &str) -> (Runtime, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[providers.emb]\nbase_url = \"{}/v1\"\n\n[memory]\nembedder = \"{embedder}\"\n",
            server.url()
        ),
    )
    .unwrap();
    let rt = Runtime::open(Options {
        home: Some(home.path().to_path_buf()),
        database_url: Some(db.url()),
    })
    .await
    .unwrap();
    (rt, home)
}

async fn backends() -> Vec<(&'static str, TestDb)> {
    vec![
        ("sqlite", zocalo_testkit::db::sqlite().await),
        ("postgres", zocalo_testkit::db::postgres().await),
    ]
}

fn embedding_requests(server: &FakeServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn memories_are_embedded_and_searched_through_the_provider() {
    for (backend, db) in backends().await {
        let server = FakeServer::start().await;
        server.respond_with(|r| embeddings_reply(r, DIM));
        let (rt, _home) = runtime(&db, &server, "emb:bow-1").await;
        let memory = rt.memory().await.unwrap();
        assert_eq!(memory.embedder_id(), Some("emb:bow-1"));
        let texts = [
            "the red bike is in the garage",
            "tax return is due in April",
            "the cat sleeps on the sofa",
        ];
        for t in texts {
            memory.memorize(NewMemory::new("user:me", t)).await.unwrap();
        }
        // Dense alone: the bag-of-words vector of the query is closest to the bike's.
        let hits = memory
            .recall_with("garage bike", &["user:me"], 3, Retrieval::Dense)
            .await
            .unwrap();
        assert_eq!(hits[0].text, texts[0], "{backend}: {hits:?}");
        let hits = memory.recall("sofa cat", &["user:me"], 1).await.unwrap();
        assert_eq!(hits[0].text, texts[2], "{backend}");
        let stats = memory.stats().await.unwrap();
        assert_eq!(
            (stats.vectors, stats.chunks, stats.dim),
            (3, 3, Some(DIM)),
            "{backend}: {stats:?}"
        );
        assert!(stats.other_embedders.is_empty());
        let reqs = server.requests();
        assert!(reqs
            .iter()
            .all(|r| r.path == "/v1/embeddings" && r.body["model"] == "bow-1"));
        // 3 memories and 2 queries, one request each.
        assert_eq!(reqs.len(), 5, "{backend}");
        let (ok, detail, fix) = zocalo_runtime::memory::embedder_check(&rt).await;
        assert!(ok && fix.is_none(), "{backend}: {detail}");
        assert!(
            detail.contains("emb:bow-1") && detail.contains("3 of 3"),
            "{detail}"
        );
        rt.close().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_fails_the_write_with_the_fix() {
    for (backend, db) in backends().await {
        let server = FakeServer::start().await;
        server.respond_with(|_| {
            Reply::json(
                401,
                json!({"error": {"message": "Incorrect API key provided"}}),
            )
        });
        let (rt, _home) = runtime(&db, &server, "emb:bow-1").await;
        let memory = rt.memory().await.unwrap();
        let e = memory
            .memorize(NewMemory::new("user:me", "hello"))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, MemoryError::Embed(_)), "{backend}: {msg}");
        assert!(
            msg.contains("emb:bow-1") && msg.contains("HTTP 401"),
            "{msg}"
        );
        // Nothing was stored.
        assert_eq!(memory.stats().await.unwrap().memories, 0, "{backend}");
        rt.close().await;
        db.cleanup().await;
    }
}

/// Memories embedded by one embedder, then the setting changes: the new process embeds
/// nothing by itself, refuses meaning search naming both embedders and the fix (keywords
/// still work), `reindex` re-embeds in batches with progress, and the old process, through the
/// change log, refuses in turn.
#[tokio::test(flavor = "multi_thread")]
async fn switching_embedders_refuses_search_until_reindex() {
    for (backend, db) in backends().await {
        let server = FakeServer::start().await;
        server.respond_with(|r| embeddings_reply(r, DIM));
        let (old_rt, _h1) = runtime(&db, &server, "emb:bow-1").await;
        let old = old_rt.memory().await.unwrap();
        let n = zocalo_memory::REINDEX_BATCH + 44;
        let items: Vec<NewMemory> = (0..n)
            .map(|i| NewMemory::new("user:me", format!("note number {i} about topic{i}")))
            .collect();
        old.memorize_many(items, &|_| {}).await.unwrap();
        old.memorize(NewMemory::new("user:me", "the red bike is in the garage"))
            .await
            .unwrap();
        let n = n + 1;

        let (new_rt, _h2) = runtime(&db, &server, "emb:bow-2").await;
        let new = new_rt.memory().await.unwrap();
        let before = embedding_requests(&server);
        new.ensure_loaded().await.unwrap();
        assert_eq!(
            embedding_requests(&server),
            before,
            "{backend}: loading re-embedded behind the user's back"
        );
        let e = new.recall("bike", &["user:me"], 3).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("emb:bow-1")
                && msg.contains("emb:bow-2")
                && msg.contains("zocalo memory reindex"),
            "{backend}: {msg}"
        );
        assert!(msg.contains(&format!("{n} by emb:bow-1")), "{msg}");
        assert_eq!(
            embedding_requests(&server),
            before,
            "the query was not embedded either"
        );
        // Keywords compare no vectors: allowed.
        let hits = new
            .recall_with("bike", &["user:me"], 3, Retrieval::Keyword)
            .await
            .unwrap();
        assert_eq!(hits[0].text, "the red bike is in the garage");
        // The ask loop's recall falls back to keywords instead of answering without memory.
        let mut ask = zocalo_runtime::memory::ask_memory_over(&new_rt.config, new.clone());
        ask.user_scope = "user:me".into();
        let block = ask.context_for("c1", "bike", 2000).await.unwrap().unwrap();
        assert!(block.contains("the red bike is in the garage"), "{block}");
        assert_eq!(
            embedding_requests(&server),
            before,
            "keywords only: no query vector"
        );
        let (ok, detail, fix) = zocalo_runtime::memory::embedder_check(&new_rt).await;
        assert!(!ok, "{detail}");
        assert!(detail.contains(&format!("{n} by emb:bow-1")), "{detail}");
        assert_eq!(fix.as_deref(), Some("zocalo memory reindex"));

        let seen: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
        let s2 = seen.clone();
        let (report, stats) =
            zocalo_runtime::memory::reindex(&new_rt, &move |d, t| s2.lock().unwrap().push((d, t)))
                .await
                .unwrap();
        assert_eq!(report.embedder, "emb:bow-2");
        assert_eq!(report.embedded, n, "{backend}: {report:?}");
        assert_eq!(report.memories, n);
        assert_eq!(report.missing, 0);
        assert_eq!(report.replaced.get("emb:bow-1"), Some(&n));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(0, n), (zocalo_memory::REINDEX_BATCH, n), (n, n)],
            "{backend}: progress per batch"
        );
        assert_eq!((stats.vectors, stats.chunks), (n as u64, n as u64));
        assert!(stats.other_embedders.is_empty(), "{stats:?}");
        let hits = new
            .recall_with("garage bike", &["user:me"], 1, Retrieval::Dense)
            .await
            .unwrap();
        assert_eq!(hits[0].text, "the red bike is in the garage", "{backend}");
        assert!(zocalo_runtime::memory::embedder_check(&new_rt).await.0);
        // Nothing left: a second run does nothing.
        let (again, _) = zocalo_runtime::memory::reindex(&new_rt, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(again.embedded, 0);

        // The old process learns of the new vectors from the change log and refuses too.
        old.sync().await.unwrap();
        let e = old.recall("bike", &["user:me"], 3).await.unwrap_err();
        assert!(
            e.to_string().contains(&format!("{n} by emb:bow-2")),
            "{backend}: {e}"
        );
        old_rt.close().await;
        new_rt.close().await;
        db.cleanup().await;
    }
}

/// An interrupted reindex keeps what its committed batches did, and a rerun does the rest.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_reindex_continues_where_it_stopped() {
    for (backend, db) in backends().await {
        let server = Arc::new(FakeServer::start().await);
        server.respond_with(|r| embeddings_reply(r, DIM));
        let (old_rt, _h1) = runtime(&db, &server, "emb:bow-1").await;
        let n = zocalo_memory::REINDEX_BATCH + 10;
        let items: Vec<NewMemory> = (0..n)
            .map(|i| NewMemory::new("user:me", format!("note {i}")))
            .collect();
        old_rt
            .memory()
            .await
            .unwrap()
            .memorize_many(items, &|_| {})
            .await
            .unwrap();
        old_rt.close().await;

        // The first batch's requests succeed, then the key is refused.
        let answered = Arc::new(AtomicUsize::new(0));
        let a2 = answered.clone();
        let per_batch = zocalo_memory::REINDEX_BATCH.div_ceil(64);
        server.respond_with(move |r| {
            if a2.fetch_add(1, Ordering::SeqCst) < per_batch {
                embeddings_reply(r, DIM)
            } else {
                Reply::json(401, json!({"error": {"message": "key revoked"}}))
            }
        });
        let (new_rt, _h2) = runtime(&db, &server, "emb:bow-2").await;
        let e = zocalo_runtime::memory::reindex(&new_rt, &|_, _| {})
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("key revoked"), "{backend}: {e:#}");
        let stats = new_rt.memory().await.unwrap().stats().await.unwrap();
        assert_eq!(
            stats.vectors,
            zocalo_memory::REINDEX_BATCH as u64,
            "{backend}: {stats:?}"
        );
        assert_eq!(stats.other_embedders.get("emb:bow-1"), Some(&10));
        new_rt.close().await;

        server.respond_with(|r| embeddings_reply(r, DIM));
        let (rerun_rt, _h3) = runtime(&db, &server, "emb:bow-2").await;
        let (report, stats) = zocalo_runtime::memory::reindex(&rerun_rt, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(report.embedded, 10, "{backend}: {report:?}");
        assert_eq!(report.replaced.get("emb:bow-1"), Some(&10));
        assert_eq!(stats.vectors, n as u64);
        rerun_rt
            .memory()
            .await
            .unwrap()
            .recall("note 3", &["user:me"], 1)
            .await
            .unwrap();
        rerun_rt.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn embedder_settings_the_registry_cannot_serve_are_usage_errors() {
    for (embedder, want) in [
        ("nosuch:m", "unknown provider \"nosuch\""),
        (
            "anthropic:claude-embed",
            "does not offer the OpenAI-compatible /embeddings",
        ),
    ] {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            format!("[memory]\nembedder = \"{embedder}\"\n"),
        )
        .unwrap();
        let e = Runtime::open(Options {
            home: Some(home.path().to_path_buf()),
            database_url: Some(format!("sqlite://{}", home.path().join("z.db").display())),
        })
        .await
        .unwrap_err();
        assert!(zocalo_runtime::errors::is_usage(&e), "{embedder}: {e:#}");
        assert!(format!("{e:#}").contains(want), "{embedder}: {e:#}");
    }
}
