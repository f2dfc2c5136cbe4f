//! Several handles on one database, each with its own pool, as separate processes (or nodes)
//! would have: what one adds, changes or forgets, the others find within 2 s, from the change
//! log and without a full reload; concurrent writers end with identical indexes; a handle
//! whose place in the log was pruned rebuilds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use zocalo_memory::{Memory, MemoryConfig, NewMemory, Retrieval};
use zocalo_store::Store;
use zocalo_testkit::both_backends;
use zocalo_testkit::db::TestDb;

/// How soon another process's write must be visible.
const WITHIN: Duration = Duration::from_secs(2);

/// A store of its own on the test's database (a second pool, as another process has).
async fn other_store(db: &TestDb) -> Store {
    Store::connect(&db.url()).await.unwrap()
}

async fn open(store: &Store) -> Arc<Memory> {
    Arc::new(
        Memory::open(
            store.clone(),
            Some(common::minilm().await),
            MemoryConfig::default(),
        )
        .await
        .unwrap(),
    )
}

/// Polls `$cond` (an expression that may `.await`) until it holds; fails after [`WITHIN`].
/// Evaluates to the time it took.
macro_rules! within_2s {
    ($what:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break start.elapsed();
            }
            assert!(start.elapsed() < WITHIN, "{}: not within 2 s", $what);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }};
}

async fn keyword_ids(m: &Memory, query: &str) -> Vec<String> {
    m.recall_with(query, &["user:me"], 10, Retrieval::Keyword)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

both_backends!(
    a_memory_added_elsewhere_is_recalled_within_2s,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let r = a
            .memorize(NewMemory::new(
                "user:me",
                "The spare key is under the blue flowerpot",
            ))
            .await
            .unwrap();
        // recall alone catches up: no sync call, no new handle.
        let took = within_2s!(
            "B recalls A's memory",
            keyword_ids(&b, "flowerpot").await.contains(&r.id)
        );
        eprintln!("seen by the other handle after {took:?}");
        // Its vectors came along from the database: the dense half finds it by meaning.
        let dense = b
            .recall_with(
                "where is the spare key hidden",
                &["user:me"],
                1,
                Retrieval::Dense,
            )
            .await
            .unwrap();
        assert_eq!(dense[0].id, r.id);
        assert_eq!(dense[0].text, "The spare key is under the blue flowerpot");
        assert_eq!(b.indexed(), a.indexed());
        // Nothing new since: a sync is a no-op.
        let report = b.sync().await.unwrap();
        assert_eq!(
            (report.changes, report.upserted, report.reloaded),
            (0, 0, false)
        );
    }
);

both_backends!(
    an_update_elsewhere_replaces_the_old_text,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let r = a
            .memorize(NewMemory::new("user:me", "My favourite colour is green"))
            .await
            .unwrap();
        within_2s!(
            "B sees the memory",
            keyword_ids(&b, "green").await == [r.id.clone()]
        );
        a.update(&r.id, Some("My favourite colour is purple".into()), None)
            .await
            .unwrap();
        within_2s!(
            "B sees the new text",
            keyword_ids(&b, "purple").await == [r.id.clone()]
        );
        assert!(keyword_ids(&b, "green").await.is_empty(), "stale text kept");
        let hits = b.recall("favourite colour", &["user:me"], 5).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].text, "My favourite colour is purple");
        assert_eq!(b.indexed(), (1, 1), "the old chunk is gone from the index");
    }
);

both_backends!(
    a_memory_forgotten_elsewhere_is_gone,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let keep = a
            .memorize(NewMemory::new("user:me", "Tomatoes need full sun"))
            .await
            .unwrap();
        let gone = a
            .memorize(NewMemory::new("user:me", "The wifi password is swordfish"))
            .await
            .unwrap();
        let report = b.sync().await.unwrap();
        assert_eq!((report.changes, report.upserted), (2, 2));
        assert!(keyword_ids(&b, "swordfish").await.contains(&gone.id));
        a.forget(&gone.id).await.unwrap();
        within_2s!(
            "B forgets it",
            keyword_ids(&b, "swordfish").await.is_empty()
        );
        for mode in [Retrieval::Hybrid, Retrieval::Dense] {
            let hits = b
                .recall_with("wifi password", &["user:me"], 5, mode)
                .await
                .unwrap();
            assert!(hits.iter().all(|h| h.id != gone.id), "{mode:?}: {hits:?}");
        }
        assert_eq!(b.indexed_ids(), vec![keep.id.clone()]);
        assert_eq!(b.indexed(), (1, 1));
    }
);

