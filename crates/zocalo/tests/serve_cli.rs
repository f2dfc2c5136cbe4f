//! `zocalo serve` as a process on loopback: the token, bad input as JSON 4xx, the official
//! OpenAI Python client against /v1 with a fake upstream provider speaking the real OpenAI
//! wire format, and the REST API on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use serde_json::{json, Value};
use serve_support::{start, tool, Server, TOKEN};
use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply, FAKE_INPUT_TOKENS};

fn upstream_env(fake: &FakeServer) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
        ("OPENAI_API_KEY", "sk-upstream-0123456789".to_owned()),
        ("ZOCALO_PROVIDER", "openai".to_owned()),
    ]
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e})"));
    assert!(ct.starts_with("application/json"), "{status}: {ct}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_chats_through_the_ask_loop_and_pass_through() {
    let Some(python) = tool("ZOCALO_TEST_PYTHON") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Hel", "lo!"])));
    fake.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["One, ", "two, ", "three."],
    )));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Brief hi."])));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Hi ", "again."])));
    let server = start(home.path(), None, &upstream_env(&fake)).await;

    let out = tokio::process::Command::new(&python)
        .arg(serve_support::clients_dir().join("openai_v1.py"))
        .args([&format!("{}/v1", server.url), TOKEN, "chat"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(models.contains(&"zocalo"), "{models:?}");
    assert!(
        models.contains(&"openai/gpt-4o-mini") || models.iter().any(|m| m.starts_with("openai/")),
        "{models:?}"
    );

    let whole = &v["whole"];
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "zocalo");
    assert_eq!(whole["content"], "Hello!");
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["finish_reason"], "stop");
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(whole["usage"]["prompt_tokens"], FAKE_INPUT_TOKENS);
    assert_eq!(whole["usage"]["completion_tokens"], 2);

    let streamed = &v["streamed"];
    assert_eq!(streamed["pieces"], json!(["One, ", "two, ", "three."]));
    assert_eq!(streamed["finish_reason"], "stop");
    assert_eq!(streamed["objects"], json!(["chat.completion.chunk"]));
    assert_eq!(streamed["usage"]["completion_tokens"], 3);
    assert_eq!(streamed["usage"]["total_tokens"], FAKE_INPUT_TOKENS + 3);

    assert_eq!(v["pass_whole"]["model"], "openai/gpt-test");
    assert_eq!(v["pass_whole"]["content"], "Brief hi.");
    assert_eq!(v["pass_stream"]["text"], "Hi again.");
    assert_eq!(v["pass_stream"]["final"], "Hi again.");
    assert_eq!(v["unknown_model"]["status"], 404);
    assert_eq!(v["unknown_model"]["code"], "model_not_found");
    assert_eq!(v["bad_token"]["status"], 401);

    // What reached the provider: the ask loop (system prompt, tools) for `zocalo`; the
    // client's own messages, model and system prompt for the pass-through.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    let ask = &reqs[0].body;
    assert_eq!(ask["messages"][0]["role"], "system");
    assert!(ask["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("zocalo"));
    assert_eq!(
        ask["messages"].as_array().unwrap().last().unwrap()["content"],
        "Say hello"
    );
    assert!(ask["tools"].as_array().is_some_and(|t| !t.is_empty()));
    let pass = &reqs[2].body;
    assert_eq!(pass["model"], "gpt-test");
    assert_eq!(
        pass["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    );
    assert!(pass.get("tools").is_none() || pass["tools"] == json!([]));

    // The two `zocalo` answers were stored as conversations.
    let convs: Value = server
        .get("/api/conversations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(convs.as_array().unwrap().len(), 2, "{convs}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_v1_and_api_but_not_public_routes() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let server = start(home.path(), None, &upstream_env(&fake)).await;
    let c = server.client();
    for path in ["/v1/models", "/api/conversations"] {
        let (s, b) = error_of(c.get(format!("{}{path}", server.url)).send().await.unwrap()).await;
        assert_eq!(s, 401, "{path}");
        assert_eq!(b["error"]["type"], "authentication_error");
        let (s, _) = error_of(
            c.get(format!("{}{path}", server.url))
                .bearer_auth("not-the-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401, "{path}");
        let ok = server.get(path).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{path}");
    }
    let health: Value = c
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "sqlite");
    let doc: Value = c
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/chat/completions"]["post"].is_object());
    let page = c.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // No CORS: a cross-origin page gets no permission to read answers.
    let pre = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/models", server.url),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    // Nothing was asked of the provider.
    assert!(fake.requests().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_json_4xx_never_a_5xx() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let server = start(home.path(), None, &upstream_env(&fake)).await;
    let chat = format!("{}/v1/chat/completions", server.url);
    let c = server.client();
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (c.post(&chat).bearer_auth(TOKEN).header("content-type", "application/json").body("{not json"), 400),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": 5, "messages": []})), 422),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "messages": []})), 400),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "messages": [{"role": "assistant", "content": "x"}]})), 400),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "messages": [{"role": "user", "content": "   "}]})), 400),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "conversation": "conv_nope", "messages": [{"role": "user", "content": "x"}]})), 404),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "n": 3, "messages": [{"role": "user", "content": "x"}]})), 400),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})), 404),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "nosuchvendor/x", "messages": [{"role": "user", "content": "x"}]})), 404),
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "openai/x", "messages": [{"role": "wizard", "content": "x"}]})), 400),
        (c.post(&chat).bearer_auth(TOKEN).header("content-type", "text/plain").body("hi"), 415),
        (c.get(format!("{}/api/conversations/conv_bogus", server.url)).bearer_auth(TOKEN), 404),
        (c.get(format!("{}/api/conversations?limit=abc", server.url)).bearer_auth(TOKEN), 400),
        (c.get(format!("{}/no/such/route", server.url)).bearer_auth(TOKEN), 404),
        (c.delete(format!("{}/v1/models", server.url)).bearer_auth(TOKEN), 405),
        (c.post(format!("{}/v1/embeddings", server.url)).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "input": []})), 400),
        // Last: the server answers 413 before reading the whole body and drops the
        // connection, which a pooled client must not reuse.
        (c.post(&chat).bearer_auth(TOKEN).json(&json!({"model": "zocalo", "messages": [{"role": "user", "content": "x".repeat(2 * 1024 * 1024)}]})), 413),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let (status, body) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "case {i}: {body}");
    }
    assert!(
        fake.requests().is_empty(),
        "bad input must not reach the provider"
    );
    // Still healthy afterwards.
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_created_and_non_loopback_needs_a_token() {
    let home = tempfile::tempdir().unwrap();
    // No ZOCALO_SERVER_TOKEN: a token file is made and its path printed.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    cmd.env_remove("ZOCALO_SERVER_TOKEN")
        .env("ZOCALO_HOME", home.path())
        .args(["serve", "--bind", "0.0.0.0:0"]);
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ZOCALO_SERVER_TOKEN"), "{err}");
    assert!(!home.path().join("server.token").exists());

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .env("ZOCALO_SERVER_TOKEN", "short")
        .env("ZOCALO_HOME", home.path())
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .env("ZOCALO_HOME", home.path())
        .args(["serve", "--bind", "not-an-address"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    cmd.env_remove("ZOCALO_SERVER_TOKEN")
        .env("ZOCALO_HOME", home.path())
        .env("ZOCALO_EMBEDDER", "none")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let url = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("exited early");
        seen.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let path = home.path().join("server.token");
    assert!(
        seen.iter().any(|l| l.contains(&path.display().to_string())),
        "{seen:?}"
    );
    let token = std::fs::read_to_string(&path).unwrap();
    let token = token.trim();
    assert!(token.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{url}/v1/models"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

async fn ask_sse(server: &Server, path: &str, message: &str) -> Vec<(String, Value)> {
    let r = server
        .post(path)
        .json(&json!({"message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        if !data.is_empty() {
            events.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

mod conversations_api {
    use super::*;

    async fn body(db_url: &str) {
        let home = tempfile::tempdir().unwrap();
        let fake = FakeServer::start().await;
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Nice to ", "meet you, Ada."],
        )));
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["You are Ada."])));
        let server = start(home.path(), Some(db_url), &upstream_env(&fake)).await;

        let events = ask_sse(&server, "/api/conversations/ask", "I am Ada").await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["start", "text", "text", "done"], "{events:?}");
        let text: String = events
            .iter()
            .filter(|(n, _)| n == "text")
            .map(|(_, v)| v["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Nice to meet you, Ada.");
        let done = &events.last().unwrap().1;
        let conv = done["conversation_id"].as_str().unwrap().to_owned();
        assert_eq!(done["text"], "Nice to meet you, Ada.");

        let events = ask_sse(
            &server,
            &format!("/api/conversations/{conv}/ask"),
            "Who am I?",
        )
        .await;
        assert_eq!(events.last().unwrap().0, "done");
        // The second call carried the first turn as history.
        let second = &fake.requests()[1].body;
        let contents: Vec<&str> = second["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["content"].as_str())
            .collect();
        assert!(contents.contains(&"I am Ada"), "{contents:?}");
        assert!(contents.contains(&"Nice to meet you, Ada."), "{contents:?}");

        let list: Value = server
            .get("/api/conversations")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["id"], conv.as_str());
        assert_eq!(list[0]["message_count"], 4);
        let detail: Value = server
            .get(&format!("/api/conversations/{conv}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let roles: Vec<&str> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        assert_eq!(detail["messages"][3]["content"], "You are Ada.");

        // Unknown conversation: 404 before anything is asked.
        let (s, _) = error_of(
            server
                .post("/api/conversations/conv_0192f0000000000000000000000/ask")
                .json(&json!({"message": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 404, "{s}");
        let r = server
            .delete(&format!("/api/conversations/{conv}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let (s, _) = error_of(
            server
                .get(&format!("/api/conversations/{conv}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 404);
        assert_eq!(fake.requests().len(), 2);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let db = zocalo_testkit::db::sqlite().await;
        body(&db.url()).await;
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = zocalo_testkit::db::postgres().await;
        body(&db.url()).await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_batches_recorded_by_the_cli_are_listed_and_shown() {
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["first answer"])));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["second answer"])));
    let tasks = home.path().join("tasks.jsonl");
    std::fs::write(
        &tasks,
        "{\"id\":\"a\",\"prompt\":\"one\"}\n{\"id\":\"b\",\"prompt\":\"two\"}\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .env("ZOCALO_HOME", home.path())
        .env("ZOCALO_MEMORY", "off")
        .env("OPENAI_BASE_URL", format!("{}/v1", fake.url()))
        .env("OPENAI_API_KEY", "sk-upstream-0123456789")
        .args(["--database-url", &db.url(), "agents", "spawn-all"])
        .arg(&tasks)
        .args(["--provider", "openai", "--concurrency", "1", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = start(home.path(), Some(&db.url()), &upstream_env(&fake)).await;
    let list: Value = server
        .get("/api/agents/batches")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["total"], 2);
    assert_eq!(list[0]["ok"], 2);
    let id = list[0]["id"].as_str().unwrap();
    let detail: Value = server
        .get(&format!("/api/agents/batches/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agents = detail["agents"].as_array().unwrap();
    assert_eq!(agents[0]["id"], "a");
    assert_eq!(agents[1]["id"], "b");
    let outputs: Vec<&str> = agents
        .iter()
        .map(|a| a["output"].as_str().unwrap())
        .collect();
    assert!(
        outputs.contains(&"first answer") && outputs.contains(&"second answer"),
        "{outputs:?}"
    );
    let (s, _) = error_of(
        server
            .get("/api/agents/batches/batch_nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    server.stop().await;
    db.cleanup().await;
}
