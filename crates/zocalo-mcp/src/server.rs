//! zocalo's tools as an MCP server: [`ToolServer`] answers `tools/list` with each tool's name,
//! description and JSON Schema and runs `tools/call`; a tool that fails returns an MCP tool
//! error (`isError: true`, the message as text) and the server keeps serving. An unknown tool
//! name is a JSON-RPC invalid-params error, as the MCP specification says.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool as McpToolDef,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use zocalo_core::Tool;

use crate::McpError;

/// An MCP server over a fixed set of zocalo tools. Cheap to clone (one per HTTP session).
#[derive(Clone)]
pub struct ToolServer {
    tools: Arc<Vec<Arc<dyn Tool>>>,
    instructions: Option<Arc<str>>,
}

impl ToolServer {
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> Self {
        Self {
            tools: Arc::new(tools),
            instructions: None,
        }
    }

    /// Text the client may show its model about how to use this server.
    pub fn with_instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(Arc::from(text.into()));
        self
    }

    /// The tool definitions `tools/list` returns, in registration order.
    pub fn definitions(&self) -> Vec<McpToolDef> {
        self.tools
            .iter()
            .map(|t| {
                let spec = t.spec();
                let schema: JsonObject = match spec.parameters {
                    Value::Object(o) => o,
                    _ => {
                        let mut o = JsonObject::new();
                        o.insert("type".into(), Value::String("object".into()));
                        o
                    }
                };
                McpToolDef::new(spec.name, spec.description, Arc::new(schema))
            })
            .collect()
    }

    fn find(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.spec().name == name)
    }

    /// Runs one call: a tool's failure is a tool error result, never a protocol error.
    pub async fn call(&self, name: &str, arguments: Option<JsonObject>) -> Option<CallToolResult> {
        let tool = self.find(name)?;
        let args = Value::Object(arguments.unwrap_or_default());
        Some(match tool.call(args).await {
            Ok(text) => {
                let structured = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => Some(v),
                    _ => None,
                };
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = structured;
                r
            }
            Err(e) => {
                tracing::info!(tool = name, error = %e, "MCP tool call failed");
                CallToolResult::error(vec![ContentBlock::text(e.to_string())])
            }
        })
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        let info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("zocalo", env!("CARGO_PKG_VERSION"))
                    .with_title("zocalo")
                    .with_description(
                        "A personal AI computer: memory, skills, schedules, a compute pool.",
                    ),
            );
        match &self.instructions {
            Some(text) => info.with_instructions(text.to_string()),
            None => info,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.definitions()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.call(&request.name, request.arguments).await {
            Some(result) => Ok(result.into()),
            None => {
                let known: Vec<String> = self.tools.iter().map(|t| t.spec().name).collect();
                Err(ErrorData::invalid_params(
                    format!(
                        "unknown tool {:?}; this server has: {}",
                        request.name,
                        known.join(", ")
                    ),
                    None,
                ))
            }
        }
    }
}

/// Serves `server` on this process's stdin/stdout until the client disconnects. Logs must go
/// to stderr: stdout carries the protocol.
pub async fn serve_stdio(server: ToolServer) -> Result<(), McpError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Serve(format!("the MCP handshake on stdio failed: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Serve(format!("the stdio server stopped: {e}")))?;
    Ok(())
}

/// The streamable-HTTP MCP endpoint: a tower `Service` for axum
/// (`Router::nest_service("/mcp", http_service(...))`).
pub type HttpService = StreamableHttpService<ToolServer, LocalSessionManager>;

/// Builds the streamable-HTTP service over `server`. `allowed_hosts`: the `Host` values
/// accepted (DNS-rebinding protection); `None` accepts any, for a mount that already
/// authenticates every request (zocalo serve's bearer token). Cancelling `shutdown` ends every
/// open session.
pub fn http_service(
    server: ToolServer,
    allowed_hosts: Option<Vec<String>>,
    shutdown: CancellationToken,
) -> HttpService {
    let config = StreamableHttpServerConfig::default().with_cancellation_token(shutdown);
    let config = match allowed_hosts {
        Some(hosts) => config.with_allowed_hosts(hosts),
        None => config.disable_allowed_hosts(),
    };
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// [`http_service`] as an axum `Router` answering every path it is nested at, for
/// `ServerBuilder::nest("/mcp", ...)` / `Router::nest_service("/mcp", ...)`.
pub fn http_router(
    server: ToolServer,
    allowed_hosts: Option<Vec<String>>,
    shutdown: CancellationToken,
) -> axum::Router {
    axum::Router::new().fallback_service(http_service(server, allowed_hosts, shutdown))
}
