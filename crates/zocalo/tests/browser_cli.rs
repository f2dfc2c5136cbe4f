//! `zocalo browser` as a process, with real headless Chromium and pages served on 127.0.0.1.
//! Every run carries a unique marker in its environment; Chromium and all its helpers inherit
//! it, so /proc shows whether anything it started is still alive after it exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zocalo_testkit::fake::{openai_text_sse, openai_tool_call_sse, FakeServer, Reply};
use zocalo_testkit::pages::{processes_with_env, skip_or_fail, PageServer};

const MARK: &str = "ZOCALO_TEST_BROWSER_MARK";

fn chromium_or_skip(test: &str) -> bool {
    match zocalo_browser::find_chromium() {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(test, &e.to_string());
            false
        }
    }
}

fn mark() -> String {
    format!("{}-{}", std::process::id(), uuid_like())
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `zocalo ARGS` with the marker in its environment; then checks nothing it started lives on.
async fn zocalo(home: &Path, env: &[(&str, &str)], args: &[&str]) -> common::Run {
    let m = mark();
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push((MARK, &m));
    let run = common::zocalo(home, &all, args).await;
    assert_no_process_left(&m).await;
    run
}

async fn assert_no_process_left(m: &str) {
    // Chromium's helpers die a few milliseconds after the browser; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with_env(MARK, m);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("processes left running after zocalo exited: {left:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PAGE: &str = r#"<!doctype html><title>Demo</title>
<nav><a href="/">Home</a></nav>
<main>
  <label for="q">Query</label><input id="q">
  <button id="go" onclick="document.getElementById('out').textContent = 'You searched ' + document.getElementById('q').value">Search</button>
  <p id="out"></p>
</main>"#;

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_json_is_the_same_in_every_run() {
    if !chromium_or_skip("snapshot_json_is_the_same_in_every_run") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let server = PageServer::start().await;
    server.page("/", PAGE);
    let url = server.url("/");
    let first = zocalo(
        home.path(),
        &[],
        &["browser", "snapshot", &url, "--json", "--timeout", "20"],
    )
    .await;
    assert_eq!(first.code, 0, "stderr: {}", first.stderr);
    let second = zocalo(
        home.path(),
        &[],
        &["browser", "snapshot", &url, "--json", "--timeout", "20"],
    )
    .await;
    assert_eq!(second.code, 0, "stderr: {}", second.stderr);
    assert_eq!(first.json(), second.json());
    let snap = first.json();
    assert_eq!(snap["url"], url);
    assert_eq!(snap["title"], "Demo");
    assert_eq!(
        snap["elements"],
        json!([
            {"ref": "e1", "role": "navigation", "name": ""},
            {"ref": "e2", "role": "link", "name": "Home"},
            {"ref": "e3", "role": "main", "name": ""},
            {"ref": "e4", "role": "textbox", "name": "Query"},
            {"ref": "e5", "role": "button", "name": "Search"},
        ])
    );
    // Human output: one line per element.
    let human = zocalo(
        home.path(),
        &[],
        &["browser", "snapshot", &url, "--timeout", "20"],
    )
    .await;
    assert_eq!(human.code, 0, "stderr: {}", human.stderr);
    assert!(
        human.stdout.contains("e5 button \"Search\"\n"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn screenshot_writes_a_png_of_the_requested_size() {
    if !chromium_or_skip("screenshot_writes_a_png_of_the_requested_size") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let server = PageServer::start().await;
    server.page("/", PAGE);
    let out = home.path().join("shot.png");
    let run = zocalo(
        home.path(),
        &[],
        &[
            "browser",
            "screenshot",
            &server.url("/"),
            "--out",
            out.to_str().unwrap(),
            "--width",
            "640",
            "--height",
            "480",
            "--timeout",
            "20",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let v = run.json();
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (json!(640), json!(480))
    );
    assert_eq!(v["status"], 200);
    let bytes = std::fs::read(&out).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let reader = decoder.read_info().expect("a valid PNG");
    assert_eq!((reader.info().width, reader.info().height), (640, 480));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_reports_each_step_and_fails_at_the_first_bad_one() {
    if !chromium_or_skip("run_reports_each_step_and_fails_at_the_first_bad_one") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let server = PageServer::start().await;
    server.page("/", PAGE);
    let script = home.path().join("s.json");
    std::fs::write(
        &script,
        json!({"timeout_ms": 20000, "steps": [
            {"goto": server.url("/")},
            {"snapshot": true},
            {"type": {"ref": "e4"}, "text": "otters"},
            {"click": {"ref": "e5"}},
            {"wait_for": {"text": "You searched otters"}},
            {"eval": "document.getElementById('out').textContent"}
        ]})
        .to_string(),
    )
    .unwrap();
    let run = zocalo(
        home.path(),
        &[],
        &["browser", "run", script.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let v = run.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["title"], "Demo");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], i);
        assert_eq!(s["ok"], true);
        assert!(s.get("error").is_none());
    }
    assert_eq!(steps[0]["value"]["status"], 200);
    assert_eq!(steps[5]["value"], "You searched otters");

    // A step that fails: exit 1, ok false, the error names the step, later steps do not run.
    std::fs::write(
        &script,
        json!([
            {"goto": server.url("/"), "timeout_ms": 20000},
            {"click": "#does-not-exist", "timeout_ms": 300},
            {"eval": "1"}
        ])
        .to_string(),
    )
    .unwrap();
    let run = zocalo(
        home.path(),
        &[],
        &["browser", "run", script.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let v = run.json();
    assert_eq!(v["ok"], false);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["ok"], false);
    let error = steps[1]["error"].as_str().unwrap();
    assert!(
        error.starts_with("step 1 (click \"#does-not-exist\"): no element matches"),
        "{error}"
    );
    assert!(run.stderr.contains(error), "stderr: {}", run.stderr);

    // Human output says the same.
    let run = zocalo(
        home.path(),
        &[],
        &["browser", "run", script.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("ok   step 0 goto"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL step 1 click"), "{}", run.stdout);
    assert!(run.stderr.contains("step 1 (click"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn navigation_errors_name_the_step() {
    if !chromium_or_skip("navigation_errors_name_the_step") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = home.path().join("s.json");
    std::fs::write(
        &script,
        json!([
            {"goto": "about:blank", "timeout_ms": 20000},
            {"eval": "throw new Error('kaput')", "timeout_ms": 20000}
        ])
        .to_string(),
    )
    .unwrap();
    let run = zocalo(
        home.path(),
        &[],
        &["browser", "run", script.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.json()["steps"][1]["error"],
        "step 1 (eval \"throw new Error('kaput')\"): JavaScript exception: Error: kaput"
    );
    let url = format!("http://127.0.0.1:{closed}/");
    let run = zocalo(home.path(), &[], &["browser", "snapshot", &url]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains(&format!("cannot reach {url}: net::ERR_CONNECTION_REFUSED")),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_before_starting_chromium() {
    // No Chromium needed: nothing is launched.
    let home = tempfile::tempdir().unwrap();
    let script = home.path().join("s.json");
    for (body, expected) in [
        ("{not json", "not JSON"),
        (r##"[{"clik": "#a"}]"##, "step 0: no action"),
        (r#"[{"goto": "example.com"}]"#, "step 0: goto: invalid URL"),
    ] {
        std::fs::write(&script, body).unwrap();
        let run = zocalo(
            home.path(),
            &[],
            &["browser", "run", script.to_str().unwrap()],
        )
        .await;
        assert_eq!(run.code, 2, "{body}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{body}: {}", run.stderr);
    }
    let run = zocalo(
        home.path(),
        &[],
        &["browser", "run", "/no/such/script.json"],
    )
    .await;
    assert_eq!(run.code, 2);
    let run = zocalo(home.path(), &[], &["browser", "snapshot", "notaurl"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no scheme"), "{}", run.stderr);
    let run = zocalo(
        home.path(),
        &[],
        &[
            "browser",
            "screenshot",
            "http://127.0.0.1:1/",
            "--out",
            "x.png",
            "--width",
            "0",
        ],
    )
    .await;
    assert_eq!(run.code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_chromium_exits_1_with_the_install_command() {
    let home = tempfile::tempdir().unwrap();
    let run = zocalo(
        home.path(),
        &[("ZOCALO_CHROMIUM", "/nonexistent/chromium")],
        &["browser", "snapshot", "about:blank"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("apt-get install -y chromium"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("/nonexistent/chromium"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_run_leaves_no_chromium() {
    if !chromium_or_skip("ctrl_c_mid_run_leaves_no_chromium") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let server = PageServer::start().await;
    server.page("/", PAGE);
    let script = home.path().join("s.json");
    std::fs::write(
        &script,
        json!([
            {"goto": server.url("/"), "timeout_ms": 20000},
            {"wait_for": "#never", "timeout_ms": 60000}
        ])
        .to_string(),
    )
    .unwrap();
    let m = mark();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
        .env("ZOCALO_HOME", home.path())
        .env(MARK, &m)
        .args(["browser", "run", script.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until Chromium is up and the page was fetched: the run is inside its wait_for.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests().is_empty() {
        assert!(Instant::now() < deadline, "Chromium never loaded the page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chromium: Vec<_> = processes_with_env(MARK, &m)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("chrom"))
        .collect();
    assert!(
        !chromium.is_empty(),
        "no Chromium seen while the run was waiting"
    );
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("zocalo did not exit after SIGINT")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_no_process_left(&m).await;
}

/// The model snapshots a page, clicks by ref and reads the result (fake OpenAI server).
#[tokio::test(flavor = "multi_thread")]
async fn the_model_snapshots_clicks_by_ref_and_reads_the_result() {
    if !chromium_or_skip("the_model_snapshots_clicks_by_ref_and_reads_the_result") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let pages = PageServer::start().await;
    pages.page(
        "/",
        r#"<!doctype html><title>Vault</title><main>
        <button onclick="document.getElementById('s').textContent = 'The code is 4417'">Reveal code</button>
        <p id="s">hidden</p></main>"#,
    );
    let model = FakeServer::start().await;
    let url = pages.url("/");
    model.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_1",
        "browser_navigate",
        &json!({"url": url}).to_string(),
    )));
    model.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_2",
        "browser_snapshot",
        "{}",
    )));
    // main is e1, the button e2: refs are handed out in document order.
    model.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_3",
        "browser_click",
        r#"{"ref": "e2"}"#,
    )));
    model.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["The code is 4417."],
    )));
    let base = format!("{}/v1", model.url());
    let run = zocalo(
        home.path(),
        &[
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_API_KEY", "sk-test-0123456789"),
        ],
        &[
            "ask",
            "--provider",
            "openai",
            // No terminal here: the tools that act on the page are approved up front.
            "--allow",
            "browser_*",
            "--json",
            "What code does the page reveal?",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.json()["text"], "The code is 4417.");

    let reqs = model.requests();
    assert_eq!(reqs.len(), 4);
    let tools: Vec<&str> = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in [
        "browser_navigate",
        "browser_snapshot",
        "browser_click",
        "browser_type",
        "browser_screenshot",
        "browser_eval",
    ] {
        assert!(tools.contains(&t), "{t} not offered: {tools:?}");
    }
    let last_tool_result = |i: usize| -> String {
        let msgs = reqs[i].body["messages"].as_array().unwrap();
        let m: &Value = msgs.iter().rev().find(|m| m["role"] == "tool").unwrap();
        m["content"].as_str().unwrap().to_owned()
    };
    let snapshot = last_tool_result(2);
    assert!(snapshot.contains("e1 main\n"), "{snapshot}");
    assert!(snapshot.contains("e2 button \"Reveal code\""), "{snapshot}");
    assert!(snapshot.contains("hidden"), "{snapshot}");
    assert!(!snapshot.contains("4417"), "{snapshot}");
    let after_click = last_tool_result(3);
    assert!(after_click.starts_with("clicked ref e2"), "{after_click}");
    assert!(after_click.contains("The code is 4417"), "{after_click}");
}
