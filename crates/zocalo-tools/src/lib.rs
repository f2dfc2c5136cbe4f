//! zocalo-tools: the computer's own tools for the model: workspace files, shell, web fetch.
//!
//! - [`workspace`]: the [`Workspace`] root and [`Workspace::resolve`], which keeps every path
//!   inside it (no `..` above the root, no absolute path elsewhere, no link leading out).
//! - [`files`]: `file_read {path, offset?, limit?}`, `file_write {path, content}`,
//!   `file_edit {path, old, new}`, `file_list {path?, depth?}`.
//! - [`search`]: `file_search {pattern, path?}`, ripgrep's crates over the workspace.
//!   Listing and search walk like ripgrep: `.gitignore` honoured, `.git` skipped.
//! - [`shell`]: `shell {command, timeout_s?}`, `sh -c` in the workspace through the skills'
//!   Landlock launcher, clean environment, process group killed at the time limit.
//! - [`web_fetch`]: `web_fetch {url}`, GET with redirects checked hop by hop, HTML as
//!   Markdown; [`net_guard`]: the address policy that keeps it off internal networks.
//! - [`args`]: typed arguments, their JSON Schema derived with `schemars`.
//!
//! [`tools`] builds them all from a [`ToolsConfig`]. Names and arguments are a contract
//! (docs/tools.md, DESIGN section 3). Results are text for the model; a mistake the model can
//! fix (a bad path, an ambiguous edit, a refused URL) is a [`ToolError::Recoverable`], and
//! only breakage beyond its reach is [`ToolError::Fatal`]. Permissions and approvals are not
//! decided here: the ask loop does that before calling a tool.
//!
//! [`ToolError::Recoverable`]: zocalo_core::ToolError::Recoverable
//! [`ToolError::Fatal`]: zocalo_core::ToolError::Fatal

pub mod args;
pub mod error;
pub mod files;
pub mod net_guard;
pub mod search;
pub mod shell;
mod walk;
pub mod web_fetch;
pub mod workspace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zocalo_core::paths::DataHome;
use zocalo_core::Tool;

pub use error::ToolsError;
pub use files::{FileEdit, FileList, FileRead, FileWrite};
pub use net_guard::AddressPolicy;
pub use search::FileSearch;
pub use shell::{Shell, ShellConfig, ShellOutput};
pub use web_fetch::{WebFetch, WebFetchConfig};
pub use workspace::{PathError, Workspace};

/// The tool names, in the order [`tools`] returns them.
pub const TOOL_NAMES: [&str; 7] = [
    "file_read",
    "file_write",
    "file_edit",
    "file_list",
    "file_search",
    "shell",
    "web_fetch",
];

/// What the runtime passes to build the tools.
#[derive(Clone, Debug)]
pub struct ToolsConfig {
    /// `[workspace] root`; created (0700) when missing. See [`default_workspace_root`].
    pub workspace_root: PathBuf,
    /// The shell's sandbox launcher: the `zocalo` binary (`std::env::current_exe()`).
    /// `None` runs shell commands without write confinement.
    pub launcher: Option<PathBuf>,
    /// `[tools.web_fetch] allow_private`: let `web_fetch` reach loopback and private networks.
    pub allow_private: bool,
    /// The shell's time limit when the model gives none (default 60 s).
    pub shell_timeout: Duration,
    /// The largest `timeout_s` the shell accepts (default 600 s).
    pub shell_max_timeout: Duration,
    /// Shell output kept (default 64 KiB).
    pub shell_max_output: usize,
    /// Limits of `web_fetch` (its `policy.allow_private` is replaced by `allow_private`).
    pub web_fetch: WebFetchConfig,
}

impl ToolsConfig {
    /// The defaults, with the workspace at `workspace_root`.
    pub fn new(workspace_root: impl Into<PathBuf>) -> Self {
        let shell = ShellConfig::default();
        Self {
            workspace_root: workspace_root.into(),
            launcher: None,
            allow_private: false,
            shell_timeout: shell.default_timeout,
            shell_max_timeout: shell.max_timeout,
            shell_max_output: shell.max_output,
            web_fetch: WebFetchConfig::default(),
        }
    }
}

/// The default `[workspace] root`: `$ZOCALO_HOME/workspace`.
pub fn default_workspace_root(home: &DataHome) -> PathBuf {
    home.root().join("workspace")
}

/// All the tools, sharing one workspace: file_read, file_write, file_edit, file_list,
/// file_search, shell, web_fetch.
pub fn tools(config: &ToolsConfig) -> Result<Vec<Arc<dyn Tool>>, ToolsError> {
    let ws = Arc::new(Workspace::new(&config.workspace_root)?);
    let mut out = files::tools(&ws);
    out.push(Arc::new(FileSearch::new(ws.clone())));
    out.push(Arc::new(Shell::new(
        ws,
        ShellConfig {
            launcher: config.launcher.clone(),
            default_timeout: config.shell_timeout,
            max_timeout: config.shell_max_timeout,
            max_output: config.shell_max_output,
        },
    )));
    let mut web = config.web_fetch.clone();
    web.policy.allow_private = config.allow_private;
    out.push(Arc::new(WebFetch::new(web)));
    Ok(out)
}
