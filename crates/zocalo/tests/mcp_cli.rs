//! `zocalo mcp serve | tools`, `/mcp` under `zocalo serve`, and MCP tools in the ask loop, as
//! processes, against the official MCP Python SDK in both directions: its client drives
//! `zocalo mcp serve` (stdio and HTTP) and `zocalo serve`'s `/mcp`, and a FastMCP server
//! (crates/zocalo-mcp/tests/py/fastmcp_server.py) serves zocalo's client.
//! Needs ZOCALO_TEST_PYTHON (tools/py-requirements.txt); skipped with a reason when unset,
//! unless ZOCALO_REQUIRE_TOOLS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{z, zocalo};
use serde_json::{json, Value};
use serve_support::client_json;
use zocalo_testkit::fake::{
    openai_text_sse, openai_tool_call_sse, FakeServer, RecordedRequest, Reply,
};

fn python() -> Option<String> {
    match std::env::var("ZOCALO_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("ZOCALO_REQUIRE_TOOLS").is_ok_and(|v| v == "1") => {
            panic!("ZOCALO_TEST_PYTHON is not set and ZOCALO_REQUIRE_TOOLS=1: run ./x test")
        }
        _ => {
            eprintln!(
                "skipped: ZOCALO_TEST_PYTHON is not set (a Python with tools/py-requirements.txt)"
            );
            None
        }
    }
}

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zocalo-mcp/tests/py")
}

fn write_config(home: &Path, text: &str) {
    std::fs::write(home.join("config.toml"), text).unwrap();
}

fn fastmcp_config(py: &str, name: &str) -> String {
    format!(
        "[mcp.servers.{name}]\ncommand = {py:?}\nargs = [{:?}]\n",
        py_dir().join("fastmcp_server.py").display().to_string()
    )
}

