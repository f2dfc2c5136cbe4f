//! The vault on a real filesystem: round trips, wrong passphrases, damaged files, key files,
//! concurrent writers.

use std::sync::Arc;

use zocalo_core::Secret;
use zocalo_llm::vault::{format::KdfParams, InitMode, Vault, VaultError};

const KEY: &str = "sk-test-vault-0123456789abcdef3f9a";

/// Cheap Argon2 so the suite stays fast; the cost is stored in the file, so reading uses
/// whatever the file says.
fn cheap() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

fn with_pass(dir: &std::path::Path, pass: &'static str) -> Vault {
    Vault::in_dir(dir)
        .with_passphrase_source(Box::new(move |_| Ok(Secret::new(pass))))
        .with_kdf_params(cheap())
}

#[test]
fn keys_survive_reopening_and_are_not_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let v = with_pass(dir.path(), "correct horse");
    assert!(v.load().unwrap().is_empty(), "no vault yet reads as empty");
    v.set("openai", &Secret::new(KEY)).unwrap();
    v.set("groq", &Secret::new("gsk-another-key-000000"))
        .unwrap();
    v.set("openai", &Secret::new(format!("{KEY}-v2"))).unwrap();

    let again = with_pass(dir.path(), "correct horse");
    let keys = again.load().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys["openai"].expose(), format!("{KEY}-v2"));
    assert_eq!(
        again.get("groq").unwrap().unwrap().expose(),
        "gsk-another-key-000000"
    );
    assert_eq!(again.get("mistral").unwrap(), None);
    assert_eq!(again.names().unwrap(), ["groq", "openai"]);

    let raw = std::fs::read(v.path()).unwrap();
    assert!(raw.starts_with(b"ZOCVAULT"));
    let hay = String::from_utf8_lossy(&raw);
    assert!(!hay.contains("0123456789abcdef"), "key bytes in plain text");
    assert!(!hay.contains("another-key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(v.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    assert!(again.remove("groq").unwrap());
    assert!(!again.remove("groq").unwrap());
    assert_eq!(again.names().unwrap(), ["openai"]);
}

#[test]
fn wrong_passphrase_is_named_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    with_pass(dir.path(), "right")
        .set("openai", &Secret::new(KEY))
        .unwrap();
    let before = std::fs::read(dir.path().join("vault.bin")).unwrap();
    let wrong = with_pass(dir.path(), "wrong");
    for result in [
        wrong.load().map(|_| ()),
        wrong.set("groq", &Secret::new("gsk-xxxxxxxxxxxx")),
        wrong.remove("openai").map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, VaultError::IncorrectPassphrase { .. }), "{e:?}");
        assert!(
            e.to_string().contains("vault passphrase is incorrect"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(dir.path().join("vault.bin")).unwrap(), before);
}

#[test]
fn damaged_files_are_named_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let v = with_pass(dir.path(), "pass");
    v.set("openai", &Secret::new(KEY)).unwrap();
    let good = std::fs::read(v.path()).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        good[..5].to_vec(),
        Vec::new(),
        {
            let mut b = good.clone();
            b[good.len() / 2] ^= 1;
            b
        },
        b"{\"openai\": \"plain text\"}".to_vec(),
    ];
    for bad in cases {
        std::fs::write(v.path(), &bad).unwrap();
        for result in [
            v.load().map(|_| ()),
            v.set("groq", &Secret::new("gsk-xxxxxxxxxxxx")),
        ] {
            let e = result.unwrap_err();
            assert!(matches!(e, VaultError::Corrupt { .. }), "{e:?}");
            assert!(
                e.to_string().contains(&v.path().display().to_string()),
                "{e}"
            );
        }
        assert_eq!(std::fs::read(v.path()).unwrap(), bad, "never overwritten");
    }
}

#[test]
fn key_file_vaults_open_without_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let no_pass = || {
        Vault::in_dir(dir.path()).with_passphrase_source(Box::new(|_| {
            panic!("a key-file vault must not ask for a passphrase")
        }))
    };
    no_pass().init(InitMode::KeyFile).unwrap();
    let keyfile = dir.path().join("vault.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keyfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    no_pass().set("anthropic", &Secret::new(KEY)).unwrap();
    assert_eq!(no_pass().get("anthropic").unwrap().unwrap().expose(), KEY);

    let e = no_pass().init(InitMode::KeyFile).unwrap_err();
    assert!(matches!(e, VaultError::AlreadyExists { .. }), "{e:?}");

    // Another key file: refused, and the message names both files.
    std::fs::write(&keyfile, format!("{}\n", "ab".repeat(32))).unwrap();
    let e = no_pass().load().unwrap_err().to_string();
    assert!(e.contains("vault.key") && e.contains("vault.bin"), "{e}");
    std::fs::remove_file(&keyfile).unwrap();
    let e = no_pass().load().unwrap_err();
    assert!(matches!(e, VaultError::KeyFile { .. }), "{e:?}");
}

#[test]
fn default_kdf_cost_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::in_dir(dir.path())
        .with_passphrase_source(Box::new(|_| Ok(Secret::new("a real passphrase"))));
    let t = std::time::Instant::now();
    v.set("openai", &Secret::new(KEY)).unwrap();
    assert_eq!(v.get("openai").unwrap().unwrap().expose(), KEY);
    eprintln!(
        "two Argon2id derivations at the default cost: {:?}",
        t.elapsed()
    );
}

#[test]
fn concurrent_writers_in_threads_all_persist() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    with_pass(dir.path(), "pass")
        .init(InitMode::Passphrase)
        .unwrap();
    let handles: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| {
            let dir = Arc::clone(&dir);
            std::thread::spawn(move || {
                with_pass(dir.path(), "pass")
                    .set(&name, &Secret::new(format!("key-for-{name}-000000")))
                    .unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let keys = with_pass(dir.path(), "pass").load().unwrap();
    assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), names);
}

#[test]
fn bad_names_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = with_pass(dir.path(), "p")
        .set("bad name", &Secret::new(KEY))
        .unwrap_err();
    assert!(e.is_usage(), "{e:?}");
    assert!(!dir.path().join("vault.bin").exists());
}
