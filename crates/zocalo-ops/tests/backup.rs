//! Backup and restore on both backends: round trips, archives that must be refused before
//! anything changes, non-empty targets, and a backup taken while another task keeps writing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use zocalo_core::paths::DataHome;
use zocalo_core::{ConversationId, Message};
use zocalo_memory::{Memory, MemoryConfig, NewMemory};
use zocalo_ops::{backup, export, restore, verify, OpsError};
use zocalo_store::{Backend, NewMessage, Store};
use zocalo_testkit::both_backends;
use zocalo_testkit::db::TestDb;

/// A new, empty database of the same backend as `store`, with the URL a restore takes (None:
/// the home's own SQLite file).
async fn empty_target(store: &Store) -> Option<TestDb> {
    match store.backend() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(zocalo_testkit::db::postgres().await),
    }
}

async fn open_restored(home: &DataHome, target: &Option<TestDb>) -> Store {
    match target {
        None => Store::open_sqlite_file(&home.database()).await.unwrap(),
        Some(db) => Store::connect(&db.url()).await.unwrap(),
    }
}

both_backends!(round_trip_into_a_new_home, |store| async move {
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("home"));
    seed_home(home.root());
    seed(&store).await;
    let archive = tmp.path().join("backup.zip");
    let report = backup(&home, &store, &archive).await.unwrap();
    assert!(report.bytes > 0);
    assert_eq!(report.manifest.backend, store.backend().as_str());
    let names: Vec<&str> = report
        .manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    let db_entry = match store.backend() {
        Backend::Sqlite => "zocalo.db",
        Backend::Postgres => "export.json",
    };
    for expected in [
        db_entry,
        "vault.bin",
        "vault.key",
        "config.toml",
        "skills/hello/SKILL.md",
        "skills/hello/scripts/hi.sh",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    // Nothing but the archive is left beside it.
    let beside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");

    let new_home = DataHome::at(tmp.path().join("restored"));
    let target = empty_target(&store).await;
    let url = target.as_ref().map(|db| db.url());
    let restored = restore(&archive, &new_home, url.as_deref(), false)
        .await
        .unwrap();
    assert!(!restored.replaced);
    assert_eq!(restored.schema_version, store.known_schema_version());

    let before = snapshot(home.root());
    let after = snapshot(new_home.root());
    for file in [
        "vault.bin",
        "vault.key",
        "config.toml",
        "skills/hello/SKILL.md",
        "skills/hello/scripts/hi.sh",
    ] {
        assert_eq!(before.get(file), after.get(file), "{file}");
    }
    assert_eq!(
        mode(&new_home.root().join("skills/hello/scripts/hi.sh")),
        0o755
    );
    // Nothing else: no staging folder or stray WAL left in the home.
    let mut entries: Vec<String> = std::fs::read_dir(new_home.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    let mut expected = vec!["config.toml", "skills", "vault.bin", "vault.key"];
    if store.backend() == Backend::Sqlite {
        expected.push("zocalo.db");
    }
    expected.sort();
    assert_eq!(entries, expected);

    let copy = open_restored(&new_home, &target).await;
    let doc = export(&copy).await.unwrap();
    check_seeded(&doc);
    assert_eq!(comparable(doc), comparable(export(&store).await.unwrap()));
    memory_is_searchable(&copy).await;
    copy.close().await;
    if let Some(db) = target {
        db.cleanup().await;
    }
});

// A SQLite home's archive restored into Postgres, and a Postgres archive into a SQLite home.
both_backends!(restores_into_the_other_backend, |store| async move {
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("home"));
    seed(&store).await;
    let archive = tmp.path().join("backup.zip");
    backup(&home, &store, &archive).await.unwrap();

    let new_home = DataHome::at(tmp.path().join("other"));
    let (target, url) = match store.backend() {
        Backend::Sqlite => {
            let db = zocalo_testkit::db::postgres().await;
            let url = db.url();
            (Some(db), Some(url))
        }
        Backend::Postgres => (None, None),
    };
    restore(&archive, &new_home, url.as_deref(), false)
        .await
        .unwrap();
    let copy = open_restored(&new_home, &target).await;
    assert_eq!(
        comparable(export(&copy).await.unwrap()),
        comparable(export(&store).await.unwrap())
    );
    copy.close().await;
    if let Some(db) = target {
        db.cleanup().await;
    }
});

