//! The MCP servers zocalo uses: `[mcp.servers.NAME]` in config.toml.
//!
//! [`McpClients`] holds one connection per configured server. Nothing starts until tools are
//! asked for; a stdio server is a child process whose stderr goes to the logs (target
//! `zocalo_mcp::stderr`) and whose last lines are kept for error messages. Every call has a
//! time limit; a server that exited is started again on the next call. A server that cannot
//! be reached is reported for that server only: the others still work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ContentBlock, Implementation,
};
use rmcp::service::{Peer, RunningService};
use rmcp::{RoleClient, ServiceError, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use zocalo_core::config::{McpConfig, McpServerConfig};
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::McpError;

/// Separates server and tool in the names the model sees: `NAME__TOOL`.
pub const TOOL_SEPARATOR: &str = "__";

/// Longest tool name providers accept (OpenAI: `^[a-zA-Z0-9_-]{1,64}$`).
const MAX_TOOL_NAME: usize = 64;

/// Lines of a server's stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// One tool of one server, as listed by `tools/list`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolInfo {
    /// The configured server name.
    pub server: String,
    /// The tool's own name on that server.
    pub name: String,
    pub description: String,
    /// The name the model calls it by: `SERVER__TOOL` (characters a provider rejects
    /// replaced by `_`, cut to 64).
    pub qualified_name: String,
    #[serde(skip)]
    pub input_schema: Value,
}

/// The outcome of listing one server's tools.
#[derive(Debug)]
pub struct ServerReport {
    pub server: String,
    pub tools: Result<Vec<ToolInfo>, McpError>,
}

/// The configured MCP servers (enabled ones only), connected on first use.
#[derive(Clone, Default)]
pub struct McpClients {
    servers: Vec<Arc<Connection>>,
}

impl McpClients {
    pub fn from_config(config: &McpConfig) -> Self {
        Self {
            servers: config
                .servers
                .iter()
                .filter(|(_, c)| c.enabled)
                .map(|(name, c)| Arc::new(Connection::new(name.clone(), c.clone())))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Server names, in config order.
    pub fn names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// Starts every server (concurrently) and lists its tools. A server that fails is reported
    /// in its entry; the rest are unaffected.
    pub async fn list(&self) -> Vec<ServerReport> {
        futures::future::join_all(self.servers.iter().map(|s| async move {
            ServerReport {
                server: s.name.clone(),
                tools: s.tools().await,
            }
        }))
        .await
    }

    /// Every reachable server's tools as zocalo tools named `SERVER__TOOL`. Unreachable
    /// servers are logged (warn) and left out.
    pub async fn tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut out: Vec<Arc<dyn Tool>> = Vec::new();
        for (report, conn) in self.list().await.into_iter().zip(&self.servers) {
            match report.tools {
                Ok(tools) => {
                    for info in tools {
                        out.push(Arc::new(McpTool {
                            conn: conn.clone(),
                            info,
                        }));
                    }
                }
                Err(e) => tracing::warn!("{e}; its tools are not offered"),
            }
        }
        out
    }

    /// Calls `tool` on `server` directly (what an [`McpTool`] does).
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Value,
    ) -> Result<CallToolResult, McpError> {
        let conn = self
            .servers
            .iter()
            .find(|s| s.name == server)
            .ok_or_else(|| McpError::NotFound(format!("no MCP server named `{server}`")))?;
        conn.call(tool, arguments).await
    }

    /// Stops every running server (stdio children get EOF, then are killed).
    pub async fn shutdown(&self) {
        for s in &self.servers {
            s.stop().await;
        }
    }
}

type Running = RunningService<RoleClient, ClientConfig>;

struct Live {
    service: Running,
    tools: Vec<ToolInfo>,
    /// Which start this is (1 for the first): a call that finds the server stopped discards
    /// only the session it used, not a newer one.
    generation: u32,
}

impl Live {
    fn is_closed(&self) -> bool {
        // The service loop ends (and drops its channel) when the transport closes.
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}

/// One configured server and, once started, its running session.
struct Connection {
    name: String,
    config: McpServerConfig,
    live: tokio::sync::Mutex<Option<Live>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    starts: AtomicU32,
}

impl Connection {
    fn new(name: String, config: McpServerConfig) -> Self {
        Self {
            name,
            config,
            live: tokio::sync::Mutex::new(None),
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            starts: AtomicU32::new(0),
        }
    }

    fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The running session, started (or restarted, if it exited) as needed; returns a peer
    /// handle so calls run without holding the lock.
    async fn peer(&self) -> Result<(Peer<RoleClient>, Vec<ToolInfo>, u32), McpError> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref() {
            if !l.is_closed() {
                return Ok((l.service.peer().clone(), l.tools.clone(), l.generation));
            }
            tracing::warn!(server = %self.name, "MCP server exited; restarting it");
        }
        *live = None;
        let started = self.start().await?;
        let out = (
            started.service.peer().clone(),
            started.tools.clone(),
            started.generation,
        );
        *live = Some(started);
        Ok(out)
    }

    /// Forgets session `generation` (it stopped), so the next call starts the server again.
    async fn discard(&self, generation: u32) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|l| l.generation == generation) {
            *live = None;
        }
    }

    async fn tools(&self) -> Result<Vec<ToolInfo>, McpError> {
        self.peer().await.map(|(_, tools, _)| tools)
    }

    async fn start(&self) -> Result<Live, McpError> {
        let n = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut t) = self.stderr.lock() {
            t.clear();
        }
        let secs = self.config.startup_timeout_secs;
        let start = async {
            let service = self.connect().await?;
            let tools = service
                .peer()
                .list_all_tools()
                .await
                .map_err(|e| self.request_error("tools/list", e))?;
            Ok::<_, McpError>(Live {
                tools: tools.into_iter().map(|t| self.info(t)).collect(),
                service,
                generation: n,
            })
        };
        let live = match tokio::time::timeout(Duration::from_secs_f64(secs), start).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(McpError::Start {
                    server: self.name.clone(),
                    message: format!("no answer within {secs} s (startup_timeout_secs)"),
                    stderr: self.stderr_tail(),
                })
            }
        };
        tracing::info!(server = %self.name, start = n, tools = live.tools.len(), "MCP server ready");
        Ok(live)
    }

    fn client_config() -> ClientConfig {
        ClientConfig::new(
            Default::default(),
            Implementation::new("zocalo", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn connect(&self) -> Result<Running, McpError> {
        let fail = |message: String| McpError::Start {
            server: self.name.clone(),
            message,
            stderr: Vec::new(),
        };
        if let Some(program) = &self.config.command {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(&self.config.args)
                .envs(&self.config.env)
                .kill_on_drop(true);
            if let Some(dir) = &self.config.cwd {
                cmd.current_dir(dir);
            }
            let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| fail(format!("cannot run {program:?}: {e}")))?;
            if let Some(stderr) = stderr {
                tokio::spawn(forward_stderr(
                    self.name.clone(),
                    stderr,
                    self.stderr.clone(),
                ));
            }
            match Self::client_config().serve(transport).await {
                Ok(running) => Ok(running),
                Err(e) => {
                    // Give the stderr reader a moment to catch the child's last words.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(McpError::Start {
                        server: self.name.clone(),
                        message: e.to_string(),
                        stderr: self.stderr_tail(),
                    })
                }
            }
        } else if let Some(url) = &self.config.url {
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            use rmcp::transport::StreamableHttpClientTransport;
            install_crypto_provider();
            let mut headers = std::collections::HashMap::new();
            for (k, v) in &self.config.headers {
                let name = k
                    .parse::<http::HeaderName>()
                    .map_err(|e| fail(format!("header name {k:?}: {e}")))?;
                let value = v
                    .parse::<http::HeaderValue>()
                    .map_err(|e| fail(format!("header {k}: {e}")))?;
                headers.insert(name, value);
            }
            let mut config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers);
            if let Some(var) = &self.config.bearer_token_env {
                match std::env::var(var) {
                    Ok(token) if !token.trim().is_empty() => {
                        config = config.auth_header(token.trim().to_owned());
                    }
                    _ => {
                        return Err(fail(format!(
                            "bearer_token_env names {var}, which is not set"
                        )))
                    }
                }
            }
            let transport = StreamableHttpClientTransport::from_config(config);
            Self::client_config()
                .serve(transport)
                .await
                .map_err(|e| fail(format!("{url}: {e}")))
        } else {
            Err(fail("neither `command` nor `url` is set".into()))
        }
    }

    fn info(&self, t: rmcp::model::Tool) -> ToolInfo {
        ToolInfo {
            server: self.name.clone(),
            qualified_name: qualified_name(&self.name, &t.name),
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
        }
    }

    fn request_error(&self, what: &str, e: ServiceError) -> McpError {
        match e {
            ServiceError::McpError(data) => McpError::Protocol {
                server: self.name.clone(),
                what: what.into(),
                message: data.message.to_string(),
            },
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => McpError::Stopped {
                server: self.name.clone(),
                what: what.into(),
                stderr: self.stderr_tail(),
            },
            ServiceError::Timeout { timeout } => McpError::Timeout {
                server: self.name.clone(),
                what: what.into(),
                secs: timeout.as_secs_f64(),
            },
            other => McpError::Protocol {
                server: self.name.clone(),
                what: what.into(),
                message: other.to_string(),
            },
        }
    }

    async fn call(&self, tool: &str, arguments: Value) -> Result<CallToolResult, McpError> {
        let (peer, _, generation) = self.peer().await?;
        let what = format!("tools/call {tool}");
        let mut params = CallToolRequestParams::new(tool.to_owned());
        match arguments {
            Value::Object(o) => params = params.with_arguments(o),
            Value::Null => {}
            other => {
                return Err(McpError::Protocol {
                    server: self.name.clone(),
                    what,
                    message: format!("arguments must be a JSON object, got {other}"),
                })
            }
        }
        let secs = self.config.timeout_secs;
        match tokio::time::timeout(Duration::from_secs_f64(secs), peer.call_tool(params)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let e = self.request_error(&what, e);
                if matches!(e, McpError::Stopped { .. }) {
                    self.discard(generation).await;
                    // Let the reader catch up so the message carries the crash output.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Err(self.request_error(&what, ServiceError::TransportClosed));
                }
                Err(e)
            }
            Err(_) => Err(McpError::Timeout {
                server: self.name.clone(),
                what,
                secs,
            }),
        }
    }

    async fn stop(&self) {
        if let Some(mut l) = self.live.lock().await.take() {
            let _ = l.service.close_with_timeout(Duration::from_secs(2)).await;
        }
    }
}