both_backends!(
    an_idle_handle_is_kept_current_by_spawn_sync,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = b.spawn_sync(Duration::from_millis(100), async move {
            let _ = stopped.await;
        });
        let r = a
            .memorize(NewMemory::new("user:me", "Dentist on 12 May at 9am"))
            .await
            .unwrap();
        // No recall, no sync: the background task brings the index forward.
        within_2s!("B's index has it", b.indexed_ids().contains(&r.id));
        a.forget(&r.id).await.unwrap();
        within_2s!("B's index lost it", b.indexed_ids().is_empty());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the sync task stops when told")
            .unwrap();
        // It also stops when the memory is dropped.
        let task = b.spawn_sync(Duration::from_millis(10), std::future::pending());
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the sync task stops with its memory")
            .unwrap();
    }
);

both_backends!(own_writes_are_not_read_back, |store, db| async move {
    let a = open(&store).await;
    let b = open(&other_store(db).await).await;
    for text in ["first note", "second note", "third note"] {
        a.memorize(NewMemory::new("user:me", text)).await.unwrap();
    }
    // A's own writes moved its place in the log: nothing to read.
    assert_eq!(a.sync().await.unwrap().changes, 0);
    // A, B, A: A reads two rows but only B's memory.
    let x = a
        .memorize(NewMemory::new("user:me", "x note"))
        .await
        .unwrap();
    let y = b
        .memorize(NewMemory::new("user:me", "y note"))
        .await
        .unwrap();
    let z = a
        .memorize(NewMemory::new("user:me", "z note"))
        .await
        .unwrap();
    let report = a.sync().await.unwrap();
    assert_eq!((report.changes, report.upserted), (2, 1), "{report:?}");
    // B reads all six rows, and every memory but its own.
    let report = b.sync().await.unwrap();
    assert_eq!((report.changes, report.upserted), (6, 5), "{report:?}");
    assert_eq!(a.indexed_ids(), b.indexed_ids());
    for id in [&x.id, &y.id, &z.id] {
        assert!(a.indexed_ids().contains(id));
    }
    assert_eq!(a.sync().await.unwrap().seq, b.sync().await.unwrap().seq);
});

