//! A full disk: the write that hits it fails with a clear error, nothing half-written is left,
//! and the database is intact (readable, `integrity_check` ok, every earlier turn there) once
//! space is freed. Needs a small tmpfs, so root (CI runs as root); skipped with a message
//! where mounting is not permitted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use zocalo_core::{ConversationId, Message};
use zocalo_store::{NewMessage, Pool, Store, StoreError};

/// A 2 MiB tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn turn(i: usize) -> Vec<NewMessage> {
    // Incompressible enough that the pages really fill up.
    let text: String = (0..20_000)
        .map(|j| char::from(b'a' + ((i * 7919 + j * 104_729) % 26) as u8))
        .collect();
    vec![
        NewMessage::plain(Message::user(format!("question {i}: {text}"))),
        NewMessage::plain(Message::assistant(format!("answer {i}"))),
    ]
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_leaves_the_database_intact() {
    let fs = match Tmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_is_a_clear_error...: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let db: PathBuf = fs.path().join("zocalo.db");
    // Ballast, freed after the failure to give the database room again.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 256 * 1024]).unwrap();

    let store = Store::open_sqlite_file(&db).await.unwrap();
    let conv = ConversationId::new();
    let mut saved = 0usize;
    let err = loop {
        match store
            .append_turn(&conv, Some("filling"), &turn(saved))
            .await
        {
            Ok(_) => saved += 1,
            Err(e) => break e,
        }
        assert!(saved < 1000, "a 2 MiB disk never filled up");
    };
    assert!(
        saved > 5,
        "the disk filled up before any turn was stored ({saved})"
    );
    assert!(matches!(err, StoreError::DiskFull(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("disk holding the database is full"), "{msg}");
    assert!(msg.contains("free some space"), "{msg}");
    // What was stored before is still readable, and the failed turn left nothing behind.
    assert_eq!(store.messages(&conv).await.unwrap().len(), 2 * saved);
    store.close().await;

    std::fs::remove_file(&ballast).unwrap();
    let store = Store::open_sqlite_file(&db).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(match store.pool() {
            Pool::Sqlite(p) => p,
            Pool::Postgres(_) => unreachable!("a SQLite file"),
        })
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let messages = store.messages(&conv).await.unwrap();
    assert_eq!(messages.len(), 2 * saved);
    assert_eq!(
        messages.last().unwrap().message.content,
        format!("answer {}", saved - 1)
    );
    // With room again, writing works.
    store
        .append_turn(&conv, None, &[NewMessage::plain(Message::user("after"))])
        .await
        .unwrap();
    store.close().await;
}
