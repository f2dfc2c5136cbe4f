//! MCP (Model Context Protocol) for zocalo, both directions, on the `rmcp` crate.
//!
//! - [`server`]: any set of zocalo [`Tool`](zocalo_core::Tool)s served as an MCP server, over
//!   stdio ([`server::serve_stdio`], what `zocalo mcp serve` runs) or streamable HTTP
//!   ([`server::http_service`], mounted at `/mcp` under `zocalo serve`). Tool failures are MCP
//!   tool errors (`isError`); the server keeps running.
//! - [`client`]: the servers configured under `[mcp.servers.NAME]`, started lazily, their tools
//!   offered to the ask loop as zocalo `Tool`s named `NAME__TOOL`; calls time out, a crashed
//!   server is restarted on the next call, its stderr goes to the logs.
//! - [`config`]: what `[mcp.servers.NAME]` may say, checked when the runtime loads config.toml.
//! - [`typed`]: a zocalo `Tool` from a typed argument struct, its JSON Schema from `schemars`.
//!
//! This crate knows no other subsystem: the CLI decides which tools to serve.

pub mod client;
pub mod config;
pub mod error;
pub mod server;
pub mod typed;

pub use client::{McpClients, McpTool, ServerReport, ToolInfo, TOOL_SEPARATOR};
pub use error::McpError;
pub use server::{http_router, http_service, serve_stdio, HttpService, ToolServer};
pub use typed::{schema_for, typed_tool};

/// Re-exported so callers derive `JsonSchema` with the same version this crate uses.
pub use schemars;
