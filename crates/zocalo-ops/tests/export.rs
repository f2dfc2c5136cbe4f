//! Export and import on both backends, and between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use zocalo_ops::{export, import, Export, OnConflict, OpsError};
use zocalo_testkit::both_backends;

// Seeded on one backend, imported into the other, exported again: the same document.
both_backends!(round_trip_to_the_other_backend, |store| async move {
    seed(&store).await;
    let first = export(&store).await.unwrap();
    check_seeded(&first);
    assert_eq!(first.schema_version, store.known_schema_version());

    let other = match store.backend() {
        zocalo_store::Backend::Sqlite => zocalo_testkit::db::postgres().await,
        zocalo_store::Backend::Postgres => zocalo_testkit::db::sqlite().await,
    };
    // Through the text form, as `zocalo export` / `zocalo import` do.
    let text = serde_json::to_vec_pretty(&first).unwrap();
    let parsed = Export::from_json(&text).unwrap();
    let report = import(&other.store, &parsed, OnConflict::Refuse)
        .await
        .unwrap();
    assert_eq!(report.imported, first.counts());
    assert_eq!(report.imported.messages, 2);
    assert_eq!(report.skipped, 0);

    let second = export(&other.store).await.unwrap();
    assert_eq!(comparable(second), comparable(first.clone()));
    memory_is_searchable(&other.store).await;
    // The store's own API reads the imported conversation (its key too).
    let conv = other
        .store
        .conversation_of_key("telegram:42")
        .await
        .unwrap()
        .unwrap();
    let msgs = other.store.messages(&conv).await.unwrap();
    assert_eq!(msgs.len(), 2);
    other.cleanup().await;
});

both_backends!(existing_ids_are_refused_or_skipped, |store| async move {
    seed(&store).await;
    let doc = export(&store).await.unwrap();
    let err = import(&store, &doc, OnConflict::Refuse).await.unwrap_err();
    assert!(matches!(err, OpsError::Exists { count: 4, .. }), "{err}");
    assert!(err.to_string().contains("--skip-existing"), "{err}");

    let skipped = import(&store, &doc, OnConflict::Skip).await.unwrap();
    assert_eq!(skipped.skipped, 4);
    assert_eq!(skipped.imported, zocalo_ops::Counts::default());
    assert_eq!(
        comparable(export(&store).await.unwrap()),
        comparable(doc.clone())
    );

    // Replace: everything deleted, then the document's records written.
    let replaced = import(&store, &doc, OnConflict::Replace).await.unwrap();
    assert_eq!(replaced.imported, doc.counts());
    assert_eq!(comparable(export(&store).await.unwrap()), comparable(doc));
});

// A record the database rejects late in the import (a negative token count breaks a CHECK
// constraint) leaves nothing of the records before it.
both_backends!(import_is_all_or_nothing, |store| async move {
    let source = zocalo_testkit::db::sqlite().await;
    seed(&source.store).await;
    let mut doc = export(&source.store).await.unwrap();
    source.cleanup().await;
    doc.conversations[0].messages[1].output_tokens = Some(-1);
    // Conversations are written first, so the failing message comes after one was inserted.
    let err = import(&store, &doc, OnConflict::Refuse).await.unwrap_err();
    assert!(matches!(err, OpsError::Db(_)), "{err}");
    let after = export(&store).await.unwrap();
    assert_eq!(after.counts(), zocalo_ops::Counts::default());
});

both_backends!(
    an_export_from_a_newer_schema_is_refused,
    |store| async move {
        let mut doc = export(&store).await.unwrap();
        doc.schema_version = store.known_schema_version() + 1;
        let err = import(&store, &doc, OnConflict::Refuse).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&doc.schema_version.to_string()), "{msg}");
        assert!(
            msg.contains(&store.known_schema_version().to_string()),
            "{msg}"
        );
    }
);

