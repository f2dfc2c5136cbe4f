//! Channels end to end, with real processes: the daemon answers Telegram through a local Bot
//! API server speaking the documented JSON (allowlist, long answers split, slash commands,
//! restarts, 429, 409, kill -9 mid-answer), `zocalo serve` takes signed webhooks, automations
//! deliver their answers, and `zocalo notify` sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{zdb, zocalo};
use serde_json::{json, Value};
use zocalo_channels::webhook;
use zocalo_testkit::fake::{openai_text_sse, FakeServer, RecordedRequest, Reply};
use zocalo_testkit::telegram::{FakeTelegram, TOKEN};

const OWNER: i64 = 42;
const STRANGER: i64 = 99;

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

fn env(llm: &FakeServer, tg: &FakeTelegram) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI_BASE_URL", format!("{}/v1", llm.url())),
        ("OPENAI_API_KEY", "sk-test-0123456789".to_owned()),
        ("ZOCALO_PROVIDER", "openai".to_owned()),
        ("ZOCALO_EMBEDDER", "none".to_owned()),
        ("TELEGRAM_BOT_TOKEN", TOKEN.to_owned()),
        ("TELEGRAM_API_BASE", tg.url()),
    ]
}

fn write_config(home: &Path, toml: &str) {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("config.toml"), toml).unwrap();
}