both_backends!(a_home_with_data_needs_force, |store| async move {
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("home"));
    seed_home(home.root());
    seed(&store).await;
    let archive = tmp.path().join("backup.zip");
    backup(&home, &store, &archive).await.unwrap();

    // The target: another home with its own config and data.
    let other = DataHome::at(tmp.path().join("other"));
    std::fs::create_dir_all(other.root()).unwrap();
    std::fs::write(other.config_file(), "# mine\n").unwrap();
    let target = empty_target(&store).await;
    let url = target.as_ref().map(|db| db.url());
    {
        let s = open_restored(&other, &target).await;
        s.conversation_for_key("mine").await.unwrap();
        s.close().await;
    }
    // sqlx closes SQLite connections on their own threads: the last one's checkpoint may
    // still be rewriting the file after close() returns. Its WAL file going away marks the end.
    let wal = other.root().join("zocalo.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the test's store never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = snapshot(other.root());
    let err = restore(&archive, &other, url.as_deref(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::NotEmpty { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("--force") && msg.contains("config.toml"),
        "{msg}"
    );
    assert!(msg.contains("1 conversations"), "{msg}");
    assert_same_files(&before, &snapshot(other.root()), "a refused restore");

    let report = restore(&archive, &other, url.as_deref(), true)
        .await
        .unwrap();
    assert!(report.replaced);
    let copy = open_restored(&other, &target).await;
    // Only the archive's data: the target's own conversation is gone.
    let doc = export(&copy).await.unwrap();
    check_seeded(&doc);
    assert!(copy.conversation_of_key("mine").await.unwrap().is_none());
    copy.close().await;
    assert_eq!(
        std::fs::read_to_string(other.config_file()).unwrap(),
        "[budgets]\ndaily_tokens = 1000\n"
    );
    if let Some(db) = target {
        db.cleanup().await;
    }
});

/// Rewrites the zip at `from` into `to`, passing each entry through `edit(name, bytes)`
/// (None drops it), then appending `extra` entries.
fn rewrite(
    from: &Path,
    to: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: &[(&str, &[u8])],
) {
    let mut zin = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut zout = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for i in 0..zin.len() {
        let mut e = zin.by_index(i).unwrap();
        let name = e.name().to_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        if let Some(bytes) = edit(&name, bytes) {
            zout.start_file(name, opts).unwrap();
            zout.write_all(&bytes).unwrap();
        }
    }
    for (name, bytes) in extra {
        zout.start_file(*name, opts).unwrap();
        zout.write_all(bytes).unwrap();
    }
    zout.finish().unwrap();
}

fn edit_manifest(bytes: Vec<u8>, f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    f(&mut m);
    serde_json::to_vec(&m).unwrap()
}

// Each broken archive is refused by restore --force into a home with data, and the home and
// its database are exactly as they were.
both_backends!(broken_archives_change_nothing, |store, db| async move {
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("home"));
    seed_home(home.root());
    seed(&store).await;
    let good = tmp.path().join("good.zip");
    backup(&home, &store, &good).await.unwrap();
    let known = store.known_schema_version();

    let broken = |name: &str| tmp.path().join(name);
    // A byte of the vault changed: its checksum no longer matches.
    rewrite(
        &good,
        &broken("checksum.zip"),
        |name, mut b| {
            if name == "vault.bin" {
                b[0] ^= 1;
            }
            Some(b)
        },
        &[],
    );
    // Cut in half, as by a full disk or an interrupted copy.
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(broken("truncated.zip"), &bytes[..bytes.len() / 2]).unwrap();
    // From a newer zocalo.
    rewrite(
        &good,
        &broken("newer.zip"),
        |name, b| {
            Some(if name == "manifest.json" {
                edit_manifest(b, |m| m["schema_version"] = (known + 1).into())
            } else {
                b
            })
        },
        &[],
    );
    // An entry nobody listed, and one that would escape the home.
    rewrite(
        &good,
        &broken("unlisted.zip"),
        |_, b| Some(b),
        &[("skills/evil/x", b"x")],
    );
    rewrite(
        &good,
        &broken("escape.zip"),
        |name, b| {
            Some(if name == "manifest.json" {
                edit_manifest(b, |m| {
                    m["files"].as_array_mut().unwrap().push(serde_json::json!({
                        "path": "../escaped", "size": 1, "sha256": "00", "mode": 420
                    }))
                })
            } else {
                b
            })
        },
        &[("../escaped", b"x")],
    );
    // A listed file missing.
    rewrite(
        &good,
        &broken("missing.zip"),
        |name, b| (name != "config.toml").then_some(b),
        &[],
    );
    std::fs::write(broken("not-a-zip.zip"), b"hello").unwrap();

    // The store's own database (SQLite file or Postgres schema) is the restore's target.
    let target_url = Some(db.url());
    let files_before = snapshot(home.root());
    let data_before = comparable(export(&store).await.unwrap());
    for (name, expected) in [
        ("checksum.zip", "does not match its checksum"),
        ("truncated.zip", "truncated"),
        ("newer.zip", "newer than this zocalo"),
        ("unlisted.zip", "not in the manifest"),
        ("escape.zip", "not a file a backup holds"),
        ("missing.zip", "config.toml"),
        ("not-a-zip.zip", "zip"),
    ] {
        let err = restore(&broken(name), &home, target_url.as_deref(), true)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expected), "{name}: {msg}");
        assert!(err.is_usage(), "{name}: {msg}");
        assert!(verify(&broken(name)).await.is_err(), "{name}");
        assert_same_files(&files_before, &snapshot(home.root()), name);
        assert_eq!(
            comparable(export(&store).await.unwrap()),
            data_before,
            "{name}"
        );
    }
    assert!(!tmp.path().join("escaped").exists());
    // The newer-schema message names both versions.
    let err = restore(&broken("newer.zip"), &home, None, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&(known + 1).to_string()) && err.contains(&known.to_string()),
        "{err}"
    );
    verify(&good).await.unwrap();
});