/// Each stderr line of a stdio server to the log (info, target `zocalo_mcp::stderr`), and
/// the last [`STDERR_TAIL`] kept for error messages.
async fn forward_stderr(
    server: String,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "zocalo_mcp::stderr", server = %server, "{line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// reqwest (for streamable-HTTP servers) needs a process-wide rustls crypto provider; ring is
/// the one the rest of the workspace's TLS already builds.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `SERVER__TOOL`, with characters outside `[A-Za-z0-9_-]` replaced by `_`, cut to 64 bytes.
pub fn qualified_name(server: &str, tool: &str) -> String {
    let raw = format!("{server}{TOOL_SEPARATOR}{tool}");
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_TOOL_NAME);
    s
}

/// A tool of an MCP server, offered to the model as `SERVER__TOOL`.
pub struct McpTool {
    conn: Arc<Connection>,
    info: ToolInfo,
}

impl McpTool {
    pub fn info(&self) -> &ToolInfo {
        &self.info
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.info.qualified_name.clone(),
            description: if self.info.description.is_empty() {
                format!(
                    "`{}` from the MCP server `{}`.",
                    self.info.name, self.info.server
                )
            } else {
                self.info.description.clone()
            },
            parameters: self.info.input_schema.clone(),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        // Every failure reaching a server is something the model can work around (another
        // tool, another answer), never a reason to abandon the whole ask.
        let result = self
            .conn
            .call(&self.info.name, arguments)
            .await
            .map_err(|e| ToolError::Recoverable(e.to_string()))?;
        let text = result_text(&result);
        if result.is_error == Some(true) {
            Err(ToolError::Recoverable(text))
        } else {
            Ok(text)
        }
    }
}

/// The text a model sees for a tool result: the text blocks in order, a note for other kinds,
/// else the structured content as JSON.
pub fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            ContentBlock::Image(i) => parts.push(format!("[image, {}]", i.mime_type)),
            ContentBlock::Audio(a) => parts.push(format!("[audio, {}]", a.mime_type)),
            ContentBlock::Resource(r) => parts
                .push(serde_json::to_string(&r.resource).unwrap_or_else(|_| "[resource]".into())),
            ContentBlock::ResourceLink(l) => parts.push(format!("[resource link: {}]", l.uri)),
            #[allow(unreachable_patterns)]
            _ => parts.push("[unsupported content]".into()),
        }
    }
    if parts.is_empty() {
        if let Some(v) = &result.structured_content {
            return v.to_string();
        }
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_are_provider_safe() {
        assert_eq!(qualified_name("files", "read_file"), "files__read_file");
        assert_eq!(qualified_name("gh", "repo.list/all"), "gh__repo_list_all");
        let long = qualified_name("s", &"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("s__x"));
    }
}
