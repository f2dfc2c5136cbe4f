//! `zocalo ask` end to end as a process, against local servers speaking the real OpenAI and
//! Anthropic streaming wire formats. Asserts what the user sees and what was sent.

mod common;

use common::zocalo;
use serde_json::{json, Value};
use zocalo_testkit::fake::{
    anthropic_text_sse, anthropic_tool_use_sse, openai_text_sse, openai_tool_call_sse, FakeServer,
    Reply,
};

const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789abcdef";

async fn openai_env(server: &FakeServer) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI_BASE_URL", format!("{}/v1", server.url())),
        ("OPENAI_API_KEY", OPENAI_KEY.to_string()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_streams_answer_and_sends_system_prompt() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["Hel", "lo ", "there."],
    )));
    let env = openai_env(&server).await;
    let run = zocalo(
        home.path(),
        &env_refs(&env),
        &["ask", "--provider", "openai", "Say hello"],
    )
    .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "Hello there.\n");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.headers["authorization"], format!("Bearer {OPENAI_KEY}"));
    assert_eq!(r.body["stream"], true);
    let msgs = r.body["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert!(msgs[0]["content"].as_str().unwrap().contains("zocalo"));
    assert_eq!(msgs.last().unwrap()["content"], "Say hello");
    let tools: Vec<&str> = r.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"current_time"), "{tools:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conv_continues_with_history_and_json_output() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["Nice to meet you, Ada."],
    )));
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["Your name is Ada."],
    )));
    let env = openai_env(&server).await;
    let env = env_refs(&env);

    let first = zocalo(
        home.path(),
        &env,
        &["ask", "--json", "--provider", "openai", "I am Ada"],
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let j = first.json();
    assert_eq!(j["text"], "Nice to meet you, Ada.");
    assert_eq!(j["new_conversation"], true);
    let conv = j["conversation_id"].as_str().unwrap().to_owned();
    assert!(conv.starts_with("conv_"));

    let second = zocalo(
        home.path(),
        &env,
        &[
            "ask",
            "--provider",
            "openai",
            "--conv",
            &conv,
            "--json",
            "What is my name?",
        ],
    )
    .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.json()["conversation_id"], conv.as_str());
    assert_eq!(second.json()["new_conversation"], false);

    let reqs = server.requests();
    let msgs: Vec<(String, String)> = reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        msgs[1..],
        [
            ("user".to_owned(), "I am Ada".to_owned()),
            ("assistant".to_owned(), "Nice to meet you, Ada.".to_owned()),
            ("user".to_owned(), "What is my name?".to_owned()),
        ]
    );

    let show = zocalo(
        home.path(),
        &[],
        &["conversations", "show", &conv, "--json"],
    )
    .await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(show.json()["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_tool_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_abc123",
        "current_time",
        r#"{"timezone":"Europe/Paris"}"#,
    )));
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["It is late in Paris."],
    )));
    let env = openai_env(&server).await;
    let before = chrono::Utc::now();
    let run = zocalo(
        home.path(),
        &env_refs(&env),
        &["ask", "--provider", "openai", "--json", "Time in Paris?"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["text"], "It is late in Paris.");
    assert_eq!(j["steps"], 2);
    assert_eq!(j["tool_calls"][0]["name"], "current_time");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let call_msg = &msgs[msgs.len() - 2];
    assert_eq!(call_msg["role"], "assistant");
    assert_eq!(call_msg["tool_calls"][0]["id"], "call_abc123");
    let result = msgs.last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_abc123");
    let content = result["content"].as_str().unwrap();
    assert!(content.contains("Europe/Paris"), "{content}");
    // The tool really ran: its answer starts with the current date in Paris (taken before and
    // after the run, in case midnight passed in between).
    let paris = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&chrono_tz::Europe::Paris)
            .format("%Y-%m-%d")
            .to_string()
    };
    assert!(
        content.starts_with(&paris(before)) || content.starts_with(&paris(chrono::Utc::now())),
        "{content}"
    );

    let conv = j["conversation_id"].as_str().unwrap();
    let show = zocalo(home.path(), &[], &["conversations", "show", conv, "--json"]).await;
    let roles: Vec<Value> = show.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"]["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [
            json!("user"),
            json!("assistant"),
            json!("tool"),
            json!("assistant")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_tool_round_trip_and_headers() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::sse(anthropic_tool_use_sse(
        "claude-test",
        "toolu_01A",
        "current_time",
        r#"{"timezone":"Asia/Tokyo"}"#,
    )));
    server.push(Reply::sse(anthropic_text_sse(
        "claude-test",
        &["Tokyo ", "is ahead."],
    )));
    let env = [
        ("ANTHROPIC_BASE_URL", server.url()),
        ("ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_string()),
    ];
    let run = zocalo(
        home.path(),
        &env_refs(&env),
        &["ask", "--provider", "anthropic", "Time in Tokyo?"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "Tokyo is ahead.\n");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers["x-api-key"], ANTHROPIC_KEY);
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(r.body["system"].as_str().unwrap().contains("zocalo"));
        assert!(r.body["max_tokens"].as_u64().unwrap() > 0);
    }
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let last = msgs.last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][0]["tool_use_id"], "toolu_01A");
    let assistant = &msgs[msgs.len() - 2];
    assert_eq!(
        assistant["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap()["id"],
        "toolu_01A"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_stream_fails_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let body = openai_text_sse(
        "gpt-test",
        &["This answer ", "will be cut ", "before the end."],
    );
    let cut = body.find("will be cut").unwrap() + 20;
    server.push(Reply::sse(body).cut_after(cut));
    let env = openai_env(&server).await;
    let run = zocalo(
        home.path(),
        &env_refs(&env),
        &["ask", "--provider", "openai", "Tell me"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cut"), "{}", run.stderr);
    let list = zocalo(home.path(), &[], &["conversations", "list", "--json"]).await;
    assert_eq!(list.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_key_is_never_shown() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::json(401, json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})));
    let env = openai_env(&server).await;
    let run = zocalo(
        home.path(),
        &env_refs(&env),
        &["ask", "-vv", "--provider", "openai", "hi"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Incorrect API key"), "{}", run.stderr);
    assert!(!run.stderr.contains("0123456789abcdef") && !run.stdout.contains("0123456789abcdef"));
    assert_eq!(server.requests().len(), 1, "401 must not be retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let env = openai_env(&server).await;
    let env = env_refs(&env);
    let cases: &[(&[&str], &str)] = &[
        (&["ask", "--provider", "openai", "   "], "empty"),
        (&["ask", "--provider", "nosuch", "hi"], "anthropic"),
        (
            &[
                "ask",
                "--provider",
                "openai",
                "--conv",
                "conv_doesnotexist",
                "hi",
            ],
            "conv_doesnotexist",
        ),
        (
            &["ask", "--provider", "openai", "--conv", "not-an-id", "hi"],
            "not-an-id",
        ),
        (
            &[
                "ask",
                "--provider",
                "openai",
                "--database-url",
                "mysql://u:hunter2@h/db",
                "hi",
            ],
            "mysql",
        ),
        (&["ask"], "MESSAGE"),
    ];
    for (args, needle) in cases {
        let run = zocalo(home.path(), &env, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
    assert!(
        server.requests().is_empty(),
        "bad input must not reach the provider"
    );
    // Nothing written: the only file that may exist is the database of the --conv check.
    let list = zocalo(home.path(), &[], &["conversations", "list", "--json"]).await;
    assert_eq!(list.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_and_unreachable_postgres_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let run = zocalo(home.path(), &[], &["ask", "--provider", "groq", "hi"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("GROQ_API_KEY") && run.stderr.contains("zocalo keys set groq"),
        "{}",
        run.stderr
    );

    let env = [("OPENAI_API_KEY", "k")];
    let run = zocalo(
        home.path(),
        &env,
        &[
            "ask",
            "--provider",
            "openai",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/test",
            "hi",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_on_postgres_backend() {
    let home = tempfile::tempdir().unwrap();
    let db = zocalo_testkit::db::postgres().await;
    let url = db.url().to_owned();
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["Stored in Postgres."],
    )));
    server.push(Reply::sse(openai_text_sse("gpt-test", &["Still there."])));
    let mut env = openai_env(&server).await;
    env.push(("ZOCALO_DATABASE_URL", url));
    let env = env_refs(&env);
    let first = zocalo(
        home.path(),
        &env,
        &["ask", "--provider", "openai", "--json", "hello"],
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let conv = first.json()["conversation_id"].as_str().unwrap().to_owned();
    let second = zocalo(
        home.path(),
        &env,
        &["ask", "--provider", "openai", "--conv", &conv, "again"],
    )
    .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let history = server.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(history, 4, "system + user + assistant + user");
    assert!(
        !home.path().join("zocalo.db").exists(),
        "no SQLite file when a URL is given"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_keeps_one_conversation_and_streams_answers() {
    use tokio::io::AsyncWriteExt;
    let home = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_text_sse("gpt-test", &["Hi ", "Ada."])));
    server.push(Reply::sse(openai_text_sse("gpt-test", &["You are Ada."])));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in [
        "ANTHROPIC_API_KEY",
        "ZOCALO_PROVIDER",
        "ZOCALO_DATABASE_URL",
        "ZOCALO_LOG",
    ] {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .env("ZOCALO_HOME", home.path())
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .args(["chat", "--provider", "openai"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"I am Ada\n\nWho am I?\n/exit\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Hi Ada.") && stdout.contains("You are Ada."),
        "{stdout}"
    );
    // The blank line is skipped; the second question continues the first conversation.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    assert_eq!(
        msgs.len(),
        4,
        "system + first exchange + second question: {msgs:?}"
    );
    assert_eq!(msgs[1]["content"], "I am Ada");
    let list = zocalo(home.path(), &[], &["conversations", "list", "--json"]).await;
    let convs = list.json();
    assert_eq!(convs.as_array().unwrap().len(), 1, "{convs}");
    assert_eq!(convs[0]["messages"], 4);
}
