//! Errors of setting the tools up (a tool call's own errors are [`zocalo_core::ToolError`]s).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The workspace root cannot be created or opened.
    #[error("workspace {path}: {source}")]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The workspace root exists but is a file (or something else that is not a directory).
    #[error(
        "workspace {0} is not a directory: set [workspace] root in config.toml to a directory"
    )]
    NotADirectory(PathBuf),
    /// The HTTP client for `web_fetch` cannot be built (no TLS backend, say).
    #[error("web_fetch: cannot build the HTTP client: {0}")]
    HttpClient(String),
}
