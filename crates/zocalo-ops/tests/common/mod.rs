//! Data every ops test writes through the owning crates' own APIs (so the tests see the rows
//! those crates really write), and the checks that a copy holds all of it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use zocalo_core::{ConversationId, Message};
use zocalo_memory::{Memory, MemoryConfig, NewMemory};
use zocalo_ops::Export;
use zocalo_scheduler::{Action, NewAutomation, Scheduler};
use zocalo_services::{HealthCheck, RestartPolicy, ServiceSpec, ServiceStore};
use zocalo_store::{NewMessage, Store};

pub const MEMORY_TEXT: &str = "The user's sister Ana lives in Lisbon and likes fado.";

/// Writes one of everything an export carries; returns the conversation made by key.
pub async fn seed(store: &Store) -> ConversationId {
    let (conv, created) = store.conversation_for_key("telegram:42").await.unwrap();
    assert!(created);
    let mut answer = NewMessage::plain(Message::assistant("Lisbon, with a 10 °C evening."));
    answer.model = Some("gpt-test".into());
    answer.provider = Some("openai".into());
    answer.usage = Some(zocalo_core::protocol::Usage {
        input_tokens: 12,
        output_tokens: 7,
    });
    store
        .append_turn(
            &conv,
            Some("Where does Ana live?"),
            &[
                NewMessage::plain(Message::user("Where does Ana live?")),
                answer,
            ],
        )
        .await
        .unwrap();

    let memory = Memory::new(store.clone(), None, MemoryConfig::default());
    memory
        .memorize(
            NewMemory::new("user:default", MEMORY_TEXT)
                .with_meta("speaker", "user")
                .with_meta("weight", 3)
                .with_source("cli"),
        )
        .await
        .unwrap();

    let scheduler = Scheduler::new(store.clone());
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
    scheduler
        .add(
            NewAutomation::new(
                "morning",
                "FREQ=DAILY;BYHOUR=7;BYMINUTE=30",
                "2026-01-01T07:30:00",
                "Europe/Lisbon",
                Action::Ask {
                    message: "Good morning: what is on today?".into(),
                    conversation_id: None,
                    persona: None,
                    deliver: None,
                },
            ),
            now,
        )
        .await
        .unwrap();
    scheduler.pause("morning", now).await.unwrap();

    ServiceStore::new(store.clone())
        .insert(&ServiceSpec {
            name: "web".into(),
            command: "python3 -m http.server 8123".into(),
            restart: RestartPolicy::Always,
            health: Some(HealthCheck::Http("http://127.0.0.1:8123/".into())),
            env: [("PORT".to_owned(), "8123".to_owned())].into(),
            cwd: Some("/tmp".into()),
        })
        .await
        .unwrap();
    conv
}

/// Checks that `doc` holds exactly what [`seed`] wrote (values from the seed, not from the
/// code under test).
pub fn check_seeded(doc: &Export) {
    assert_eq!(doc.conversations.len(), 1, "{doc:#?}");
    let c = &doc.conversations[0];
    assert_eq!(c.key.as_ref().map(|k| k.key.as_str()), Some("telegram:42"));
    // A conversation made for a key is titled by the key (zocalo-store).
    assert_eq!(c.title.as_deref(), Some("telegram:42"));
    let m: Vec<_> = c
        .messages
        .iter()
        .map(|m| (m.seq, m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            (1, "user", "Where does Ana live?"),
            (2, "assistant", "Lisbon, with a 10 °C evening.")
        ]
    );
    let a = &c.messages[1];
    assert_eq!(a.model.as_deref(), Some("gpt-test"));
    assert_eq!(a.provider.as_deref(), Some("openai"));
    assert_eq!((a.input_tokens, a.output_tokens), (Some(12), Some(7)));

    assert_eq!(doc.memories.len(), 1);
    let mem = &doc.memories[0];
    assert_eq!(mem.text, MEMORY_TEXT);
    assert_eq!(mem.scope, "user:default");
    assert_eq!(mem.source.as_deref(), Some("cli"));
    assert_eq!(mem.metadata["speaker"], "user");
    assert_eq!(mem.metadata["weight"], 3);

    assert_eq!(doc.automations.len(), 1);
    let auto = &doc.automations[0];
    assert_eq!(auto.name, "morning");
    assert_eq!(auto.rrule, "FREQ=DAILY;BYHOUR=7;BYMINUTE=30");
    assert_eq!(auto.tz, "Europe/Lisbon");
    assert!(auto.paused);
    assert_eq!(auto.action["kind"], "ask");
    assert_eq!(auto.misfire, "run-once");

    assert_eq!(doc.services.len(), 1);
    let s = &doc.services[0];
    assert_eq!(s.name, "web");
    assert_eq!(s.command, "python3 -m http.server 8123");
    assert_eq!(s.restart, "always");
    assert_eq!(s.env["PORT"], "8123");
    assert_eq!(s.cwd.as_deref(), Some("/tmp"));
}

/// The export minus the fields that differ between two exports of the same data.
pub fn comparable(mut doc: Export) -> Export {
    doc.exported_at = Utc.timestamp_opt(0, 0).single().unwrap();
    doc
}

/// A memory handle on `store` finds the seeded memory by keyword (its chunks were rebuilt).
pub async fn memory_is_searchable(store: &Store) {
    let memory = Arc::new(Memory::new(store.clone(), None, MemoryConfig::default()));
    let hits = memory
        .recall("Ana Lisbon fado", &["user:default"], 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
}

/// A data home with a vault, its key file, a config and one installed skill with a script.
pub fn seed_home(root: &Path) {
    std::fs::create_dir_all(root.join("skills/hello/scripts")).unwrap();
    std::fs::write(root.join("vault.bin"), b"ZVLT\x01sealed-bytes").unwrap();
    std::fs::write(root.join("vault.key"), [7u8; 32]).unwrap();
    std::fs::write(root.join("config.toml"), "[budgets]\ndaily_tokens = 1000\n").unwrap();
    std::fs::write(
        root.join("skills/hello/SKILL.md"),
        "---\nname: hello\ndescription: Says hello.\n---\nRun scripts/hi.sh\n",
    )
    .unwrap();
    let script = root.join("skills/hello/scripts/hi.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    set_mode(&script, 0o755);
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `root` (relative name -> bytes), for "nothing changed" checks.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let name = path.strip_prefix(base).unwrap().display().to_string();
                // SQLite's own side files change when a connection merely opens the database.
                if name.ends_with("-wal") || name.ends_with("-shm") {
                    continue;
                }
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Panics naming the files that differ between two [`snapshot`]s.
pub fn assert_same_files(
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    after: &std::collections::BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<&&String> = names
        .iter()
        .filter(|n| before.get(**n) != after.get(**n))
        .collect();
    assert!(changed.is_empty(), "{what}: changed {changed:?}");
}