#[test]
fn malformed_documents_are_refused_with_the_reason() {
    let valid = serde_json::json!({
        "format": "zocalo-export", "version": 1, "zocalo_version": "0.1.0",
        "schema_version": 1, "exported_at": "2026-01-01T00:00:00Z",
        "conversations": [], "memories": [], "automations": [], "services": []
    });
    assert!(Export::from_json(valid.to_string().as_bytes()).is_ok());
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!({"format": "other"}), "missing field"),
        (
            {
                let mut v = valid.clone();
                v["format"] = "tarball".into();
                v
            },
            "format",
        ),
        (
            {
                let mut v = valid.clone();
                v["version"] = 2.into();
                v
            },
            "upgrade zocalo",
        ),
        (
            {
                let mut v = valid.clone();
                v["surprise"] = 1.into();
                v
            },
            "unknown field",
        ),
        (
            {
                let mut v = valid.clone();
                v["memories"] = serde_json::json!([
                    {"id": "m1", "scope": "user:x", "text": "a",
                     "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
                    {"id": "m1", "scope": "user:x", "text": "b",
                     "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
                ]);
                v
            },
            "appears twice",
        ),
        (
            {
                let mut v = valid.clone();
                v["conversations"] = serde_json::json!([{
                    "id": "c1", "title": null,
                    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                    "messages": [{"id": "x", "seq": 1, "role": "system", "content": "hi",
                                  "created_at": "2026-01-01T00:00:00Z"}]
                }]);
                v
            },
            "unknown role",
        ),
    ];
    for (doc, expected) in cases {
        let err = Export::from_json(doc.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, OpsError::BadExport(_)), "{err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    // Memory metadata holds strings and numbers only (zocalo-memory's rule).
    let mut v = valid.clone();
    v["memories"] = serde_json::json!([
        {"id": "m1", "scope": "user:x", "text": "a", "metadata": {"nested": {"no": 1}},
         "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    ]);
    let err = Export::from_json(v.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("memory m1"), "{err}");
    assert!(Export::from_json(b"\x00\xffnot json").is_err());
}

proptest::proptest! {
    // Whatever a user hands `zocalo import`, parsing fails cleanly or gives a valid document.
    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = Export::from_json(&bytes);
    }
}

// Installed skills travel in the document (scripts stay executable) and land in the new home's
// skills directory; a skill the home has is an existing record.
both_backends!(skills_travel_with_the_export, |store| async move {
    use zocalo_core::paths::DataHome;
    use zocalo_ops::{export_home, import_home};
    let tmp = tempfile::tempdir().unwrap();
    let home = DataHome::at(tmp.path().join("a"));
    seed_home(home.root());
    // A file that is not UTF-8 goes as hex.
    std::fs::write(
        home.root().join("skills/hello/logo.bin"),
        [0xffu8, 0x00, 0xfe],
    )
    .unwrap();
    seed(&store).await;
    let doc = export_home(&home, &store).await.unwrap();
    assert_eq!(doc.counts().skills, 1);
    let text = serde_json::to_vec(&doc).unwrap();
    let doc = Export::from_json(&text).unwrap();

    let other = zocalo_testkit::db::sqlite().await;
    let new_home = DataHome::at(tmp.path().join("b"));
    let report = import_home(&new_home, &other.store, &doc, OnConflict::Refuse)
        .await
        .unwrap();
    assert_eq!(report.imported.skills, 1);
    assert_eq!(report.imported.memories, 1);
    for file in [
        "skills/hello/SKILL.md",
        "skills/hello/scripts/hi.sh",
        "skills/hello/logo.bin",
    ] {
        assert_eq!(
            std::fs::read(home.root().join(file)).unwrap(),
            std::fs::read(new_home.root().join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(
        mode(&new_home.root().join("skills/hello/scripts/hi.sh")),
        0o755
    );
    // No staging folder is left behind.
    let names: Vec<_> = std::fs::read_dir(new_home.root().join("skills"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["hello"]);

    // Again: the skill is there, so the whole import is refused, database included.
    let err = import_home(&new_home, &other.store, &doc, OnConflict::Refuse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("skill hello"), "{err}");
    let skipped = import_home(&new_home, &other.store, &doc, OnConflict::Skip)
        .await
        .unwrap();
    assert_eq!(skipped.skipped, 5);
    assert_eq!(skipped.imported.skills, 0);
    other.cleanup().await;

    // A path out of the skills directory is refused before anything is written.
    let mut evil = doc.clone();
    evil.skills[0].path = "../escaped".into();
    let text = serde_json::to_vec(&evil).unwrap();
    let err = Export::from_json(&text).unwrap_err();
    assert!(err.to_string().contains("must be NAME/FILE"), "{err}");
});