both_backends!(
    concurrent_writers_end_with_identical_indexes,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        // Each writer adds, updates and forgets its own memories and updates the other's,
        // all at once; meanwhile both search (and so catch up) as they go.
        let work = |me: Arc<Memory>, other: Arc<Memory>, name: &'static str| async move {
            let mut mine = Vec::new();
            for i in 0..24 {
                let r = me
                    .memorize(NewMemory::new(
                        "user:me",
                        format!("{name} note {i} about gardens"),
                    ))
                    .await
                    .unwrap();
                mine.push(r.id);
                if i % 4 == 1 {
                    me.update(
                        &mine[i - 1],
                        Some(format!("{name} note {i} rewritten")),
                        None,
                    )
                    .await
                    .unwrap();
                }
                if i % 6 == 5 {
                    me.forget(&mine[i - 2]).await.unwrap();
                }
                if i % 3 == 0 {
                    me.recall("gardens", &["user:me"], 5).await.unwrap();
                    // Update one of the other writer's memories, if it has any left.
                    let theirs = other.indexed_ids();
                    if let Some(id) = theirs.first() {
                        match me
                            .update(id, Some(format!("{name} touched {i}")), None)
                            .await
                        {
                            Ok(_) | Err(zocalo_memory::MemoryError::UnknownMemory(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        };
        let ta = tokio::spawn(work(a.clone(), b.clone(), "alpha"));
        let tb = tokio::spawn(work(b.clone(), a.clone(), "beta"));
        ta.await.unwrap();
        tb.await.unwrap();
        a.sync().await.unwrap();
        b.sync().await.unwrap();
        // A third handle loaded from the rows is the truth both must equal.
        let truth = open(&store).await;
        assert_eq!(a.indexed_ids(), truth.indexed_ids());
        assert_eq!(b.indexed_ids(), truth.indexed_ids());
        assert_eq!(a.indexed(), truth.indexed());
        assert_eq!(b.indexed(), truth.indexed());
        let stats = truth.stats().await.unwrap();
        assert_eq!(truth.indexed().0 as u64, stats.memories);
        assert_eq!(stats.memories, 2 * (24 - 4), "{stats:?}");
        // And the same text for every memory: an update elsewhere left no stale copy.
        for id in truth.indexed_ids() {
            let text = truth.get(&id).await.unwrap().unwrap().text;
            for m in [&a, &b] {
                let hits = m
                    .recall_with(&text, &["user:me"], 50, Retrieval::Keyword)
                    .await
                    .unwrap();
                let hit = hits.iter().find(|h| h.id == id);
                assert_eq!(hit.map(|h| h.text.as_str()), Some(text.as_str()), "{id}");
            }
        }
    }
);

both_backends!(
    a_handle_whose_place_was_pruned_reloads,
    |store, db| async move {
        let a = open(&store).await;
        let behind = open(&other_store(db).await).await;
        let current = open(&other_store(db).await).await;
        let m1 = a
            .memorize(NewMemory::new("user:me", "one apple"))
            .await
            .unwrap();
        let m2 = a
            .memorize(NewMemory::new("user:me", "two pears"))
            .await
            .unwrap();
        assert!(!current.sync().await.unwrap().reloaded);
        // Everything written so far is old enough to go: all but the newest row is deleted.
        assert_eq!(a.prune_changes(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(a.prune_changes(Duration::ZERO).await.unwrap(), 0);
        let m3 = a
            .memorize(NewMemory::new("user:me", "three plums"))
            .await
            .unwrap();
        // `behind` never saw m1's row, which is gone: it rebuilds from the rows.
        let report = behind.sync().await.unwrap();
        assert!(report.reloaded, "{report:?}");
        // `current` had applied everything up to the kept row: it just reads on.
        let report = current.sync().await.unwrap();
        assert!(!report.reloaded, "{report:?}");
        assert_eq!((report.changes, report.upserted), (1, 1));
        for m in [&behind, &current] {
            let mut want = vec![m1.id.clone(), m2.id.clone(), m3.id.clone()];
            want.sort();
            assert_eq!(m.indexed_ids(), want);
        }
        // The log never empties under pruning, so a caught-up handle never reloads.
        a.prune_changes(Duration::ZERO).await.unwrap();
        let report = current.sync().await.unwrap();
        assert_eq!((report.changes, report.reloaded), (0, false));
    }
);

both_backends!(
    a_log_behind_the_handle_means_a_restored_database,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let r = a.memorize(NewMemory::new("user:me", "kept")).await.unwrap();
        b.sync().await.unwrap();
        // As if the database were restored from before the log began.
        zocalo_store::with_pool!(store.pool(), |p| {
            sqlx::query("DELETE FROM memory_changes")
                .execute(p)
                .await
                .unwrap();
        });
        let report = b.sync().await.unwrap();
        assert!(report.reloaded, "{report:?}");
        assert_eq!(b.indexed_ids(), vec![r.id]);
    }
);

both_backends!(
    change_rows_are_checked_against_the_rows,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        let r = a
            .memorize(NewMemory::new(
                "user:me",
                "The boiler is serviced in October",
            ))
            .await
            .unwrap();
        b.sync().await.unwrap();
        let sql = "INSERT INTO memory_changes (memory_id, op, at) VALUES ($1, $2, 0)";
        let exec = |q: &'static str, args: Vec<String>| {
            let store = store.clone();
            async move {
                zocalo_store::with_pool!(store.pool(), |p| {
                    let mut query = sqlx::query(q);
                    for a in &args {
                        query = query.bind(a);
                    }
                    query.execute(p).await.unwrap();
                })
            }
        };
        // Rows for memories that do not exist, or never did, are deletes of nothing.
        exec(sql, vec!["mem_nobody".into(), "upsert".into()]).await;
        exec(sql, vec!["".into(), "delete".into()]).await;
        // A 'delete' for a memory that is still there: the rows win, it stays.
        exec(sql, vec![r.id.clone(), "delete".into()]).await;
        let report = b.sync().await.unwrap();
        assert_eq!(report.changes, 3);
        assert_eq!(report.removed, 0);
        assert_eq!(b.indexed_ids(), vec![r.id.clone()]);
        // A row changed behind memory's back, then logged: the index takes the row's text.
        exec(
            "UPDATE memories SET text = 'The boiler is serviced in March', \
             updated_at = updated_at + 1 WHERE id = $1",
            vec![r.id.clone()],
        )
        .await;
        exec(
            "UPDATE memory_chunks SET text = 'The boiler is serviced in March', \
             model = NULL, vector = NULL WHERE memory_id = $1",
            vec![r.id.clone()],
        )
        .await;
        exec(sql, vec![r.id.clone(), "upsert".into()]).await;
        let report = b.sync().await.unwrap();
        assert_eq!(report.upserted, 1);
        assert_eq!(keyword_ids(&b, "march").await, vec![r.id.clone()]);
        assert!(keyword_ids(&b, "october").await.is_empty());
        // No stored vector: B computed one for its own index.
        let dense = b
            .recall_with("heating maintenance", &["user:me"], 1, Retrieval::Dense)
            .await
            .unwrap();
        assert_eq!(dense[0].id, r.id);
        // A row that cannot be read (metadata not an object) is left out, and sync goes on.
        exec(
            "UPDATE memories SET metadata = '[1]' WHERE id = $1",
            vec![r.id.clone()],
        )
        .await;
        exec(sql, vec![r.id.clone(), "upsert".into()]).await;
        let next = a.memorize(NewMemory::new("user:me", "next")).await.unwrap();
        let report = b.sync().await.unwrap();
        assert_eq!(report.removed, 1, "{report:?}");
        assert_eq!(b.indexed_ids(), vec![next.id]);
    }
);

both_backends!(
    a_keyword_only_writer_and_a_dense_reader,
    |store, db| async move {
        let plain = Memory::open(store.clone(), None, MemoryConfig::default())
            .await
            .unwrap();
        let b = open(&other_store(db).await).await;
        let r = plain
            .memorize(NewMemory::new(
                "user:me",
                "I keep my bike locked in the garage",
            ))
            .await
            .unwrap();
        b.sync().await.unwrap();
        // Stored without a vector: B embeds it for its own index, by meaning.
        let hits = b
            .recall_with("bicycle storage", &["user:me"], 1, Retrieval::Dense)
            .await
            .unwrap();
        assert_eq!(hits[0].id, r.id);
        // ...without writing it back, so the other handle is not woken for nothing.
        assert_eq!(b.stats().await.unwrap().vectors, 0);
        assert_eq!(plain.sync().await.unwrap().changes, 0);
    }
);

both_backends!(
    a_writer_that_commits_late_is_not_skipped,
    |store, db| async move {
        let a = open(&store).await;
        let b = open(&other_store(db).await).await;
        // A writer that has logged its change (seq N) but not committed yet, made by hand with
        // the same steps as Memory's writers (on Postgres: the writers' lock first).
        let late = "mem_00000000000000000000000000late";
        let (tx_done, tx_wait) = tokio::sync::oneshot::channel::<()>();
        let (logged, is_logged) = tokio::sync::oneshot::channel::<()>();
        let store2 = store.clone();
        let slow = tokio::spawn(async move {
            zocalo_store::with_pool!(store2.pool(), |p| {
                let mut tx = p.begin().await.unwrap();
                if store2.backend() == zocalo_store::Backend::Postgres {
                    sqlx::query(
                        "SELECT pg_advisory_xact_lock(1835231335, \
                         hashtext(COALESCE(current_schema(), '')))",
                    )
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                sqlx::query(
                    "INSERT INTO memories (id, scope, text, metadata, created_at, updated_at) \
                     VALUES ($1, 'user:me', 'the late writer parked in bay seven', '{}', 1, 1)",
                )
                .bind(late)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO memory_chunks (memory_id, seq, text) \
                     VALUES ($1, 0, 'the late writer parked in bay seven')",
                )
                .bind(late)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO memory_changes (memory_id, op, at) VALUES ($1, 'upsert', 1)",
                )
                .bind(late)
                .execute(&mut *tx)
                .await
                .unwrap();
                logged.send(()).unwrap();
                tx_wait.await.unwrap();
                tx.commit().await.unwrap();
            })
        });
        is_logged.await.unwrap();
        // Meanwhile A writes (seq N+1) and B syncs. A must not commit before the late writer:
        // if it did, B would apply N+1, move past N, and never see the late memory.
        let a2 = a.clone();
        let mut quick = tokio::spawn(async move {
            a2.memorize(NewMemory::new(
                "user:me",
                "the quick writer parked in bay one",
            ))
            .await
            .unwrap()
        });
        let finished_first = tokio::time::timeout(Duration::from_millis(500), &mut quick)
            .await
            .is_ok();
        assert!(
            !finished_first,
            "a writer committed past an uncommitted change"
        );
        b.sync().await.unwrap();
        tx_done.send(()).unwrap();
        slow.await.unwrap();
        let quick = quick.await.unwrap();
        b.sync().await.unwrap();
        let mut want = vec![late.to_owned(), quick.id.clone()];
        want.sort();
        assert_eq!(b.indexed_ids(), want);
        assert_eq!(keyword_ids(&b, "parked").await.len(), 2);
    }
);

/// PostgreSQL only (SQLite has no notifications): a writer's NOTIFY wakes another handle's
/// `spawn_sync` long before its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifications_wake_spawn_sync() {
    let db = zocalo_testkit::db::postgres().await;
    {
        let a = open(&db.store).await;
        let b = open(&other_store(&db).await).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A timer far beyond the 2 s: only a notification can be in time.
        let task = b.spawn_sync(Duration::from_secs(60), async move {
            let _ = stopped.await;
        });
        // Wait until its listener is up (a write before that would only wake the timer).
        let channel: String = zocalo_store::with_pool!(db.store.pool(), |p| sqlx::query_scalar(
            include_str!("../src/sql/change_channel.sql")
        )
        .fetch_one(p)
        .await
        .unwrap());
        let listen = format!("LISTEN \"{channel}\"");
        let sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE query = $1 AND state = 'idle'";
        within_2s!("B listens", {
            let n: i64 = zocalo_store::with_pool!(db.store.pool(), |p| sqlx::query_scalar(sql)
                .bind(&listen)
                .fetch_one(p)
                .await
                .unwrap());
            n == 1
        });
        let r = a
            .memorize(NewMemory::new("user:me", "Notified, not polled"))
            .await
            .unwrap();
        let took = within_2s!("B's index has it", b.indexed_ids().contains(&r.id));
        eprintln!("notified after {took:?}");
        a.forget(&r.id).await.unwrap();
        within_2s!("B's index lost it", b.indexed_ids().is_empty());
        stop.send(()).unwrap();
        task.await.unwrap();
    }
    db.cleanup().await;
}

/// The other process of `another_process_writes`: this test binary run again, with only this
/// test, on the database `ZOCALO_TEST_CHILD_DB`. Adds two memories, forgets the second, prints
/// their ids. Does nothing when run without it (not `#[ignore]`d, so that a run with no
/// ignored tests stays one where nothing was skipped).
#[tokio::test]
async fn child_writer() {
    let Ok(url) = std::env::var("ZOCALO_TEST_CHILD_DB") else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    // Keywords only: no model to load in the child; the reader computes its own vectors.
    let m = Memory::open(store, None, MemoryConfig::default())
        .await
        .unwrap();
    let kept = m
        .memorize(NewMemory::new(
            "user:me",
            "The child process planted sunflowers",
        ))
        .await
        .unwrap();
    let gone = m
        .memorize(NewMemory::new(
            "user:me",
            "The child process planted turnips",
        ))
        .await
        .unwrap();
    m.forget(&gone.id).await.unwrap();
    println!("CHILD_KEPT={}", kept.id);
    println!("CHILD_GONE={}", gone.id);
}

both_backends!(another_process_writes, |store, db| async move {
    let reader = open(&store).await;
    // Loaded before the other process writes: what it sees next comes from the change log.
    assert!(reader.indexed_ids().is_empty());
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture"])
        .env("ZOCALO_TEST_CHILD_DB", db.url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .trim()
            .to_owned()
    };
    let (kept, gone) = (id("CHILD_KEPT="), id("CHILD_GONE="));
    let took = within_2s!(
        "the reader recalls the other process's memory",
        keyword_ids(&reader, "sunflowers planted").await == [kept.clone()]
    );
    eprintln!("seen {took:?} after the other process exited");
    assert!(keyword_ids(&reader, "turnips").await.is_empty());
    assert_eq!(reader.indexed_ids(), vec![kept.clone()]);
    let dense = reader
        .recall_with("flowers in the garden", &["user:me"], 1, Retrieval::Dense)
        .await
        .unwrap();
    assert_eq!(dense[0].id, kept);
    assert_ne!(kept, gone);
});

both_backends!(
    recall_works_on_when_the_change_log_cannot_be_read,
    |store, db| async move {
        let a = open(&store).await;
        let r = a
            .memorize(NewMemory::new("user:me", "The lighthouse is painted red"))
            .await
            .unwrap();
        let b_store = other_store(db).await;
        let b = open(&b_store).await;
        b_store.close().await;
        // The indexes are still there to search; only other processes' news is missing.
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                keyword_ids(&b, "lighthouse").await,
                std::slice::from_ref(&r.id)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(b.sync().await.is_err());
    }
);
