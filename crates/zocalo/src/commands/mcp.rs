//! `zocalo mcp serve | tools`: zocalo's tools for other agents over MCP, and the tools of the
//! MCP servers configured in config.toml (`[mcp.servers.NAME]`) for zocalo's ask loop.

use clap::Subcommand;
use zocalo_runtime::{mcp, Runtime};

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
    /// cannot be reached is reported and the others are still listed. --json: one array
    /// [{"server","name","description","qualified_name"}], and {"server","name":null,
    /// "description":null,"error"} for an unreachable server.
    Tools,
}

pub async fn run(ctx: &Runtime, cmd: McpCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        McpCmd::Serve { http: Some(addr) } => {
            mcp::serve_http(ctx, &addr, |a| {
                eprintln!("zocalo MCP endpoint: http://{a}/mcp")
            })
            .await
        }
        McpCmd::Serve { http: None } => mcp::serve_stdio(ctx).await,
        McpCmd::Tools => {
            let (servers, rows) = mcp::configured_tools(ctx).await;
            for e in rows.iter().filter_map(|r| r.error.as_ref()) {
                eprintln!("warning: {e}");
            }
            if json {
                return super::print_json(&rows);
            }
            if servers == 0 {
                println!(
                    "no MCP servers configured; add [mcp.servers.NAME] to {} (see docs/mcp.md)",
                    ctx.home.config_file().display()
                );
            }
            for r in &rows {
                match (&r.qualified_name, &r.description) {
                    (Some(q), Some(d)) => println!("{q}  {}", super::one_line(d, 90)),
                    _ => println!("{}: unreachable (see the warning above)", r.server),
                }
            }
            Ok(())
        }
    }
}