// Another task keeps writing turns and memories while the backup runs; the restored database
// holds whole turns only, every memory with its chunks, and at least what was written before
// the backup started.
both_backends!(backup_while_another_task_writes, |store| async move {
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("home"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let memory = Memory::new(store.clone(), None, MemoryConfig::default());
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let conv = ConversationId::new();
                store
                    .append_turn(
                        &conv,
                        None,
                        &[
                            NewMessage::plain(Message::user(format!("question {n}"))),
                            NewMessage::plain(Message::assistant(format!("answer {n}"))),
                        ],
                    )
                    .await
                    .unwrap();
                memory
                    .memorize(NewMemory::new("user:default", format!("fact number {n}")))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    // Let it get going, then back up twice while it writes.
    while export(&store).await.unwrap().memories.len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let floor = export(&store).await.unwrap().memories.len();
    let archive = tmp.path().join("live.zip");
    backup(&home, &store, &archive).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();

    let new_home = DataHome::at(tmp.path().join("restored"));
    let target = empty_target(&store).await;
    let url = target.as_ref().map(|db| db.url());
    restore(&archive, &new_home, url.as_deref(), false)
        .await
        .unwrap();
    let copy = open_restored(&new_home, &target).await;
    let doc = export(&copy).await.unwrap();
    assert!(
        doc.memories.len() >= floor && doc.memories.len() <= written,
        "{} of {written}",
        doc.memories.len()
    );
    assert!(doc.conversations.len() >= floor);
    for c in &doc.conversations {
        let turn: Vec<_> = c
            .messages
            .iter()
            .map(|m| (m.seq, m.role.as_str()))
            .collect();
        assert_eq!(
            turn,
            [(1, "user"), (2, "assistant")],
            "a half turn in {}",
            c.id
        );
    }
    // Every memory is indexed again from its rows.
    let memory = Memory::new(copy.clone(), None, MemoryConfig::default());
    memory.ensure_loaded().await.unwrap();
    assert_eq!(memory.indexed().0, doc.memories.len());
    let hits = memory
        .recall("fact number 3", &["user:default"], 3)
        .await
        .unwrap();
    assert!(!hits.is_empty());
    copy.close().await;
    if let Some(db) = target {
        db.cleanup().await;
    }
    let _: PathBuf = archive;
});

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]
    // Whatever file a user hands `zocalo restore`, checking it ends in a clear refusal or the
    // exact backed-up content, never a panic: random bytes, and a real archive with a stretch
    // of it overwritten.
    #[test]
    fn any_file_is_refused_cleanly(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
        at in 0usize..100_000,
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 1..64),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let tmp = tempfile::tempdir().unwrap();
            let random = tmp.path().join("random.zip");
            std::fs::write(&random, &bytes).unwrap();
            let err = verify(&random).await.unwrap_err();
            assert!(err.is_usage(), "{err}");

            let db = zocalo_testkit::db::sqlite().await;
            let home = DataHome::at(tmp.path().join("home"));
            seed_home(home.root());
            let good = tmp.path().join("good.zip");
            backup(&home, &db.store, &good).await.unwrap();
            let mut archive = std::fs::read(&good).unwrap();
            let start = at % archive.len();
            for (i, b) in garbage.iter().enumerate() {
                if let Some(slot) = archive.get_mut(start + i) {
                    *slot ^= b | 1;
                }
            }
            let damaged = tmp.path().join("damaged.zip");
            std::fs::write(&damaged, &archive).unwrap();
            // Damage to the data or the manifest is caught; damage to what no one reads (a
            // timestamp in a zip header) may pass, but then the content is exactly the backup's.
            match verify(&damaged).await {
                Err(e) => assert!(e.is_usage(), "{e}"),
                Ok(m) => assert_eq!(m, verify(&good).await.unwrap()),
            }
            db.cleanup().await;
        });
    }
}
