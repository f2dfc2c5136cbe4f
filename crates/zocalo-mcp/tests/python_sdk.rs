//! zocalo's MCP client against a server made with the official MCP Python SDK (FastMCP, see
//! tests/py/fastmcp_server.py), over stdio and streamable HTTP; and zocalo's streamable-HTTP
//! server against zocalo's client. Needs ZOCALO_TEST_PYTHON (a Python with `mcp` installed,
//! tools/py-requirements.txt); skipped with a reason when unset, unless ZOCALO_REQUIRE_TOOLS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zocalo_core::{Config, Tool, ToolError};
use zocalo_mcp::{McpClients, McpError};

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

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py/fastmcp_server.py")
        .display()
        .to_string()
}

fn clients(toml: &str) -> McpClients {
    let cfg = Config::parse(toml, Path::new("config.toml")).unwrap();
    McpClients::from_config(&cfg.mcp)
}

fn stdio_server(py: &str, name: &str, extra: &str) -> String {
    format!(
        "[mcp.servers.{name}]\ncommand = {py:?}\nargs = [{:?}]\n{extra}\n",
        fixture()
    )
}

async fn tool(clients: &McpClients, name: &str) -> Arc<dyn Tool> {
    clients
        .tools()
        .await
        .into_iter()
        .find(|t| t.spec().name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_server_tools_are_listed_and_called() {
    let Some(py) = python() else { return };
    let c = clients(&stdio_server(&py, "py", ""));
    let reports = c.list().await;
    assert_eq!(reports.len(), 1);
    let tools = reports[0].tools.as_ref().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    for n in ["add", "echo", "fail", "crash", "slow", "pid"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let add = tools.iter().find(|t| t.name == "add").unwrap();
    assert_eq!(add.description, "Add two integers.");
    assert_eq!(add.qualified_name, "py__add");

    // As the model sees it: NAME__TOOL with the server's own JSON Schema.
    let add = tool(&c, "py__add").await;
    let spec = add.spec();
    assert_eq!(spec.parameters["properties"]["a"]["type"], "integer");
    assert_eq!(spec.parameters["required"], json!(["a", "b"]));
    assert_eq!(add.call(json!({"a": 2, "b": 40})).await.unwrap(), "42");

    // A tool error is recoverable and carries the server's message.
    let fail = tool(&c, "py__fail").await;
    match fail.call(json!({"message": "no such city"})).await {
        Err(ToolError::Recoverable(m)) => assert!(m.contains("no such city"), "{m}"),
        other => panic!("{other:?}"),
    }
    // So are arguments the server rejects.
    match add.call(json!({"a": "two"})).await {
        Err(ToolError::Recoverable(m)) => assert!(!m.is_empty()),
        other => panic!("{other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_is_restarted_on_the_next_call() {
    let Some(py) = python() else { return };
    let c = clients(&stdio_server(&py, "py", ""));
    let pid = tool(&c, "py__pid").await;
    let first: u32 = pid.call(json!({})).await.unwrap().parse().unwrap();

    let crash = tool(&c, "py__crash").await;
    match crash.call(json!({})).await {
        Err(ToolError::Recoverable(m)) => {
            assert!(m.contains("stopped"), "{m}");
            // Its stderr is surfaced in the error.
            assert!(m.contains("crashing on purpose"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let second: u32 = pid.call(json!({})).await.unwrap().parse().unwrap();
    assert_ne!(first, second, "the server was not restarted");
    let echo = tool(&c, "py__echo").await;
    assert_eq!(echo.call(json!({"text": "back"})).await.unwrap(), "back");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_times_out_and_the_server_keeps_working() {
    let Some(py) = python() else { return };
    let c = clients(&stdio_server(&py, "py", "timeout_secs = 0.5"));
    let slow = tool(&c, "py__slow").await;
    let t0 = std::time::Instant::now();
    match slow.call(json!({"seconds": 10})).await {
        Err(ToolError::Recoverable(m)) => assert!(m.contains("timed out after 0.5 s"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    let echo = tool(&c, "py__echo").await;
    assert_eq!(
        echo.call(json!({"text": "still here"})).await.unwrap(),
        "still here"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_reported_and_the_rest_work() {
    let Some(py) = python() else { return };
    let mut toml = stdio_server(&py, "good", "");
    toml.push_str("[mcp.servers.missing]\ncommand = \"/nonexistent/mcp-server\"\n");
    // A program that exits at once, after a word on stderr.
    toml.push_str(
        "[mcp.servers.dies]\ncommand = \"sh\"\nargs = [\"-c\", \"echo boom: bad config >&2; exit 1\"]\n",
    );
    toml.push_str(
        "[mcp.servers.nothere]\nurl = \"http://127.0.0.1:9/mcp\"\nstartup_timeout_secs = 5\n",
    );
    let c = clients(&toml);
    let reports = c.list().await;
    let by = |n: &str| reports.iter().find(|r| r.server == n).unwrap();
    assert!(by("good").tools.as_ref().unwrap().len() >= 6);
    let missing = by("missing").tools.as_ref().unwrap_err().to_string();
    assert!(
        missing.contains("missing") && missing.contains("/nonexistent/mcp-server"),
        "{missing}"
    );
    match by("dies").tools.as_ref().unwrap_err() {
        e @ McpError::Start { stderr, .. } => {
            assert!(stderr.iter().any(|l| l.contains("boom: bad config")), "{e}")
        }
        e => panic!("{e}"),
    }
    let nothere = by("nothere").tools.as_ref().unwrap_err().to_string();
    assert!(
        nothere.contains("nothere") && nothere.contains("127.0.0.1:9"),
        "{nothere}"
    );
    // The ask loop still gets the reachable server's tools.
    let names: Vec<String> = c.tools().await.iter().map(|t| t.spec().name).collect();
    assert!(names.contains(&"good__add".to_string()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("good__")), "{names:?}");
    c.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_server_from_the_python_sdk() {
    let Some(py) = python() else { return };
    let port = free_port();
    let mut child = tokio::process::Command::new(&py)
        .arg(fixture())
        .args(["--http", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for it to listen.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the Python server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = clients(&format!(
        "[mcp.servers.web]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Test = \"1\" }}\n"
    ));
    let add = tool(&c, "web__add").await;
    assert_eq!(add.call(json!({"a": 1, "b": 2})).await.unwrap(), "3");
    match tool(&c, "web__fail")
        .await
        .call(json!({"message": "nope"}))
        .await
    {
        Err(ToolError::Recoverable(m)) => assert!(m.contains("nope"), "{m}"),
        other => panic!("{other:?}"),
    }
    c.shutdown().await;
    child.kill().await.unwrap();
}
