//! The web UI in real headless Chromium (playwright-core): sign in, chat and watch the answer
//! stream, memory, schedules, jobs; screenshots saved as artifacts. And the API fuzzer
//! (schemathesis) against /openapi.json: no input may produce a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use serve_support::{start, tool, TOKEN};
use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};

fn artifacts(name: &str) -> PathBuf {
    let base = std::env::var_os("ZOCALO_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One SSE event per body chunk, with a pause between: the answer arrives in pieces.
fn slow_sse(pieces: &[&str]) -> Reply {
    let body = openai_text_sse("gpt-test", pieces);
    let chunks: Vec<Bytes> = body
        .split_inclusive("\n\n")
        .map(|s| Bytes::from(s.to_owned()))
        .collect();
    Reply::sse(body.clone())
        .chunks(chunks)
        .chunk_delay(Duration::from_millis(250))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_signs_in_streams_a_chat_and_opens_every_page() {
    let Some(modules) = tool("ZOCALO_TEST_NODE_MODULES") else {
        return;
    };
    let chromium = std::env::var("ZOCALO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let pieces = ["The zocalo ", "is the main ", "square of ", "Mexico City."];
    fake.push(slow_sse(&pieces));
    // The two agents the agents page spawns.
    for _ in 0..2 {
        fake.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["agent ", "answer"],
        )));
    }
    let server = start(
        home.path(),
        None,
        &[
            ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
            ("OPENAI_API_KEY", "sk-upstream-0123456789".to_owned()),
            ("ZOCALO_PROVIDER", "openai".to_owned()),
            // The memory page is tested on its own; keep user turns out of it.
            ("ZOCALO_MEMORY_EPISODIC", "off".to_owned()),
        ],
    )
    .await;
    // A queued job for the jobs page.
    let r = server
        .post("/api/jobs")
        .json(&json!({"kind": "noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A running service for the services page (the server is the daemon).
    let r = server
        .post("/api/services")
        .json(&json!({
            "name": "site",
            "command": "sh -c 'echo ui-service-log-line; exec sleep 300'",
            "start": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Its first line is in the log before the page asks for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs: Value = server
            .get("/api/services/site/logs")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if logs.to_string().contains("ui-service-log-line") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out_dir = artifacts("ui");
    let v = serve_support::client_json(
        tokio::process::Command::new("node")
            .arg(serve_support::clients_dir().join("ui.mjs"))
            .args([&server.url, TOKEN, out_dir.to_str().unwrap()])
            .env("ZOCALO_TEST_NODE_MODULES", &modules)
            .env("ZOCALO_CHROMIUM", &chromium),
        Duration::from_secs(120),
    )
    .await;
    eprintln!("screenshots in {}", out_dir.display());

    assert_eq!(v["signed_in"], true);
    assert!(
        v["wrong_token_error"]
            .as_str()
            .unwrap()
            .contains("not right"),
        "{v}"
    );
    let full: String = pieces.concat();
    assert_eq!(v["answer"], full.as_str());
    // Streamed: the page showed growing prefixes of the answer before the whole of it.
    let partials: Vec<&str> = v["partials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let prefixes = partials
        .iter()
        .filter(|p| !p.is_empty() && p.len() < full.len() && full.starts_with(*p))
        .count();
    assert!(prefixes >= 2, "no streaming seen: {partials:?}");
    assert_eq!(v["conversations"], 1);
    assert!(
        v["memory_hits"][0].as_str().unwrap().contains("teal"),
        "{v}"
    );
    assert!(v["preview"].as_str().unwrap().starts_with("Next:"));
    assert_eq!(v["schedule_occurrences"], 5);
    assert!(v["job_rows"].as_u64().unwrap() >= 1);
    assert_eq!(v["signed_out"], true);
    assert_eq!(v["console_errors"], json!([]), "{v}");
    assert_eq!(v["optional_pages"]["services"], true, "{v}");
    assert_eq!(v["optional_pages"]["agents"], true, "{v}");
    assert!(
        v["agents_started"].as_str().unwrap().contains("(2 agents)"),
        "{v}"
    );
    assert_eq!(v["agents_batches"], 1, "{v}");
    // The page's batch really ran both prompts through the ask loop.
    let batches: Value = server
        .get("/api/agents/batches")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (batches[0]["total"].as_u64(), batches[0]["ok"].as_u64()),
        (Some(2), Some(2)),
        "{batches}"
    );
    assert_eq!(batches[0]["concurrency"], 2);
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.body["messages"].as_array().unwrap().last().unwrap()["content"].to_string())
        .collect();
    assert!(
        asked.iter().any(|c| c.contains("First question"))
            && asked.iter().any(|c| c.contains("Second question")),
        "{asked:?}"
    );
    assert_eq!(v["services"], json!(["site"]), "{v}");
    assert_eq!(v["service_states"], json!(["running"]), "{v}");
    assert!(
        v["service_logs"]
            .as_str()
            .unwrap()
            .contains("ui-service-log-line"),
        "{v}"
    );
    for name in [
        "signin",
        "chat",
        "memory",
        "schedules",
        "jobs",
        "agents",
        "services",
    ] {
        let png = out_dir.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }
    // The schedule the page added is really stored.
    let list: Value = server
        .get("/api/schedules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "morning-brief");
    assert_eq!(list[0]["tz"], "Europe/Berlin");
    // SIGTERM: the service's processes end with the server.
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_fuzzer_finds_no_server_error() {
    let Some(python) = tool("ZOCALO_TEST_PYTHON") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // Operations that call a model are fuzzed for their validation only: the upstream is a
    // closed port, so a request that passes validation gets the honest 502 of a dead
    // provider; they are excluded from the run below and covered by serve_cli's tests.
    let server = start(
        home.path(),
        None,
        &[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1".to_owned()),
            ("OPENAI_API_KEY", "sk-upstream-0123456789".to_owned()),
            ("ZOCALO_PROVIDER", "openai".to_owned()),
        ],
    )
    .await;
    let report = artifacts("schemathesis");
    let examples = std::env::var("ZOCALO_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".into());
    let run = |mode: &'static str, filter: [&'static str; 2]| {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.args(["-m", "schemathesis.cli", "run"])
            .arg(format!("{}/openapi.json", server.url))
            .args(["--url", &server.url])
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--checks", "not_a_server_error"])
            .args(["--mode", mode])
            .args(["--max-examples", &examples])
            .args(["--seed", "13"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--workers", "1"])
            .args(["--request-timeout", "20"])
            .args(["--max-time", "40"])
            .args(filter)
            .args(["--report", "junit"])
            .arg("--report-dir")
            .arg(report.join(mode));
        cmd
    };
    // SSE and model-calling operations: /api/events never ends, and an ask whose input is
    // valid reaches the (closed) upstream and gets an honest 502. So: everything else with
    // valid and invalid input, then the model-calling ones with invalid input only, which
    // must be refused with a 4xx before any provider is asked.
    let model_ops = "(/ask$|/chat/completions$|/embeddings$)";
    let runs = [
        run(
            "all",
            [
                "--exclude-path-regex",
                "(/ask$|/chat/completions$|/embeddings$|/events$)",
            ],
        ),
        run("negative", ["--include-path-regex", model_ops]),
    ];
    for mut cmd in runs {
        let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
            .await
            .expect("the fuzzer took over 240 s")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "schemathesis found failures:\n{stdout}\n{stderr}"
        );
        // It really ran operations (a run that tested nothing must not pass).
        assert!(stdout.contains("passed"), "{stdout}");
    }
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    // SIGTERM, so services the fuzzer defined and started end with the server.
    let status = server.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_approves_a_tool_call() {
    let Some(modules) = tool("ZOCALO_TEST_NODE_MODULES") else {
        return;
    };
    let chromium = std::env::var("ZOCALO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let home = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.push(Reply::sse(zocalo_testkit::fake::openai_tool_call_sse(
        "gpt-test",
        "call_1",
        "shell",
        &json!({"command": "echo from-the-ui > ui.txt"}).to_string(),
    )));
    fake.push(Reply::sse(openai_text_sse("gpt-test", &["It ran."])));
    let server = start(
        home.path(),
        None,
        &[
            ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
            ("OPENAI_API_KEY", "sk-upstream-0123456789".to_owned()),
            ("ZOCALO_PROVIDER", "openai".to_owned()),
        ],
    )
    .await;
    let out_dir = artifacts("ui-approval");
    let v = serve_support::client_json(
        tokio::process::Command::new("node")
            .arg(serve_support::clients_dir().join("ui_approval.mjs"))
            .args([&server.url, TOKEN, out_dir.to_str().unwrap()])
            .env("ZOCALO_TEST_NODE_MODULES", &modules)
            .env("ZOCALO_CHROMIUM", &chromium),
        Duration::from_secs(120),
    )
    .await;
    assert!(v.get("error").is_none(), "{v:#}");
    let box_text = v["box"].as_str().unwrap();
    assert!(
        box_text.contains("Allow shell?") && box_text.contains("echo from-the-ui"),
        "{v:#}"
    );
    assert_eq!(v["answer"], "It ran.", "{v:#}");
    assert!(
        v["box_after"].as_str().unwrap().contains("allowed"),
        "{v:#}"
    );
    assert_eq!(v["console_errors"], json!([]), "{v:#}");
    // The click let the command run, in the workspace.
    let made = std::fs::read_to_string(home.path().join("workspace/ui.txt")).unwrap();
    assert_eq!(made, "from-the-ui\n");
    server.stop().await;
}
