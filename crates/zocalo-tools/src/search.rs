//! `file_search`: a regular expression over the contents of the workspace's files, with
//! ripgrep's own crates: `ignore` walks (see [`crate::walk`]), `grep-regex` matches and
//! `grep-searcher` reads files line by line, skipping binary ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::Lossy;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::args::{model_err, parse, short, spec_for};
use crate::files::{cut, io_err};
use crate::walk::walk;
use crate::Workspace;

/// At most this many matching lines are returned.
pub const MAX_MATCHES: usize = 200;
/// A matching line is cut to this many bytes.
pub const MAX_LINE_BYTES: usize = 300;
/// Files larger than this are skipped.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// The search stops after this long and says so.
pub const TIME_BUDGET: Duration = Duration::from_secs(10);

/// Search file contents in the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Regular expression (Rust regex syntax, like ripgrep), matched against each line.
    /// Prefix with (?i) to ignore case.
    pub pattern: String,
    /// File or directory to search, relative to the workspace (default: all of it).
    #[serde(default)]
    pub path: Option<String>,
}

pub struct FileSearch {
    ws: Arc<Workspace>,
}

impl FileSearch {
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

#[async_trait]
impl Tool for FileSearch {
    fn spec(&self) -> ToolSpec {
        spec_for::<SearchArgs>(
            "file_search",
            "Search the contents of the workspace's files with a regular expression, like \
             ripgrep: skips binary files, .git and what .gitignore excludes. Returns \
             `path:line: text` for each matching line, at most 200.",
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: SearchArgs = parse("file_search", arguments)?;
        let ws = self.ws.clone();
        tokio::task::spawn_blocking(move || search(&ws, &args))
            .await
            .map_err(|e| ToolError::Fatal(format!("file_search task failed: {e}")))?
    }
}

fn search(ws: &Workspace, args: &SearchArgs) -> Result<String, ToolError> {
    if args.pattern.is_empty() {
        return Err(model_err("pattern is empty: give a regular expression"));
    }
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .size_limit(10 * (1 << 20))
        .dfa_size_limit(10 * (1 << 20))
        .build(&args.pattern)
        .map_err(|e| {
            model_err(format!(
                "invalid regular expression {}: {e}",
                short(&args.pattern)
            ))
        })?;
    let target = ws.resolve(args.path.as_deref().unwrap_or("."))?;
    let shown_target = ws.display(&target);
    let meta = std::fs::metadata(&target).map_err(|e| io_err(&shown_target, e))?;

    let mut searcher = SearcherBuilder::new()
        .line_number(true)
        .binary_detection(BinaryDetection::quit(b'\0'))
        .build();
    let started = Instant::now();
    let mut out = String::new();
    let mut matches = 0usize;
    let mut files = 0usize;
    let mut stopped: Option<String> = None;
    let mut capped = false;

    let candidates: Box<dyn Iterator<Item = std::path::PathBuf>> = if meta.is_file() {
        Box::new(std::iter::once(target.clone()))
    } else {
        Box::new(
            walk(ws.root(), &target, None)
                .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
                .filter(|e| e.metadata().is_ok_and(|m| m.len() <= MAX_FILE_BYTES))
                .map(|e| e.into_path()),
        )
    };
    for path in candidates {
        if started.elapsed() > TIME_BUDGET {
            stopped = Some(format!(
                "search stopped after {} s ({files} files searched): narrow the path",
                TIME_BUDGET.as_secs()
            ));
            break;
        }
        if capped {
            stopped = Some(format!(
                "more than {MAX_MATCHES} matching lines; only the first {MAX_MATCHES} are shown: narrow the pattern or the path"
            ));
            break;
        }
        files += 1;
        let shown = ws.display(&path);
        // An unreadable file is skipped, as ripgrep does (it would only say so on stderr).
        let _ = searcher.search_path(
            &matcher,
            &path,
            Lossy(|line_no, line| {
                if matches == MAX_MATCHES {
                    capped = true;
                    return Ok(false);
                }
                let text = line.trim_end_matches(['\n', '\r']);
                let kept = cut(text, MAX_LINE_BYTES);
                out.push_str(&format!(
                    "{shown}:{line_no}: {kept}{}\n",
                    if kept.len() < text.len() { " …" } else { "" }
                ));
                matches += 1;
                Ok(true)
            }),
        );
    }
    if matches == 0 {
        let mut text = format!(
            "no matches for {} in {shown_target} ({files} files searched)",
            short(&args.pattern)
        );
        if let Some(s) = stopped {
            text.push_str(&format!("; {s}"));
        }
        return Ok(text);
    }
    if capped && stopped.is_none() {
        stopped = Some(format!(
            "more than {MAX_MATCHES} matching lines; only the first {MAX_MATCHES} are shown: narrow the pattern or the path"
        ));
    }
    if let Some(s) = stopped {
        out.push_str(&format!("[... {s} ...]\n"));
    }
    Ok(out)
}
