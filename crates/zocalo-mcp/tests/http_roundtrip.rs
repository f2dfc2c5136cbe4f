//! zocalo's streamable-HTTP MCP service mounted in an axum router (as `zocalo serve` mounts it
//! at /mcp) and used by zocalo's own MCP client over real loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use zocalo_core::{Config, ToolError};
use zocalo_mcp::{schemars, typed_tool, McpClients, ToolServer};

#[derive(Deserialize, schemars::JsonSchema)]
struct Shout {
    /// Text to upper-case.
    text: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_http_service_serves_tools_and_tool_errors() {
    let server = ToolServer::new(vec![
        typed_tool("shout", "Upper-cases text.", |a: Shout| async move {
            Ok(a.text.to_uppercase())
        }),
        typed_tool("broken", "Always fails.", |_: Shout| async move {
            Err(ToolError::Fatal("the disk is on fire".into()))
        }),
    ]);
    let shutdown = CancellationToken::new();
    let app = axum::Router::new().nest_service(
        "/mcp",
        zocalo_mcp::http_service(server, None, shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .unwrap();
    });

    let cfg = Config::parse(
        &format!("[mcp.servers.self]\nurl = \"http://{addr}/mcp\"\n"),
        Path::new("config.toml"),
    )
    .unwrap();
    let clients = McpClients::from_config(&cfg.mcp);
    let reports = clients.list().await;
    let tools = reports[0].tools.as_ref().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].name, "shout");
    assert_eq!(tools[0].description, "Upper-cases text.");

    let r = clients
        .call("self", "shout", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(zocalo_mcp::client::result_text(&r), "HI");
    assert_ne!(r.is_error, Some(true));

    let r = clients
        .call("self", "broken", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(zocalo_mcp::client::result_text(&r), "the disk is on fire");

    // Bad arguments: a tool error naming the problem, and the server still answers.
    let r = clients.call("self", "shout", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(zocalo_mcp::client::result_text(&r).contains("`text`"));

    // An unknown tool is a protocol error naming the tools there are.
    let e = clients
        .call("self", "nope", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown tool") && e.contains("shout"), "{e}");
    let r = clients
        .call("self", "shout", json!({"text": "ok"}))
        .await
        .unwrap();
    assert_eq!(zocalo_mcp::client::result_text(&r), "OK");

    clients.shutdown().await;
    shutdown.cancel();
}