/// The last user message of a chat completion request.
fn last_user(r: &RecordedRequest) -> String {
    r.body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The model answers "echo: <the message>", or a 9,000-character story when asked for one.
fn echo_model(llm: &FakeServer) {
    llm.respond_with(|r| {
        let msg = last_user(r);
        let answer = if msg.contains("long story") {
            (0..90)
                .map(|i| format!("Paragraph {i}: {}", "once upon a time ".repeat(5)))
                .collect::<Vec<_>>()
                .join("\n\n")
        } else {
            format!("echo: {msg}")
        };
        Reply::sse(openai_text_sse("gpt-test", &[&answer]))
    });
}

async fn conversations(
    db: &zocalo_testkit::db::TestDb,
    home: &Path,
    env: &[(&str, String)],
) -> Vec<Value> {
    let r = zdb(db, home, env, &["conversations", "list", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json().as_array().cloned().unwrap_or_default()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

both!(
    telegram_answers_the_allowlist_refuses_the_rest_and_survives_a_restart,
    |db, home| async move {
        let llm = FakeServer::start().await;
        echo_model(&llm);
        let tg = FakeTelegram::start().await;
        let env = env(&llm, &tg);
        write_config(home, &format!("[channels.telegram]\nallow = [{OWNER}]\n"));
        let _daemon = Daemon(home.to_path_buf());
        let r = zdb(db, home, &env, &["daemon", "start"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let wait = Duration::from_secs(30);

        // The owner is answered, as a reply to their message, after "typing".
        tg.push_text(OWNER, "hello there");
        tg.wait_for("the first answer", wait, |t| t.sent_to(OWNER).len() == 1)
            .await;
        assert_eq!(tg.sent_to(OWNER), vec!["echo: hello there"]);
        let first = &tg.sent()[0];
        assert!(
            first["reply_parameters"]["message_id"].as_i64().is_some(),
            "{first}"
        );
        assert!(tg
            .actions()
            .iter()
            .any(|a| a["chat_id"] == OWNER && a["action"] == "typing"));

        // A stranger gets one short refusal; the model never sees them, nothing is stored.
        tg.push_text(STRANGER, "let me in");
        tg.wait_for("the refusal", wait, |t| t.sent_to(STRANGER).len() == 1)
            .await;
        assert_eq!(
            tg.sent_to(STRANGER),
            vec!["Sorry, this is a private assistant."]
        );
        assert_eq!(llm.requests().len(), 1);
        assert_eq!(conversations(db, home, &env).await.len(), 1);

        // A long answer comes in pieces Telegram accepts (its server refuses > 4096), in order.
        tg.push_text(OWNER, "tell me a long story");
        tg.wait_for("the long answer", wait, |t| {
            t.sent_to(OWNER).iter().any(|m| m.contains("Paragraph 89"))
        })
        .await;
        let pieces: Vec<String> = tg.sent_to(OWNER)[1..].to_vec();
        assert!(pieces.len() >= 3, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.encode_utf16().count() <= 4096));
        let story: String = (0..90)
            .map(|i| format!("Paragraph {i}: {}", "once upon a time ".repeat(5)))
            .collect();
        assert_eq!(squeeze(&pieces.concat()), squeeze(&story));
        let sent_before = tg.sent_to(OWNER).len();

        // The conversation goes on (the model saw the earlier turn), then /new starts another.
        tg.push_text(OWNER, "/status");
        tg.wait_for("/status", wait, |t| {
            t.sent_to(OWNER).len() == sent_before + 1
        })
        .await;
        let status = tg.sent_to(OWNER).last().cloned().unwrap();
        assert!(status.contains("Messages: 4"), "{status}");
        tg.push_text(OWNER, "/new");
        tg.wait_for("/new", wait, |t| t.sent_to(OWNER).len() == sent_before + 2)
            .await;
        assert_eq!(
            tg.sent_to(OWNER).last().unwrap(),
            "Started a new conversation."
        );
        tg.push_text(OWNER, "fresh start");
        tg.wait_for("the answer after /new", wait, |t| {
            t.sent_to(OWNER)
                .last()
                .is_some_and(|m| m == "echo: fresh start")
        })
        .await;
        let last = llm.requests().last().cloned().unwrap();
        let history = last.body["messages"].to_string();
        assert!(
            !history.contains("hello there"),
            "/new kept the old turns: {history}"
        );
        assert_eq!(conversations(db, home, &env).await.len(), 2);
        // Commands never reached the model.
        assert_eq!(llm.requests().len(), 3);

        // Restart: what was answered is not answered again; what came while the daemon was
        // down is answered once.
        let r = zdb(db, home, &env, &["daemon", "stop"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let sent = tg.sent_to(OWNER).len();
        tg.push_text(OWNER, "while you were away");
        let r = zdb(db, home, &env, &["daemon", "start"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        tg.wait_for("the answer after the restart", wait, |t| {
            t.sent_to(OWNER).len() == sent + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            tg.sent_to(OWNER).len(),
            sent + 1,
            "{:#?}",
            tg.sent_to(OWNER)
        );
        assert_eq!(
            tg.sent_to(OWNER).last().unwrap(),
            "echo: while you were away"
        );
        assert_eq!(llm.requests().len(), 4);
        // Every update was confirmed by a later offset.
        tg.wait_for("the offsets to move on", wait, |t| t.unconfirmed() == 0)
            .await;

        let st = zdb(db, home, &env, &["channels", "status", "--json"]).await;
        assert_eq!(st.code, 0, "{}", st.stderr);
        let tele = st.json()[0].clone();
        assert_eq!(tele["name"], "telegram");
        assert_eq!(tele["ready"], true);
        // Six messages from the owner, each sent; the stranger's is not stored.
        assert_eq!(tele["messages"]["sent"], 6, "{tele:#}");
    }
);

/// Waits until the daemon's pid file names a running process; returns the pid.
async fn daemon_pid(db: &zocalo_testkit::db::TestDb, home: &Path, env: &[(&str, String)]) -> i32 {
    let r = zdb(db, home, env, &["daemon", "status", "--json"]).await;
    let v = r.json();
    assert_eq!(v["running"], true, "{v}");
    v["pid"].as_i64().unwrap() as i32
}

both!(
    a_batch_cut_by_kill_9_is_answered_once_each_after_the_restart,
    |db, home| async move {
        let llm = FakeServer::start().await;
        // Three messages come in one batch. The first is answered; the daemon is killed
        // while the second's answer is being made (a slow model); the third waits.
        llm.push(Reply::sse(openai_text_sse("gpt-test", &["answer one"])));
        llm.push(
            Reply::sse(openai_text_sse("gpt-test", &["too late"])).delay(Duration::from_secs(20)),
        );
        llm.push(Reply::sse(openai_text_sse("gpt-test", &["answer two"])));
        llm.push(Reply::sse(openai_text_sse("gpt-test", &["answer three"])));
        let tg = FakeTelegram::start().await;
        let env = env(&llm, &tg);
        write_config(home, &format!("[channels.telegram]\nallow = [{OWNER}]\n"));
        for m in ["one?", "two?", "three?"] {
            tg.push_text(OWNER, m);
        }
        let _daemon = Daemon(home.to_path_buf());
        assert_eq!(zdb(db, home, &env, &["daemon", "start"]).await.code, 0);
        let start = Instant::now();
        while !(llm.requests().len() == 2 && llm.in_flight() == 1) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the second message was never being answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = daemon_pid(db, home, &env).await;
        nix_kill(pid);
        let start = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tg.sent_to(OWNER), vec!["answer one"]);
        let r = zdb(db, home, &env, &["daemon", "start"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        tg.wait_for("the answers after kill -9", Duration::from_secs(30), |t| {
            t.sent_to(OWNER).len() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            tg.sent_to(OWNER),
            vec!["answer one", "answer two", "answer three"]
        );
        assert_eq!(llm.requests().len(), 4);
        // One conversation with three turns: the killed attempt stored nothing.
        let convs = conversations(db, home, &env).await;
        assert_eq!(convs.len(), 1, "{convs:#?}");
        assert_eq!(convs[0]["messages"], 6, "{convs:#?}");
    }
);

fn nix_kill(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_rate_limits_are_waited_out_and_a_second_poller_is_reported() {
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let llm = FakeServer::start().await;
    echo_model(&llm);
    let tg = FakeTelegram::start().await;
    let env = env(&llm, &tg);
    write_config(home, &format!("[channels.telegram]\nallow = [{OWNER}]\n"));
    // The first poll is told to wait 2 s, the second that another program polls the bot.
    tg.fail_next(
        "getUpdates",
        429,
        "Too Many Requests: retry after 2",
        Some(json!({"retry_after": 2})),
    );
    tg.fail_next(
        "getUpdates",
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        None,
    );
    // And the first reply is rate limited too.
    tg.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        Some(json!({"retry_after": 1})),
    );
    let _daemon = Daemon(home.to_path_buf());
    assert_eq!(zdb(&db, home, &env, &["daemon", "start"]).await.code, 0);
    tg.push_text(OWNER, "are you there?");
    let wait = Duration::from_secs(40);
    // The 409 is reported where the owner looks.
    let start = Instant::now();
    loop {
        let st = zdb(&db, home, &env, &["channels", "status"]).await;
        if st
            .stdout
            .contains("another program is taking this bot's updates")
        {
            break;
        }
        assert!(start.elapsed() < wait, "409 not reported: {}", st.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tg.wait_for("the answer", wait, |t| t.sent_to(OWNER).len() == 1)
        .await;
    assert_eq!(tg.sent_to(OWNER), vec!["echo: are you there?"]);
    let calls = tg.calls();
    let polls: Vec<&(String, Value)> = calls.iter().filter(|(m, _)| m == "getUpdates").collect();
    assert!(polls.len() >= 3, "{polls:?}");
    // Two sendMessage calls: the refused one, then the one that went through.
    let sends = calls.iter().filter(|(m, _)| m == "sendMessage").count();
    assert_eq!(sends, 2);
    drop(_daemon);
    db.cleanup().await;
}

both!(
    webhooks_are_checked_answered_once_and_delivered,
    |db, home| async move {
        let llm = FakeServer::start().await;
        echo_model(&llm);
        let tg = FakeTelegram::start().await;
        let mut env = env(&llm, &tg);
        env.push(("ZOCALO_HOOK_DEPLOY", "hook-secret".to_owned()));
        write_config(
            home,
            &format!(
                "[channels.telegram]\nallow = [{OWNER}]\n\n[hooks.deploy]\nprompt = \"A deploy finished: {{body}}\"\ndeliver = \"telegram:{OWNER}\"\n\n[hooks.nosecret]\n"
            ),
        );
        let server = serve_support::start(home, Some(&db.url()), &env).await;
        let body = br#"{"service":"api","status":"ok"}"#.to_vec();
        let now = chrono::Utc::now().timestamp();
        let signed = |ts: i64, secret: &[u8]| webhook::sign(secret, ts, &body);
        let post = |name: &str, sig: Option<String>, ts: i64| {
            let mut r = server
                .client()
                .post(format!("{}/hooks/{name}", server.url))
                .body(body.clone());
            if let Some(s) = sig {
                r = r
                    .header(webhook::SIGNATURE_HEADER, s)
                    .header(webhook::TIMESTAMP_HEADER, ts.to_string());
            }
            r.send()
        };
        // Unsigned, wrongly signed, stale, unknown, secretless: refused.
        assert_eq!(post("deploy", None, now).await.unwrap().status(), 401);
        assert_eq!(
            post("deploy", Some(signed(now, b"wrong")), now)
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            post("deploy", Some(signed(now - 600, b"hook-secret")), now - 600)
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            post("nope", Some(signed(now, b"hook-secret")), now)
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            post("nosecret", Some(signed(now, b"")), now)
                .await
                .unwrap()
                .status(),
            401
        );
        assert!(llm.requests().is_empty());
        // Signed: taken (without the server's bearer token), answered, delivered once.
        let ok = post("deploy", Some(signed(now, b"hook-secret")), now)
            .await
            .unwrap();
        assert_eq!(ok.status(), 202);
        let id = ok.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(id.starts_with("inb_"), "{id}");
        // The same request again is a replay.
        let again = post("deploy", Some(signed(now, b"hook-secret")), now)
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        tg.wait_for("the hook's answer", Duration::from_secs(30), |t| {
            t.sent_to(OWNER).len() == 1
        })
        .await;
        assert_eq!(
            tg.sent_to(OWNER),
            vec![format!(
                "echo: A deploy finished: {}",
                String::from_utf8_lossy(&body)
            )]
        );
        assert_eq!(llm.requests().len(), 1);
        // GitHub's scheme works too, with its delivery id.
        let gh = server
            .client()
            .post(format!("{}/hooks/deploy", server.url))
            .header(
                webhook::GITHUB_SIGNATURE_HEADER,
                webhook::sign_github(b"hook-secret", &body),
            )
            .header(
                webhook::GITHUB_DELIVERY_HEADER,
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(gh.status(), 202);
        tg.wait_for("the second answer", Duration::from_secs(30), |t| {
            t.sent_to(OWNER).len() == 2
        })
        .await;
        server.stop().await;
    }
);

both!(
    automations_deliver_their_answers_and_keep_one_conversation,
    |db, home| async move {
        let llm = FakeServer::start().await;
        echo_model(&llm);
        let tg = FakeTelegram::start().await;
        // A webhook receiver that checks the signature, and one that is down.
        let sink = FakeServer::start().await;
        sink.respond_with(|_| Reply::json(200, json!({"ok": true})));
        let down = FakeServer::start().await;
        down.respond_with(|_| Reply::json(503, json!({"error": "maintenance"})));
        let mut env = env(&llm, &tg);
        env.push(("ZOCALO_HOOK_SINK", "sink-secret".to_owned()));
        write_config(
            home,
            &format!(
                "[channels.telegram]\nallow = [{OWNER}]\n\n[hooks.sink]\nurl = \"{}/in\"\n\n[hooks.down]\nurl = \"{}/in\"\n",
                sink.url(),
                down.url()
            ),
        );
        let _daemon = Daemon(home.to_path_buf());
        let start = (chrono::Utc::now() + chrono::Duration::seconds(2))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        for (name, target) in [
            ("to-telegram", format!("telegram:{OWNER}")),
            ("to-sink", "webhook:sink".to_owned()),
            ("to-down", "webhook:down".to_owned()),
        ] {
            let r = zdb(
                db,
                home,
                &env,
                &[
                    "schedule",
                    "add",
                    name,
                    "--rrule",
                    "FREQ=SECONDLY;INTERVAL=4;COUNT=2",
                    "--start",
                    &start,
                    "--tz",
                    "UTC",
                    "--ask",
                    &format!("report for {name}"),
                    "--deliver",
                    &target,
                ],
            )
            .await;
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        // A malformed target is refused when the automation is made.
        let bad = zdb(
            db,
            home,
            &env,
            &[
                "schedule",
                "add",
                "bad",
                "--rrule",
                "FREQ=DAILY",
                "--start",
                &start,
                "--tz",
                "UTC",
                "--ask",
                "x",
                "--deliver",
                "sms:123",
            ],
        )
        .await;
        assert_eq!(bad.code, 2, "{}", bad.stderr);
        assert!(bad.stderr.contains("unknown channel"), "{}", bad.stderr);

        assert_eq!(zdb(db, home, &env, &["daemon", "start"]).await.code, 0);
        tg.wait_for("two deliveries to Telegram", Duration::from_secs(40), |t| {
            t.sent_to(OWNER).len() == 2
        })
        .await;
        assert!(tg
            .sent_to(OWNER)
            .iter()
            .all(|m| m == "echo: report for to-telegram"));
        // Each run of an automation continues its own conversation: the second run's request
        // carried the first run's turn.
        let second = llm
            .requests()
            .into_iter()
            .filter(|r| last_user(r) == "report for to-telegram")
            .nth(1)
            .unwrap();
        let user_turns = second.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .count();
        assert_eq!(user_turns, 2, "{}", second.body);

        // The sink got signed deliveries it can check.
        let start_wait = Instant::now();
        while sink.requests().len() < 2 {
            assert!(
                start_wait.elapsed() < Duration::from_secs(30),
                "sink got {:?}",
                sink.requests()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for r in sink.requests() {
            let body = serde_json::to_vec(&r.body).unwrap();
            let header = |h: &str| r.headers.get(h).cloned();
            // The body is re-serialised from JSON here: compare what was signed against the
            // canonical form the deliverer sends (serde_json, no spaces).
            assert!(
                webhook::verify(
                    b"sink-secret",
                    header,
                    &body,
                    chrono::Utc::now().timestamp()
                )
                .is_ok(),
                "bad signature on {r:?}"
            );
            assert_eq!(r.body["text"], "echo: report for to-sink");
        }

        // The failing delivery shows in `schedule runs`, with the receiver's answer.
        let start_wait = Instant::now();
        loop {
            let runs = zdb(db, home, &env, &["schedule", "runs", "to-down", "--json"])
                .await
                .json();
            let d = runs
                .as_array()
                .and_then(|a| a.iter().find_map(|r| r.get("delivery").cloned()));
            if let Some(d) = d {
                if d["error"].as_str().is_some_and(|e| e.contains("503")) {
                    assert_eq!(d["target"], "webhook:down");
                    assert_ne!(d["status"], "succeeded");
                    break;
                }
            }
            assert!(
                start_wait.elapsed() < Duration::from_secs(30),
                "no failed delivery: {runs:#}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let runs = zdb(
            db,
            home,
            &env,
            &["schedule", "runs", "to-telegram", "--json"],
        )
        .await
        .json();
        assert!(
            runs.as_array()
                .unwrap()
                .iter()
                .all(|r| r["delivery"]["status"] == "succeeded"),
            "{runs:#}"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_sends_now_and_refuses_bad_targets() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let llm = FakeServer::start().await;
    let tg = FakeTelegram::start().await;
    let env = env(&llm, &tg);
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Without [channels.telegram] the user is told what to add.
    let r = zocalo(home, &envs, &["notify", &format!("telegram:{OWNER}"), "hi"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("[channels.telegram]"), "{}", r.stderr);
    write_config(home, &format!("[channels.telegram]\nallow = [{OWNER}]\n"));
    let r = zocalo(
        home,
        &envs,
        &[
            "notify",
            &format!("telegram:{OWNER}"),
            "the",
            "build",
            "passed",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tg.sent_to(OWNER), vec!["the build passed"]);
    for bad in ["sms:1", "telegram:abc", "email:nobody", "webhook:nohook"] {
        let r = zocalo(home, &envs, &["notify", bad, "x"]).await;
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
    }
    // A wrong token: `channels test` says so; no token at all: told where to put it.
    let r = zocalo(
        home,
        &[
            ("TELEGRAM_API_BASE", tg.url().as_str()),
            ("TELEGRAM_BOT_TOKEN", "1:wrong"),
        ],
        &["channels", "test", "telegram"],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("refused the bot token"), "{}", r.stderr);
    let r = zocalo(home, &envs, &["channels", "test", "telegram"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("@zocalo_test_bot"), "{}", r.stdout);
    let r = zocalo(
        home,
        &[("TELEGRAM_API_BASE", tg.url().as_str())],
        &["channels", "list"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("NOT READY") && r.stdout.contains("TELEGRAM_BOT_TOKEN"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_and_a_model_are_kept_by_the_conversation() {
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let llm = FakeServer::start().await;
    echo_model(&llm);
    let tg = FakeTelegram::start().await;
    let env = env(&llm, &tg);
    write_config(
        home,
        &format!(
            "[channels.telegram]\nallow = [{OWNER}]\npersona = \"butler\"\n\n\
             [personas.butler]\nsystem_prompt = \"You are a discreet butler.\"\n\n\
             [personas.pirate]\nsystem_prompt = \"You talk like a pirate.\"\n"
        ),
    );
    let system_of = |r: &RecordedRequest| r.body["messages"][0]["content"].to_string();

    // The CLI: a persona given once is kept by the conversation of the key.
    let r = zdb(
        &db,
        home,
        &env,
        &["ask", "--conv-key", "notes", "--persona", "pirate", "hi"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = zdb(
        &db,
        home,
        &env,
        &["ask", "--conv-key", "notes", "and again"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reqs = llm.requests();
    assert!(
        system_of(&reqs[1]).contains("like a pirate"),
        "{}",
        system_of(&reqs[1])
    );
    // Another conversation is not affected.
    let r = zdb(&db, home, &env, &["ask", "--conv-key", "other", "hello"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!system_of(&llm.requests()[2]).contains("pirate"));
    // An unknown persona is refused before anything is stored.
    let r = zdb(
        &db,
        home,
        &env,
        &["ask", "--conv-key", "x", "--persona", "ghost", "hi"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ghost"), "{}", r.stderr);
    // Nor is a new key's conversation created by an ask whose provider does not exist.
    let r = zdb(
        &db,
        home,
        &env,
        &["ask", "--conv-key", "y", "--provider", "nosuch", "hi"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(conversations(&db, home, &env).await.len(), 2);

    // Telegram: the channel's persona, then one chosen with /persona, then a model.
    let _daemon = Daemon(home.to_path_buf());
    assert_eq!(zdb(&db, home, &env, &["daemon", "start"]).await.code, 0);
    let wait = Duration::from_secs(30);
    let mut expect = 0;
    let mut say = |text: &str| {
        tg.push_text(OWNER, text);
        expect += 1;
        expect
    };
    let n = say("good evening");
    tg.wait_for("an answer", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    assert!(system_of(llm.requests().last().unwrap()).contains("discreet butler"));
    let n = say("/persona ghost");
    tg.wait_for("/persona ghost", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    let refusal = tg.sent_to(OWNER).last().cloned().unwrap();
    assert!(
        refusal.contains("ghost") && refusal.contains("pirate"),
        "{refusal}"
    );
    let n = say("/persona pirate");
    tg.wait_for("/persona pirate", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    let n = say("/model openai:gpt-other");
    tg.wait_for("/model", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    assert_eq!(
        tg.sent_to(OWNER).last().unwrap(),
        "This conversation now uses openai:gpt-other."
    );
    let n = say("ahoy?");
    tg.wait_for("the pirate's answer", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    let last = llm.requests().last().cloned().unwrap();
    assert!(
        system_of(&last).contains("like a pirate"),
        "{}",
        system_of(&last)
    );
    assert_eq!(last.body["model"], "gpt-other");
    let n = say("/status");
    tg.wait_for("/status", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    let status = tg.sent_to(OWNER).last().cloned().unwrap();
    assert!(
        status.contains("Persona: pirate") && status.contains("gpt-other"),
        "{status}"
    );
    let n = say("/persona none");
    tg.wait_for("/persona none", wait, |t| t.sent_to(OWNER).len() == n)
        .await;
    assert_eq!(
        tg.sent_to(OWNER).last().unwrap(),
        "Back to this channel's persona, butler."
    );
    drop(_daemon);
    db.cleanup().await;
}

both!(
    the_daemon_answers_mail_with_a_threaded_reply,
    |db, home| async move {
        const BOT: &str = "bot@example.org";
        const BOSS: &str = "boss@example.org";
        let Some(mail) = zocalo_testkit::mail::start_or_skip(
            "the_daemon_answers_mail_with_a_threaded_reply",
            &[(BOT, "bot-secret"), (BOSS, "boss-secret")],
        )
        .await
        else {
            return;
        };
        let llm = FakeServer::start().await;
        echo_model(&llm);
        let tg = FakeTelegram::start().await;
        let mut env = env(&llm, &tg);
        env.push(("ZOCALO_EMAIL_PASSWORD", "bot-secret".to_owned()));
        write_config(
            home,
            &format!(
                "[channels.email]\nimap = \"{}\"\nsmtp = \"{}\"\nuser = \"{BOT}\"\nallow = [\"{BOSS}\"]\npoll_seconds = 1\n",
                mail.imap_url(),
                mail.smtp_url()
            ),
        );
        let r = zdb(db, home, &env, &["channels", "test", "email"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let _daemon = Daemon(home.to_path_buf());
        assert_eq!(zdb(db, home, &env, &["daemon", "start"]).await.code, 0);
        // Mail already in the box when the channel first looks is not answered: wait until
        // it has looked (its position is recorded), then write.
        let start = Instant::now();
        loop {
            let st = zdb(db, home, &env, &["channels", "status", "--json"])
                .await
                .json();
            if st[0]["position"].is_string() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the mailbox was never read: {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let raw = format!(
            "From: Boss <{BOSS}>\r\nTo: {BOT}\r\nSubject: Quarterly numbers\r\n\
             Message-ID: <q1@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHow did we do?\r\n"
        );
        mail.send_raw(BOSS, BOT, raw.as_bytes()).await.unwrap();
        let start = Instant::now();
        let reply = loop {
            if let Some(m) = mail.delivered(BOSS).into_iter().next() {
                break m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "no reply; llm saw {:?}\n{}",
                llm.requests().iter().map(last_user).collect::<Vec<_>>(),
                mail.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let unfolded = reply.replace("\r\n ", " ").replace("\r\n\t", " ");
        assert!(
            unfolded.contains("Subject: Re: Quarterly numbers"),
            "{unfolded}"
        );
        assert!(
            unfolded.contains("In-Reply-To: <q1@example.org>"),
            "{unfolded}"
        );
        assert!(
            unfolded.contains("References: <q1@example.org>"),
            "{unfolded}"
        );
        assert!(unfolded.contains("echo: How did we do?"), "{unfolded}");
        // The conversation is the sender's.
        let convs = conversations(db, home, &env).await;
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0]["title"], format!("email:{BOSS}"), "{convs:#?}");
        // Answered once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(mail.delivered(BOSS).len(), 1);
        assert_eq!(llm.requests().len(), 1);
    }
);
