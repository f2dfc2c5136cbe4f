//! `zocalo keys` and the vault end to end, as processes: keys set through the CLI survive,
//! are unreadable in vault.bin, are used by `ask`, never show up in any output or file, and
//! a fallback chain answers when the first provider is rate limited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use zocalo_core::ConversationId;
use zocalo_testkit::fake::{anthropic_text_sse, openai_text_sse, FakeServer, Reply};

const OPENAI_KEY: &str = "sk-test-vaulted-openai-7c1d2e3f3f9a";
const GROQ_KEY: &str = "gsk-test-vaulted-groq-55aa66bb1234";
const ANTHROPIC_KEY: &str = "sk-ant-test-vaulted-9876543210ab";
const PASS: &str = "correct horse battery staple";

use zocalo_testkit::SCRUB_ENV as SCRUB;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `zocalo ARGS` with a clean environment plus `env`, data home `home`, and `stdin` piped in
/// (or no stdin at all).
async fn zocalo(home: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.env("ZOCALO_HOME", home)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("zocalo could not be started");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("zocalo did not finish within 60 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn pass_env() -> Vec<(&'static str, &'static str)> {
    vec![("ZOCALO_VAULT_PASSPHRASE", PASS)]
}

async fn set_key(home: &Path, env: &[(&str, &str)], provider: &str, key: &str) -> Run {
    zocalo(
        home,
        env,
        &["keys", "set", provider],
        Some(&format!("{key}\n")),
    )
    .await
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn set_list_ask_rm_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let env = pass_env();
    set_key(home.path(), &env, "openai", OPENAI_KEY)
        .await
        .assert_code(0);
    let r = set_key(home.path(), &env, "groq", GROQ_KEY).await;
    r.assert_code(0);
    assert!(r.stdout.contains("…1234"), "{}", r.stdout);

    let vault = std::fs::read(home.path().join("vault.bin")).unwrap();
    assert!(vault.starts_with(b"ZOCVAULT"));
    for k in [OPENAI_KEY, GROQ_KEY, "vaulted"] {
        assert!(!contains(&vault, k), "{k} readable in vault.bin");
    }

    let list = zocalo(home.path(), &env, &["keys", "list", "--json"], None).await;
    list.assert_code(0);
    assert_eq!(
        list.json(),
        json!([
            {"provider": "groq", "source": "vault", "masked": "…1234", "variable": "GROQ_API_KEY"},
            {"provider": "openai", "source": "vault", "masked": "…3f9a", "variable": "OPENAI_API_KEY"},
        ])
    );

    // The environment wins over the vault.
    let mut env_wins = env.clone();
    env_wins.push(("GROQ_API_KEY", "gsk-from-the-environment-0000"));
    let list = zocalo(home.path(), &env_wins, &["keys", "list", "--json"], None).await;
    assert_eq!(list.json()[0]["source"], "env");
    assert_eq!(list.json()[0]["masked"], "…0000");

    // `ask` uses the vaulted key (a fresh process: it survived).
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse("gpt-test", &["from the vault"])));
    let base = format!("{}/v1", server.url());
    let mut ask_env = env.clone();
    ask_env.push(("OPENAI_BASE_URL", &base));
    let r = zocalo(
        home.path(),
        &ask_env,
        &["ask", "--provider", "openai", "hi"],
        None,
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.stdout, "from the vault\n");
    assert_eq!(
        server.requests()[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );

    // Without a provider named anywhere, a vaulted OpenAI key picks OpenAI.
    server.push(Reply::sse(openai_text_sse("gpt-test", &["detected"])));
    let r = zocalo(home.path(), &ask_env, &["ask", "hi"], None).await;
    r.assert_code(0);
    assert_eq!(r.stdout, "detected\n");

    zocalo(home.path(), &env, &["keys", "rm", "groq"], None)
        .await
        .assert_code(0);
    let r = zocalo(home.path(), &env, &["keys", "rm", "groq"], None).await;
    r.assert_code(1);
    assert!(r.stderr.contains("no key for groq"), "{}", r.stderr);
    let list = zocalo(home.path(), &env, &["keys", "list", "--json"], None).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passphrase_and_damaged_vault_leave_the_file_alone() {
    let home = tempfile::tempdir().unwrap();
    set_key(home.path(), &pass_env(), "openai", OPENAI_KEY)
        .await
        .assert_code(0);
    let path = home.path().join("vault.bin");
    let before = std::fs::read(&path).unwrap();

    let wrong = [("ZOCALO_VAULT_PASSPHRASE", "not the passphrase")];
    for args in [
        &["keys", "list"][..],
        &["keys", "set", "groq"][..],
        &["keys", "rm", "openai"][..],
    ] {
        let r = zocalo(home.path(), &wrong, args, Some(GROQ_KEY)).await;
        r.assert_code(1);
        assert!(
            r.stderr.contains("vault passphrase is incorrect"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "vault untouched");

    // No passphrase and no terminal to ask on: say how to give one.
    let r = zocalo(home.path(), &[], &["keys", "list"], None).await;
    r.assert_code(1);
    assert!(r.stderr.contains("ZOCALO_VAULT_PASSPHRASE"), "{}", r.stderr);

    for bad in [before[..before.len() - 7].to_vec(), {
        let mut b = before.clone();
        b[40] ^= 0x10;
        b
    }] {
        std::fs::write(&path, &bad).unwrap();
        for args in [&["keys", "list"][..], &["keys", "set", "groq"][..]] {
            let r = zocalo(home.path(), &pass_env(), args, Some(GROQ_KEY)).await;
            r.assert_code(1);
            assert!(
                r.stderr.contains(&path.display().to_string()) && r.stderr.contains("corrupt"),
                "{}",
                r.stderr
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), bad, "never overwritten");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let env = pass_env();
    let r = set_key(home.path(), &env, "nosuch", OPENAI_KEY).await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("nosuch") && r.stderr.contains("openai") && r.stderr.contains("mistral"),
        "{}",
        r.stderr
    );
    for empty in ["", "\n", "  \n\n"] {
        let r = zocalo(home.path(), &env, &["keys", "set", "openai"], Some(empty)).await;
        r.assert_code(2);
        assert!(r.stderr.contains("empty"), "{}", r.stderr);
    }
    let r = set_key(home.path(), &env, "openai", "two words").await;
    r.assert_code(2);
    let r = set_key(home.path(), &env, "ollama", OPENAI_KEY).await;
    r.assert_code(2);
    assert!(r.stderr.contains("needs no API key"), "{}", r.stderr);
    // The key is never accepted from argv.
    let r = zocalo(
        home.path(),
        &env,
        &["keys", "set", "openai", OPENAI_KEY],
        None,
    )
    .await;
    r.assert_code(2);
    assert!(!r.stderr.contains(OPENAI_KEY), "{}", r.stderr);
    let r = zocalo(home.path(), &env, &["keys", "rm", "nosuch"], None).await;
    r.assert_code(2);
    assert!(!home.path().join("vault.bin").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn key_file_vault_needs_no_passphrase() {
    let home = tempfile::tempdir().unwrap();
    zocalo(home.path(), &[], &["keys", "init", "--keyfile"], None)
        .await
        .assert_code(0);
    let keyfile = home.path().join("vault.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keyfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    set_key(home.path(), &[], "anthropic", ANTHROPIC_KEY)
        .await
        .assert_code(0);
    let list = zocalo(home.path(), &[], &["keys", "list", "--json"], None).await;
    list.assert_code(0);
    assert_eq!(list.json()[0]["provider"], "anthropic");
    let r = zocalo(home.path(), &[], &["keys", "init", "--keyfile"], None).await;
    r.assert_code(2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sets_from_two_processes_both_persist() {
    let home = tempfile::tempdir().unwrap();
    let env = pass_env();
    set_key(home.path(), &env, "openai", OPENAI_KEY)
        .await
        .assert_code(0);
    let providers = [
        "groq",
        "mistral",
        "deepseek",
        "together",
        "fireworks",
        "openrouter",
    ];
    for pair in providers.chunks(2) {
        let (a, b) = tokio::join!(
            set_key(home.path(), &env, pair[0], "key-for-the-first-000000"),
            set_key(home.path(), &env, pair[1], "key-for-the-second-00000"),
        );
        a.assert_code(0);
        b.assert_code(0);
    }
    let list = zocalo(home.path(), &env, &["keys", "list", "--json"], None).await;
    let mut got: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = providers.iter().map(|s| s.to_string()).collect();
    want.push("openai".into());
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_test_makes_one_authenticated_request() {
    let home = tempfile::tempdir().unwrap();
    let env = pass_env();
    set_key(home.path(), &env, "openai", OPENAI_KEY)
        .await
        .assert_code(0);
    set_key(home.path(), &env, "anthropic", ANTHROPIC_KEY)
        .await
        .assert_code(0);
    let server = FakeServer::start().await;
    let base = format!("{}/v1", server.url());
    let url = server.url();
    let mut env = env.clone();
    env.push(("OPENAI_BASE_URL", &base));
    env.push(("ANTHROPIC_BASE_URL", &url));

    server.push(Reply::json(
        200,
        json!({"object": "list", "data": [{"id": "gpt-a"}, {"id": "gpt-b"}]}),
    ));
    let r = zocalo(home.path(), &env, &["keys", "test", "openai"], None).await;
    r.assert_code(0);
    assert!(
        r.stdout.starts_with("ok: openai") && r.stdout.contains("2 models"),
        "{}",
        r.stdout
    );

    server.push(Reply::json(
        401,
        json!({"error": {"message": "Incorrect API key provided"}}),
    ));
    let r = zocalo(home.path(), &env, &["keys", "test", "openai"], None).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("rejected the API key") && r.stderr.contains("401"),
        "{}",
        r.stderr
    );

    server.push(Reply::json(
        200,
        json!({"data": [{"id": "claude-x", "type": "model"}], "has_more": false}),
    ));
    let r = zocalo(
        home.path(),
        &env,
        &["keys", "test", "anthropic", "--json"],
        None,
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.json()["ok"], true);
    assert_eq!(r.json()["source"], "vault");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "one request per test");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(reqs[2].path, "/v1/models");
    assert_eq!(reqs[2].headers["x-api-key"], ANTHROPIC_KEY);
    assert!(reqs[2].headers.contains_key("anthropic-version"));

    let r = zocalo(home.path(), &env, &["keys", "test", "groq"], None).await;
    r.assert_code(1);
    assert!(r.stderr.contains("zocalo keys set groq"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_list_asks_the_vendor_or_shows_the_registry() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let base = format!("{}/v1", server.url());
    let env = [
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("OPENAI_BASE_URL", base.as_str()),
    ];
    server.push(Reply::json(
        200,
        json!({"data": [{"id": "gpt-4o-mini"}, {"id": "gpt-live"}]}),
    ));
    let r = zocalo(
        home.path(),
        &env,
        &["models", "list", "--provider", "openai", "--json"],
        None,
    )
    .await;
    r.assert_code(0);
    assert_eq!(
        r.json(),
        json!([
            {"provider": "openai", "model": "gpt-4o-mini", "default": true, "source": "api"},
            {"provider": "openai", "model": "gpt-live", "default": false, "source": "api"},
        ])
    );
    // No key for groq: the registry's list, and a note saying why.
    let r = zocalo(
        home.path(),
        &env,
        &["models", "list", "--provider", "groq", "--json"],
        None,
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.json()[0]["source"], "registry");
    assert!(r.stderr.contains("GROQ_API_KEY"), "{}", r.stderr);

    let r = zocalo(home.path(), &env, &["models", "list", "--json"], None).await;
    r.assert_code(0);
    let all = r.json();
    for p in [
        "together",
        "mistral",
        "deepseek",
        "fireworks",
        "lmstudio",
        "anthropic",
        "ollama",
    ] {
        assert!(
            all.as_array()
                .unwrap()
                .iter()
                .any(|m| m["provider"] == p && m["default"] == true),
            "{p} missing"
        );
    }
    let r = zocalo(
        home.path(),
        &env,
        &["models", "list", "--provider", "nosuch"],
        None,
    )
    .await;
    r.assert_code(2);
    assert_eq!(server.requests().len(), 1);
}

/// The key bytes appear nowhere: not in stdout or stderr of any command (debug logging on),
/// not in any file in the data home (vault, database, logs).
#[tokio::test(flavor = "multi_thread")]
async fn keys_never_appear_in_output_logs_or_files() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let base = format!("{}/v1", server.url());
    let url = server.url();
    let mut env = pass_env();
    env.push(("OPENAI_BASE_URL", &base));
    env.push(("ANTHROPIC_BASE_URL", &url));
    // One key from the environment, two from the vault.
    env.push(("ANTHROPIC_API_KEY", ANTHROPIC_KEY));
    let mut runs = vec![
        set_key(home.path(), &env, "openai", OPENAI_KEY).await,
        set_key(home.path(), &env, "groq", GROQ_KEY).await,
    ];
    server.push(Reply::sse(openai_text_sse("gpt-test", &["fine"])));
    server.push(Reply::json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {OPENAI_KEY}")}}),
    ));
    server.push(Reply::sse(anthropic_text_sse("claude-test", &["ok"])));
    // A vendor echoing the key inside a stream error event.
    server.push(Reply::sse(format!(
        "event: error\ndata: {}\n\n",
        json!({"type": "error", "error": {"type": "authentication_error",
               "message": format!("invalid x-api-key {ANTHROPIC_KEY}")}})
    )));
    server.push(Reply::json(200, json!({"data": [{"id": "m"}]})));
    for args in [
        &["-vv", "ask", "--provider", "openai", "hello"][..],
        &["-vv", "ask", "--provider", "openai", "again"][..],
        &["-vv", "ask", "--provider", "anthropic", "--json", "hi"][..],
        &["-vv", "ask", "--provider", "anthropic", "hi"][..],
        &["-vv", "keys", "list"][..],
        &["-vv", "keys", "list", "--json"][..],
        &["-vv", "keys", "test", "openai"][..],
        &["-vv", "keys", "test", "groq"][..],
        &["-vv", "doctor"][..],
    ] {
        runs.push(zocalo(home.path(), &env, args, None).await);
    }
    assert!(runs[2].stdout.contains("fine"), "{}", runs[2].stderr);
    assert!(
        runs[2].stderr.contains("DEBUG"),
        "debug logging was on: {}",
        runs[2].stderr
    );
    assert_eq!(
        runs[3].code, 1,
        "the 401 echoing the key: {}",
        runs[3].stderr
    );
    assert_eq!(runs[5].code, 1, "{}", runs[5].stderr);
    assert!(
        runs[5].stderr.contains("invalid x-api-key [redacted]"),
        "the stream error echoing the key is shown, scrubbed: {}",
        runs[5].stderr
    );
    for (i, r) in runs.iter().enumerate() {
        for secret in [OPENAI_KEY, GROQ_KEY, ANTHROPIC_KEY, PASS] {
            assert!(
                !r.stdout.contains(secret),
                "run {i} stdout leaks: {}",
                r.stdout
            );
            assert!(
                !r.stderr.contains(secret),
                "run {i} stderr leaks: {}",
                r.stderr
            );
        }
    }
    let all = files(home.path());
    assert!(all.iter().any(|p| p.ends_with("vault.bin")));
    assert!(all.iter().any(|p| p.ends_with("zocalo.db")));
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        for secret in [OPENAI_KEY, GROQ_KEY, ANTHROPIC_KEY, PASS] {
            assert!(!contains(&bytes, secret), "{} holds a secret", f.display());
        }
    }
}

async fn fallback_answers_when_first_is_rate_limited(db: zocalo_testkit::db::TestDb) {
    let home = tempfile::tempdir().unwrap();
    let (first, second) = (FakeServer::start().await, FakeServer::start().await);
    // The first provider stays rate limited through all of its retries.
    for _ in 0..4 {
        first.push(
            Reply::json(429, json!({"error": {"message": "Rate limit reached"}}))
                .header("retry-after", "0"),
        );
    }
    second.push(Reply::sse(openai_text_sse(
        "second-model",
        &["answered by ", "the second"],
    )));
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "provider = \"openai\"\nfallback = [\"second\", \"local\"]\n\
             [providers.second]\nbase_url = \"{}/v1\"\nkey_env = \"SECOND_API_KEY\"\nmodels = [\"second-model\"]\n",
            second.url()
        ),
    )
    .unwrap();
    let base = format!("{}/v1", first.url());
    let url = db.url();
    let env = [
        ("OPENAI_BASE_URL", base.as_str()),
        ("ZOCALO_DATABASE_URL", url.as_str()),
        ("ZOCALO_VAULT_PASSPHRASE", PASS),
    ];
    set_key(home.path(), &env, "openai", OPENAI_KEY)
        .await
        .assert_code(0);
    set_key(home.path(), &env, "second", "second-key-0000000000")
        .await
        .assert_code(0);
    let r = zocalo(home.path(), &env, &["ask", "--json", "who answers?"], None).await;
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["text"], "answered by the second");
    assert_eq!(j["provider"], "second");
    assert_eq!(first.requests().len(), 4);
    let sent = second.requests();
    assert_eq!(
        sent[0].headers["authorization"],
        "Bearer second-key-0000000000"
    );
    assert_eq!(sent[0].body["model"], "second-model");

    let conv: ConversationId = j["conversation_id"].as_str().unwrap().parse().unwrap();
    let rows = db.store.messages(&conv).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].provider, None, "the user's turn has no provider");
    assert_eq!(rows[1].provider.as_deref(), Some("second"));
    assert_eq!(rows[1].model.as_deref(), Some("second-model"));

    // 401 is reported, not failed over.
    first.push(Reply::json(401, json!({"error": {"message": "bad key"}})));
    let r = zocalo(home.path(), &env, &["ask", "again"], None).await;
    r.assert_code(1);
    assert!(r.stderr.contains("rejected the API key"), "{}", r.stderr);
    assert_eq!(second.requests().len(), 1, "no failover on 401");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_chain_records_the_answering_provider_sqlite() {
    fallback_answers_when_first_is_rate_limited(zocalo_testkit::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_chain_records_the_answering_provider_postgres() {
    fallback_answers_when_first_is_rate_limited(zocalo_testkit::db::postgres().await).await;
}
