//! `zocalo mcp serve | tools`: zocalo's tools for other agents over MCP, and the tools of the
//! MCP servers configured in config.toml (`[mcp.servers.NAME]`) for zocalo's ask loop.
//!
//! The tools served here wire the subsystem libraries together the way the other commands
//! do; zocalo-mcp itself only speaks the protocol.

use clap::Subcommand;
use serde_json::{json, Value};
use zocalo_runtime::mcp::{http_router, tool_server};
use zocalo_runtime::Runtime;

use super::print_json;
use crate::exit::usage;

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Serve zocalo's tools (memory, skills, schedules, pool, agents) over MCP on stdin/stdout, for
    /// Claude Desktop, Codex, goose or any MCP client. Logs go to stderr.
    Serve {
        /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (loopback only, no
        /// token; `zocalo serve` mounts it behind its token).
        #[arg(long, value_name = "IP:PORT")]
        http: Option<String>,
    },
    /// List the tools of every MCP server in config.toml ([mcp.servers.NAME]); a server that
    /// cannot be reached is reported and the others are still listed.
    Tools {
        /// One JSON array: [{"server","name","description","qualified_name"}], and
        /// {"server","name":null,"description":null,"error"} for an unreachable server.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &Runtime, cmd: McpCmd) -> anyhow::Result<()> {
    match cmd {
        McpCmd::Serve { http: Some(addr) } => serve_http(ctx, &addr).await,
        McpCmd::Serve { http: None } => {
            let store = ctx.store().await?;
            let server = tool_server(ctx, store.clone());
            let r = zocalo_mcp::serve_stdio(server).await;
            store.close().await;
            Ok(r?)
        }
        McpCmd::Tools { json } => tools(ctx, json).await,
    }
}

async fn tools(ctx: &Runtime, json: bool) -> anyhow::Result<()> {
    let clients = ctx.mcp_clients();
    let reports = clients.list().await;
    clients.shutdown().await;
    let mut rows = Vec::new();
    for r in &reports {
        match &r.tools {
            Ok(tools) => {
                for t in tools {
                    rows.push(json!({
                        "server": t.server,
                        "name": t.name,
                        "description": t.description,
                        "qualified_name": t.qualified_name,
                    }));
                }
            }
            Err(e) => {
                eprintln!("warning: {e}");
                rows.push(json!({
                    "server": r.server,
                    "name": null,
                    "description": null,
                    "error": e.to_string(),
                }));
            }
        }
    }
    if json {
        return print_json(&Value::Array(rows));
    }
    if reports.is_empty() {
        println!(
            "no MCP servers configured; add [mcp.servers.NAME] to {} (see docs/mcp.md)",
            ctx.home.config_file().display()
        );
    }
    for r in &reports {
        match &r.tools {
            Ok(tools) if tools.is_empty() => println!("{}: no tools", r.server),
            Ok(tools) => {
                for t in tools {
                    let d = one_line(&t.description, 90);
                    println!("{}  {}", t.qualified_name, d);
                }
            }
            Err(_) => println!("{}: unreachable (see the warning above)", r.server),
        }
    }
    Ok(())
}

fn one_line(text: &str, max: usize) -> String {
    let d = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if d.chars().count() > max {
        format!("{}…", d.chars().take(max - 1).collect::<String>())
    } else {
        d
    }
}

/// The configured MCP servers, one set of connections per process: every ask loop built in
/// it (`zocalo serve` builds one for chat and another for `agents_spawn`) shares them, so
/// each server runs once, not once per ask loop. The first config seen wins (a process loads
/// one config.toml).
async fn serve_http(ctx: &Runtime, addr: &str) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| usage(format!("--http {addr:?}: expected IP:PORT ({e})")))?;
    if !addr.ip().is_loopback() {
        return Err(usage(format!(
            "--http {addr}: only loopback addresses (this endpoint has no token); use \
             `zocalo serve` for a token-protected /mcp"
        )));
    }
    let store = ctx.store().await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hosts = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
    ];
    let app = axum::Router::new().nest_service(
        "/mcp",
        http_router(ctx, store.clone(), Some(hosts), shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    eprintln!("zocalo MCP endpoint: http://{}/mcp", listener.local_addr()?);
    let stop = shutdown.clone();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await;
    shutdown.cancel();
    store.close().await;
    Ok(r?)
}
