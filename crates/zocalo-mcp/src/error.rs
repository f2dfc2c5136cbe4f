//! Errors of the MCP client and server.

/// What went wrong talking MCP.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The server could not be started or did not complete the MCP handshake.
    #[error(
        "MCP server `{server}` could not be started: {message}{}",
        tail(stderr)
    )]
    Start {
        server: String,
        message: String,
        /// The last lines the server wrote to stderr, if any.
        stderr: Vec<String>,
    },
    /// The server did not answer in time.
    #[error("MCP server `{server}`: {what} timed out after {secs} s")]
    Timeout {
        server: String,
        what: String,
        secs: f64,
    },
    /// The server stopped (crashed or closed the connection) during a request.
    #[error(
        "MCP server `{server}` stopped during {what} (it is restarted on the next call){}",
        tail(stderr)
    )]
    Stopped {
        server: String,
        what: String,
        stderr: Vec<String>,
    },
    /// The server answered with a protocol error.
    #[error("MCP server `{server}`: {what} failed: {message}")]
    Protocol {
        server: String,
        what: String,
        message: String,
    },
    /// No configured server of this name, or no such tool on it.
    #[error("{0}")]
    NotFound(String),
    /// Serving failed (stdio closed before the handshake, a broken transport, ...).
    #[error("MCP server: {0}")]
    Serve(String),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n  {}", lines.join("\n  "))
    }
}
