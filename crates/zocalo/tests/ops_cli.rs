//! `zocalo backup` while a daemon keeps firing an automation, then `zocalo restore` into a new
//! home: every memory, conversation and automation is there (issue 25). Also the CLI's
//! refusals (a home with data, a broken archive) and `export` / `import` through files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{zocalo, Run};
use serde_json::Value;
use zocalo_testkit::db::TestDb;
use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};

/// Stops the data home's daemon when the test ends, however it ends.
struct Daemon(PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
            .env("ZOCALO_HOME", &self.0)
            .args(["daemon", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `zocalo [--database-url URL] ARGS` in `home` with `env`.
async fn run(home: &Path, url: Option<&str>, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut all = Vec::new();
    if let Some(url) = url {
        all.extend(["--database-url", url]);
    }
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    zocalo(home, &env, &all).await
}

async fn export(home: &Path, url: Option<&str>, env: &[(&str, String)]) -> Value {
    let r = run(home, url, env, &["export", "-"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
}

fn ids(doc: &Value, kind: &str) -> BTreeSet<String> {
    doc[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Messages in every conversation of an export.
fn messages(doc: &Value) -> usize {
    doc["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["messages"].as_array().unwrap().len())
        .sum()
}

both!(
    a_backup_taken_while_automations_fire_restores_everything,
    |db, home| async move {
        let fake = FakeServer::start().await;
        fake.respond_with(|_| Reply::sse(openai_text_sse("gpt-test", &["Pulse ", "taken."])));
        let env = vec![
            ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
            ("OPENAI_API_KEY", "sk-test-0123456789".to_owned()),
            ("ZOCALO_PROVIDER", "openai".to_owned()),
            ("ZOCALO_EMBEDDER", "none".to_owned()),
        ];
        let url = db.url();
        let url = Some(url.as_str());
        let _daemon = Daemon(home.to_path_buf());
        std::fs::write(
            home.join("config.toml"),
            "[budgets]\ndaily_tokens = 100000\n",
        )
        .unwrap();
        let start = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let r = run(
            home,
            url,
            &env,
            &[
                "schedule",
                "add",
                "pulse",
                "--rrule",
                "FREQ=SECONDLY;INTERVAL=2",
                "--start",
                &start,
                "--tz",
                "UTC",
                "--ask",
                "Take the pulse",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut memories = BTreeSet::new();
        let mut remember = |r: Run| {
            assert_eq!(r.code, 0, "{}", r.stderr);
            memories.insert(r.json()["id"].as_str().unwrap().to_owned());
        };
        remember(
            run(
                home,
                url,
                &env,
                &["memory", "add", "Ana lives in Lisbon.", "--json"],
            )
            .await,
        );
        let r = run(home, url, &env, &["daemon", "start"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);

        // Runs are landing as conversations; keep adding memories meanwhile.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let doc = export(home, url, &env).await;
            // Each run adds a turn (its automation's conversation, or a new one).
            if messages(&doc) >= 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no automation run within 60 s: {doc:#}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for i in 0..3 {
            let text = format!("Fact {i} noted while the daemon runs.");
            remember(run(home, url, &env, &["memory", "add", &text, "--json"]).await);
        }
        let before = export(home, url, &env).await;
        let archive = home.parent().unwrap().join(format!(
            "{}-backup.zip",
            home.file_name().unwrap().to_str().unwrap()
        ));
        let archive_arg = archive.to_str().unwrap();
        let r = run(home, url, &env, &["backup", archive_arg, "--json"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.json()["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "config.toml"));
        // The daemon kept firing while the backup ran and after it.
        let fired_before = messages(&before);
        let deadline = Instant::now() + Duration::from_secs(30);
        let after = loop {
            let doc = export(home, url, &env).await;
            if messages(&doc) > fired_before {
                break doc;
            }
            assert!(Instant::now() < deadline, "the daemon stopped firing");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        // Not into the home whose daemon is running, even with --force.
        let r = run(home, url, &env, &["restore", archive_arg, "--force"]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("daemon stop"), "{}", r.stderr);
        let r = run(home, url, &env, &["daemon", "stop"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);

        // A new home (and, on Postgres, a new database).
        let new_home = tempfile::tempdir().unwrap();
        let target: Option<TestDb> = match db.pg_schema() {
            Some(_) => Some(zocalo_testkit::db::postgres().await),
            None => None,
        };
        let target_url = target.as_ref().map(|t| t.url());
        let new_url = target_url.as_deref();
        let r = run(
            new_home.path(),
            new_url,
            &env,
            &["restore", archive_arg, "--json"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["replaced"], false);
        let restored = export(new_home.path(), new_url, &env).await;

        // Every memory and conversation there before the backup began, nothing that was
        // never written, and the automation.
        let got = ids(&restored, "memories");
        assert!(memories.is_subset(&got), "{memories:?} not in {got:?}");
        assert!(ids(&before, "memories").is_subset(&got));
        assert!(got.is_subset(&ids(&after, "memories")));
        let convs = ids(&restored, "conversations");
        assert!(ids(&before, "conversations").is_subset(&convs));
        assert!(convs.is_subset(&ids(&after, "conversations")));
        let restored_messages = messages(&restored);
        assert!(
            restored_messages >= messages(&before) && restored_messages <= messages(&after),
            "{restored_messages} messages, {} before and {} after the backup",
            messages(&before),
            messages(&after)
        );
        for c in restored["conversations"].as_array().unwrap() {
            let roles: Vec<&str> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles.first(), Some(&"user"), "{c:#}");
            assert_eq!(roles.last(), Some(&"assistant"), "a half turn: {c:#}");
        }
        let autos: Vec<&str> = restored["automations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(autos, ["pulse"]);
        assert_eq!(
            std::fs::read_to_string(new_home.path().join("config.toml")).unwrap(),
            "[budgets]\ndaily_tokens = 100000\n"
        );
        // The restored home works: its memories are searchable.
        let r = run(
            new_home.path(),
            new_url,
            &env,
            &["memory", "search", "Lisbon", "--json"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("Ana lives in Lisbon."), "{}", r.stdout);

        // Restoring again over it is refused without --force (exit 2), and nothing changes.
        let r = run(new_home.path(), new_url, &env, &["restore", archive_arg]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("--force"), "{}", r.stderr);
        let r = run(
            new_home.path(),
            new_url,
            &env,
            &["restore", archive_arg, "--force"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        if let Some(t) = target {
            t.cleanup().await;
        }
        let _ = std::fs::remove_file(&archive);
    }
);

both!(export_and_import_through_files, |db, home| async move {
    let env = vec![("ZOCALO_EMBEDDER", "none".to_owned())];
    let url = db.url();
    let url = Some(url.as_str());
    let r = run(
        home,
        url,
        &env,
        &["memory", "add", "The boat is named Seraphina.", "--json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An installed skill travels with the data.
    std::fs::create_dir_all(home.join("skills/hello")).unwrap();
    let skill = "---\nname: hello\ndescription: Says hello.\n---\nSay hello.\n";
    std::fs::write(home.join("skills/hello/SKILL.md"), skill).unwrap();
    let file = home.join("export.json");
    let r = run(
        home,
        url,
        &env,
        &["export", "--json", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["counts"]["memories"], 1);
    assert_eq!(r.json()["counts"]["skills"], 1);

    // Into the same database: refused as a whole (exit 2), then skipped with the flag.
    let r = run(home, url, &env, &["import", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--skip-existing"), "{}", r.stderr);
    let r = run(
        home,
        url,
        &env,
        &[
            "import",
            "--skip-existing",
            "--json",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["skipped"], 2);

    // Into a new home on SQLite, whatever the source backend.
    let other = tempfile::tempdir().unwrap();
    let r = run(
        other.path(),
        None,
        &env,
        &["import", "--json", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["imported"]["memories"], 1);
    assert_eq!(
        std::fs::read_to_string(other.path().join("skills/hello/SKILL.md")).unwrap(),
        skill
    );
    let r = run(other.path(), None, &env, &["skills", "list", "--json"]).await;
    assert!(r.stdout.contains("hello"), "{}", r.stdout);
    let r = run(
        other.path(),
        None,
        &env,
        &["memory", "search", "boat", "--json"],
    )
    .await;
    assert!(r.stdout.contains("Seraphina"), "{}", r.stdout);

    // Garbage is refused with the reason, as bad input.
    std::fs::write(&file, "{\"format\": \"something else\"}").unwrap();
    let r = run(
        other.path(),
        None,
        &env,
        &["import", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid export"), "{}", r.stderr);
    // A broken archive too.
    let r = run(
        other.path(),
        None,
        &env,
        &["restore", file.to_str().unwrap(), "--force"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a usable zocalo backup"),
        "{}",
        r.stderr
    );
});