both!(python_client_drives_mcp_serve, |db, home| async move {
    let Some(py) = python() else { return };
    let url = db.url();
    let j = client_json(
        tokio::process::Command::new(&py)
            .arg(py_dir().join("client_check.py"))
            .args([
                env!("CARGO_BIN_EXE_zocalo"),
                "--database-url",
                &url,
                "mcp",
                "serve",
            ])
            .env("ZOCALO_HOME", home)
            .env("ZOCALO_EMBEDDER", "none")
            .env_remove("ZOCALO_DATABASE_URL"),
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_client_saw(&j, db, home).await;
});

/// What client_check.py must have seen from zocalo's MCP server, over either transport.
async fn assert_client_saw(j: &Value, db: &zocalo_testkit::db::TestDb, home: &Path) {
    assert_eq!(j["server_name"], "zocalo");
    assert_eq!(j["has_tools_capability"], true);
    let tools = j["tools"].as_object().unwrap();
    for name in [
        "memory_save",
        "memory_search",
        "memory_forget",
        "skills_list",
        "skill_run",
        "schedule_add",
        "schedule_list",
        "pool_submit",
        "pool_status",
        "agents_spawn",
    ] {
        let t = &tools[name];
        assert!(
            t["description"].as_str().is_some_and(|d| d.len() > 20),
            "{name}: {t}"
        );
        assert_eq!(t["input_schema"]["type"], "object", "{name}");
    }
    let search = &tools["memory_search"]["input_schema"];
    assert_eq!(search["required"], serde_json::json!(["query"]));
    assert_eq!(search["properties"]["query"]["type"], "string");

    // memory_save then memory_search finds it, through the real store.
    assert_eq!(j["save"]["is_error"], false, "{}", j["save"]);
    let id = j["save"]["structured"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mem_"), "{id}");
    assert_eq!(j["search"]["is_error"], false);
    let results = j["search"]["structured"]["results"].as_array().unwrap();
    assert_eq!(results[0]["id"], id.as_str());
    assert!(results[0]["text"].as_str().unwrap().contains("Miso"));

    // An unknown tool is a JSON-RPC error (invalid params) naming the tools there are.
    assert_eq!(j["unknown"]["raised"], true);
    assert_eq!(j["unknown"]["code"], -32602);
    assert!(j["unknown"]["message"]
        .as_str()
        .unwrap()
        .contains("memory_save"));
    // Bad arguments and a failing tool are tool errors (isError), with the reason.
    assert_eq!(j["bad_args"]["is_error"], true);
    let bad = j["bad_args"]["text"].as_str().unwrap();
    assert!(
        bad.contains("memory_search") && bad.contains("invalid type"),
        "{bad}"
    );
    assert_eq!(j["forget_missing"]["is_error"], true);
    // ...and the server kept serving.
    assert_eq!(j["after_errors"]["is_error"], false);
    assert!(j["after_errors"]["text"].as_str().unwrap().contains(&id));
    assert_eq!(j["pool_status"]["structured"]["queued"], 0);
    assert_eq!(
        j["skills_list"]["structured"]["skills"],
        serde_json::json!([])
    );

    // The memory is really in the database the CLI reads.
    let found = z(db, home, &["memory", "search", "Miso", "--json"]).await;
    assert_eq!(found.code, 0, "{}", found.stderr);
    assert_eq!(found.json()[0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_streamable_http() {
    let Some(py) = python() else { return };
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let url = db.url();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .args(["--database-url", &url, "mcp", "serve", "--http", &addr])
        .env("ZOCALO_HOME", home.path())
        .env("ZOCALO_EMBEDDER", "none")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mcp serve --http did not listen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let j = client_json(
        tokio::process::Command::new(&py)
            .arg(py_dir().join("client_check.py"))
            .args(["--url", &format!("http://{addr}/mcp")]),
        Duration::from_secs(60),
    )
    .await;
    assert_client_saw(&j, &db, home.path()).await;
    server.kill().await.unwrap();

    // Not on a public address: that endpoint would have no token.
    let run = zocalo(home.path(), &[], &["mcp", "serve", "--http", "0.0.0.0:0"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("loopback"), "{}", run.stderr);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_lists_servers_and_reports_the_unreachable() {
    let Some(py) = python() else { return };
    let home = tempfile::tempdir().unwrap();
    let mut cfg = fastmcp_config(&py, "py");
    cfg.push_str("[mcp.servers.gone]\ncommand = \"/nonexistent/server\"\n");
    cfg.push_str("[mcp.servers.off]\ncommand = \"/nonexistent/other\"\nenabled = false\n");
    write_config(home.path(), &cfg);

    let run = zocalo(home.path(), &[], &["mcp", "tools", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    let add = rows
        .iter()
        .find(|r| r["server"] == "py" && r["name"] == "add")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(add["description"], "Add two integers.");
    assert_eq!(add["qualified_name"], "py__add");
    assert_eq!(rows.iter().filter(|r| r["server"] == "py").count(), 6);
    let gone = rows.iter().find(|r| r["server"] == "gone").unwrap();
    assert!(gone["name"].is_null());
    assert!(gone["error"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/server"));
    assert!(run.stderr.contains("gone"), "{}", run.stderr);
    assert!(!rows.iter().any(|r| r["server"] == "off"));

    let human = zocalo(home.path(), &[], &["mcp", "tools"]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("py__echo  Echo the text back."),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("gone: unreachable"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_mcp_config_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[mcp.servers.x]\nargs = [\"a\"]\n", "command"),
        (
            "[mcp.servers.x]\ncommand = \"a\"\nurl = \"http://h\"\n",
            "not both",
        ),
        (
            "[mcp.servers.x]\ncommand = \"a\"\nwhatever = 1\n",
            "whatever",
        ),
        ("[mcp.servers.a__b]\ncommand = \"a\"\n", "__"),
    ] {
        write_config(home.path(), text);
        let run = zocalo(home.path(), &[], &["mcp", "tools", "--json"]).await;
        assert_eq!(run.code, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{text}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ask_loop_calls_an_mcp_tool() {
    let Some(py) = python() else { return };
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &fastmcp_config(&py, "py"));
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_mcp_1",
        "py__add",
        r#"{"a":19,"b":23}"#,
    )));
    server.push(Reply::sse(openai_text_sse("gpt-test", &["It is ", "42."])));
    let base = format!("{}/v1", server.url());
    let run = zocalo(
        home.path(),
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test-0123456789"),
            ("ZOCALO_EMBEDDER", "none"),
        ],
        // No terminal here: an MCP server's tools are asked about, so approve them up front.
        &[
            "ask",
            "--provider",
            "openai",
            "--allow",
            "*__*",
            "--json",
            "What is 19 + 23?",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["text"], "It is 42.");
    assert_eq!(j["tool_calls"][0]["name"], "py__add");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    // The model was offered the MCP tool with the server's own schema.
    let offered = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "py__add")
        .unwrap_or_else(|| panic!("{}", reqs[0].body["tools"]));
    assert_eq!(offered["function"]["description"], "Add two integers.");
    assert_eq!(
        offered["function"]["parameters"]["properties"]["b"]["type"],
        "integer"
    );
    // The Python server computed the result, and it went back to the model.
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let result = msgs.last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_mcp_1");
    assert_eq!(result["content"], "42");
}

fn prompt_of(r: &RecordedRequest) -> String {
    r.body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A provider answering "echo: PROMPT", after N ms for prompts "wait N: ...".
async fn echo_provider() -> FakeServer {
    let server = FakeServer::start().await;
    server.respond_with(|r| {
        let prompt = prompt_of(r);
        let ms = prompt
            .strip_prefix("wait ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Reply::sse(openai_text_sse("gpt-test", &["echo: ", &prompt]))
            .delay(Duration::from_millis(ms))
    });
    server
}

both!(
    agents_spawn_runs_agents_for_an_mcp_client,
    |db, home| async move {
        let Some(py) = python() else { return };
        // A budget of 3 agents per call.
        write_config(home, "[agents]\nmax_agents_per_call = 3\n");
        let provider = echo_provider().await;
        let url = db.url();
        let mut cmd = tokio::process::Command::new(&py);
        for k in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "ZOCALO_PROVIDER",
            "ZOCALO_MODEL",
            "ZOCALO_DATABASE_URL",
            "ZOCALO_LOG",
        ] {
            cmd.env_remove(k);
        }
        cmd.arg(py_dir().join("agents_check.py"))
            .args([
                env!("CARGO_BIN_EXE_zocalo"),
                "--database-url",
                &url,
                "mcp",
                "serve",
            ])
            .env("ZOCALO_HOME", home)
            .env("ZOCALO_EMBEDDER", "none")
            .env("OPENAI_BASE_URL", format!("{}/v1", provider.url()))
            .env("OPENAI_API_KEY", "sk-test-mcp-agents-0123456789")
            .env("ZOCALO_PROVIDER", "openai");
        let j = client_json(&mut cmd, Duration::from_secs(90)).await;

        // Listed with its schema: the budget from config.toml, the caller's knobs.
        let schema = &j["tool"]["input_schema"];
        assert_eq!(schema["required"], json!(["tasks"]), "{schema}");
        assert_eq!(schema["properties"]["tasks"]["maxItems"], 3, "{schema}");
        assert_eq!(schema["properties"]["concurrency"]["type"], "integer");
        assert_eq!(schema["properties"]["timeout_secs"]["type"], "number");
        assert!(j["tool"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("input order")));

        // Three agents, three answers from the provider, in input order although the first
        // finished last.
        let ok = &j["ok"];
        assert_eq!(ok["is_error"], false, "{ok}");
        let results = ok["structured"]["results"].as_array().unwrap();
        let got: Vec<(&str, &str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap(),
                    r["status"].as_str().unwrap(),
                    r["output"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("alpha", "ok", "echo: wait 400: first question"),
                ("beta", "ok", "echo: wait 150: second question"),
                ("gamma", "ok", "echo: third question"),
            ]
        );
        let batch_id = ok["structured"]["batch_id"].as_str().unwrap().to_owned();

        // Bad input: tool errors saying why, and no agent ran for them.
        for (case, needle) in [
            ("empty", "`tasks` is empty"),
            ("duplicate", "duplicate id \"x\""),
            ("over_budget", "4 tasks asked, at most 3 per call"),
            ("concurrency", "`concurrency` must be 1 to 3"),
            ("timeout", "`timeout_secs` must be above 0"),
            ("missing_prompt", "missing field `prompt`"),
        ] {
            let r = &j["bad"][case];
            assert_eq!(r["is_error"], true, "{case}: {r}");
            let text = r["text"].as_str().unwrap();
            assert!(text.contains(needle), "{case}: {text}");
        }
        assert_eq!(
            j["after_errors"]["is_error"], false,
            "{}",
            j["after_errors"]
        );
        let prompts: Vec<String> = provider.requests().iter().map(prompt_of).collect();
        assert_eq!(prompts.len(), 3, "{prompts:?}");

        // The batch is recorded where `zocalo agents` looks.
        let listed = z(db, home, &["agents", "list", "--json"]).await;
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        let batches = listed.json();
        let batches = batches.as_array().unwrap();
        assert_eq!(batches.len(), 1, "{batches:?}");
        let b = &batches[0];
        assert_eq!(b["id"], batch_id.as_str());
        assert_eq!((b["total"].as_u64(), b["ok"].as_u64()), (Some(3), Some(3)));
        assert_eq!(b["state"], "finished");
        let shown = z(db, home, &["agents", "show", &batch_id, "--json"]).await;
        assert_eq!(shown.code, 0, "{}", shown.stderr);
        let agents = shown.json()["agents"].as_array().unwrap().clone();
        let ids: Vec<&str> = agents.iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["alpha", "beta", "gamma"]);
        assert_eq!(agents[1]["output"], "echo: wait 150: second question");
    }
);

/// `zocalo serve` mounts the MCP endpoint at /mcp behind its bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_serve_mcp_with_the_token() {
    use serve_support::TOKEN;
    let Some(py) = python() else { return };
    let db = zocalo_testkit::db::sqlite().await;
    let home = tempfile::tempdir().unwrap();
    let server = serve_support::start(home.path(), Some(&db.url()), &[]).await;
    let endpoint = format!("{}/mcp", server.url);

    let j = client_json(
        tokio::process::Command::new(&py)
            .arg(py_dir().join("client_check.py"))
            .args(["--url", &endpoint, "--token", TOKEN]),
        Duration::from_secs(60),
    )
    .await;
    assert_client_saw(&j, &db, home.path()).await;

    // Without the token, or with another one, the SDK's client cannot even initialize...
    for token in [None, Some("not-the-token-0123456789")] {
        let mut cmd = tokio::process::Command::new(&py);
        cmd.arg(py_dir().join("client_check.py"))
            .args(["--url", &endpoint]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("the Python client did not finish in 60 s")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{token:?}: the client got in");
        assert!(stderr.contains("401"), "{token:?}: {stderr}");
    }
    // ...and the HTTP answer is a 401 with a JSON reason, the same request with the token
    // succeeding.
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}
    });
    let post = |token: Option<&str>| {
        let mut r = server
            .client()
            .post(&endpoint)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for token in [None, Some("not-the-token-0123456789")] {
        let r = post(token).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{token:?}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let r = post(Some(TOKEN)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    server.stop().await;
    db.cleanup().await;
}
