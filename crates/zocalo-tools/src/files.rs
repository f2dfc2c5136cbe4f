//! The file tools: `file_read`, `file_write`, `file_edit` and `file_list`, each confined to
//! the [`Workspace`] (`file_search` lives in [`crate::search`]).
//!
//! Every call resolves its path with [`Workspace::resolve`] first and does its I/O on a
//! blocking thread. Writes go to a temporary file in the target's directory that is then
//! renamed over the target, so a reader never sees half a file.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::args::{model_err, parse, spec_for};
use crate::walk::walk;
use crate::Workspace;

/// `file_read` returns at most this many bytes of text per call.
pub const MAX_READ_BYTES: usize = 256 * 1024;
/// `file_write` accepts at most this much content.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// `file_edit` works on files up to this size.
pub const MAX_EDIT_BYTES: u64 = 4 * 1024 * 1024;
/// `file_list`'s depth when none is given, and the most it accepts.
pub const DEFAULT_LIST_DEPTH: usize = 2;
pub const MAX_LIST_DEPTH: usize = 6;
/// `file_list` shows at most this many entries.
pub const MAX_LIST_ENTRIES: usize = 500;
/// A file whose first 8 KiB hold a NUL byte or invalid UTF-8 is binary.
const SNIFF_BYTES: u64 = 8 * 1024;

/// Run `f` on a blocking thread; a panic or a cancelled task is fatal.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::Fatal(format!("file tool task failed: {e}")))?
}

/// An I/O error on `shown` as a message for the model.
pub(crate) fn io_err(shown: &str, e: std::io::Error) -> ToolError {
    use std::io::ErrorKind::*;
    let what = match e.kind() {
        NotFound => "no such file or directory".to_owned(),
        PermissionDenied => "permission denied".to_owned(),
        NotADirectory => "a part of the path is a file, not a directory".to_owned(),
        IsADirectory => "is a directory".to_owned(),
        _ => e.to_string(),
    };
    model_err(format!("{shown}: {what}"))
}

/// Whether `head` (the start of a file) looks like text: no NUL, valid UTF-8 except for a
/// sequence cut at the end.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn binary_err(shown: &str, len: u64) -> ToolError {
    model_err(format!(
        "{shown} is a binary file ({len} bytes), not text; file_read only returns text"
    ))
}

// ---------------------------------------------------------------------------------------------
// file_read

/// Read a text file of the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// File path, relative to the workspace.
    pub path: String,
    /// First line to return, counting from 1 (default 1).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most lines to return (default: as many as fit in 256 KiB).
    #[serde(default)]
    pub limit: Option<u64>,
}

pub struct FileRead {
    ws: Arc<Workspace>,
}

impl FileRead {
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

#[async_trait]
impl Tool for FileRead {
    fn spec(&self) -> ToolSpec {
        spec_for::<ReadArgs>(
            "file_read",
            "Read a text file in the workspace. Returns its text as is (at most 256 KiB per \
             call); offset (first line, from 1) and limit (number of lines) read part of a \
             long file.",
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: ReadArgs = parse("file_read", arguments)?;
        let ws = self.ws.clone();
        blocking(move || read_file(&ws, &args)).await
    }
}

fn read_file(ws: &Workspace, args: &ReadArgs) -> Result<String, ToolError> {
    let offset = args.offset.unwrap_or(1);
    if offset == 0 {
        return Err(model_err(
            "offset counts lines from 1: use offset=1 for the first line",
        ));
    }
    if args.limit == Some(0) {
        return Err(model_err("limit must be at least 1 line"));
    }
    let path = ws.resolve(&args.path)?;
    let shown = ws.display(&path);
    let meta = std::fs::metadata(&path).map_err(|e| io_err(&shown, e))?;
    if meta.is_dir() {
        return Err(model_err(format!(
            "{shown} is a directory: use file_list to see what is in it"
        )));
    }
    if !meta.is_file() {
        return Err(model_err(format!("{shown} is not a regular file")));
    }
    let mut file = std::fs::File::open(&path).map_err(|e| io_err(&shown, e))?;
    let mut head = Vec::new();
    (&mut file)
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| io_err(&shown, e))?;
    if !looks_like_text(&head) {
        return Err(binary_err(&shown, meta.len()));
    }
    if head.is_empty() {
        return Ok(format!("({shown} is an empty file)"));
    }
    let mut reader = std::io::BufReader::new(std::io::Cursor::new(head).chain(file));
    let mut out = String::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut last_shown = 0u64;
    let mut stop: Option<&str> = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err(&shown, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line_no < offset {
            continue;
        }
        if args.limit.is_some_and(|l| line_no - offset >= l) {
            stop = Some("limit");
            break;
        }
        if line.contains(&0) {
            return Err(binary_err(&shown, meta.len()));
        }
        let text = String::from_utf8_lossy(&line);
        if out.len() + text.len() > MAX_READ_BYTES {
            if out.is_empty() {
                // One line longer than the cap: its start is better than nothing.
                out.push_str(cut(&text, MAX_READ_BYTES));
                last_shown = line_no;
                stop = Some("long line");
            } else {
                stop = Some("bytes");
            }
            break;
        }
        out.push_str(&text);
        last_shown = line_no;
    }
    if last_shown == 0 {
        return Err(model_err(format!(
            "offset {offset} is past the end of {shown}, which has {line_no} lines"
        )));
    }
    let Some(why) = stop else {
        return Ok(out);
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let next = last_shown + 1;
    out.push_str(&match why {
        "limit" => format!(
            "[... showing lines {offset}-{last_shown} of {shown}; more follow: call file_read with offset={next} ...]"
        ),
        "long line" => format!(
            "[... line {last_shown} is longer than {} KiB and was cut; the next line is offset={next} ...]",
            MAX_READ_BYTES / 1024
        ),
        _ => format!(
            "[... output capped at {} KiB: showing lines {offset}-{last_shown} of {shown}; continue with offset={next} ...]",
            MAX_READ_BYTES / 1024
        ),
    });
    Ok(out)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// file_write

/// Create or replace a file of the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// File path, relative to the workspace. Missing parent directories are created.
    pub path: String,
    /// The whole new content of the file (UTF-8 text, at most 1 MiB).
    pub content: String,
}

pub struct FileWrite {
    ws: Arc<Workspace>,
}

impl FileWrite {
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

#[async_trait]
impl Tool for FileWrite {
    fn spec(&self) -> ToolSpec {
        spec_for::<WriteArgs>(
            "file_write",
            "Create a file in the workspace, or replace its whole content. Creates missing \
             parent directories. Content at most 1 MiB. To change part of a file, use \
             file_edit.",
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: WriteArgs = parse("file_write", arguments)?;
        if args.content.len() > MAX_WRITE_BYTES {
            return Err(model_err(format!(
                "content is {} bytes; file_write takes at most {} (1 MiB): write a smaller file",
                args.content.len(),
                MAX_WRITE_BYTES
            )));
        }
        let ws = self.ws.clone();
        blocking(move || {
            let path = ws.resolve(&args.path)?;
            let shown = ws.display(&path);
            let before = match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    return Err(model_err(format!(
                        "{shown} is a directory; give a file path"
                    )))
                }
                Ok(m) => Some(m.len()),
                Err(_) => None,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err(&shown, e))?;
            }
            write_atomically(&path, args.content.as_bytes()).map_err(|e| io_err(&shown, e))?;
            Ok(match before {
                Some(old) => format!(
                    "wrote {} bytes to {shown} (replaced its previous {old} bytes)",
                    args.content.len()
                ),
                None => format!("wrote {} bytes to {shown} (new file)", args.content.len()),
            })
        })
        .await
    }
}

/// Write `bytes` to a temporary file beside `path`, flush it to disk and rename it over
/// `path`; an existing file keeps its permissions, a new one gets 0644.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".zocalo-write-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    let perms = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::Permissions::from_mode(0o644)
            }
            #[cfg(not(unix))]
            {
                tmp.as_file().metadata()?.permissions()
            }
        }
    };
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// file_edit

/// Replace one exact piece of text in a file of the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditArgs {
    /// File path, relative to the workspace.
    pub path: String,
    /// The exact text to replace, including whitespace and line breaks. It must occur exactly
    /// once in the file: add surrounding lines to make it unique.
    pub old: String,
    /// The text to put in its place (may be empty to delete).
    pub new: String,
}

pub struct FileEdit {
    ws: Arc<Workspace>,
}

impl FileEdit {
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

#[async_trait]
impl Tool for FileEdit {
    fn spec(&self) -> ToolSpec {
        spec_for::<EditArgs>(
            "file_edit",
            "Edit a text file in the workspace: replace the exact text `old`, which must occur \
             exactly once in the file, with `new`. Read the file first and copy `old` from it \
             exactly.",
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: EditArgs = parse("file_edit", arguments)?;
        if args.old.is_empty() {
            return Err(model_err(
                "old is empty: give the exact text to replace (to create a file, use file_write)",
            ));
        }
        if args.old == args.new {
            return Err(model_err("old and new are the same: nothing to change"));
        }
        let ws = self.ws.clone();
        blocking(move || edit_file(&ws, &args)).await
    }
}

fn edit_file(ws: &Workspace, args: &EditArgs) -> Result<String, ToolError> {
    let path = ws.resolve(&args.path)?;
    let shown = ws.display(&path);
    let meta = std::fs::metadata(&path).map_err(|e| io_err(&shown, e))?;
    if !meta.is_file() {
        return Err(model_err(format!("{shown} is not a regular file")));
    }
    if meta.len() > MAX_EDIT_BYTES {
        return Err(model_err(format!(
            "{shown} is {} bytes; file_edit works on files up to {} MiB",
            meta.len(),
            MAX_EDIT_BYTES / (1024 * 1024)
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| io_err(&shown, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) if !t.contains('\0') => t,
        _ => {
            return Err(model_err(format!(
                "{shown} is not UTF-8 text; file_edit only edits text files"
            )))
        }
    };
    let at = occurrences(&text, &args.old);
    match at.as_slice() {
        [] => {
            let hint = if text.contains("\r\n") && !args.old.contains('\r') {
                " (the file has Windows line endings, \\r\\n)"
            } else {
                ""
            };
            Err(model_err(format!(
                "old text not found in {shown} (0 matches){hint}: read the file again and copy \
                 the exact text, including whitespace and line breaks"
            )))
        }
        [start] => {
            let mut new_text = String::with_capacity(text.len() + args.new.len());
            new_text.push_str(&text[..*start]);
            new_text.push_str(&args.new);
            new_text.push_str(&text[start + args.old.len()..]);
            write_atomically(&path, new_text.as_bytes()).map_err(|e| io_err(&shown, e))?;
            let first = line_of(&text, *start);
            let old_lines = args.old.matches('\n').count() + 1;
            let new_lines = args.new.matches('\n').count() + 1;
            Ok(format!(
                "edited {shown}: replaced {old_lines} line(s) at line {first} with {new_lines} line(s)"
            ))
        }
        many => {
            let lines: Vec<String> = many
                .iter()
                .take(10)
                .map(|&i| line_of(&text, i).to_string())
                .collect();
            Err(model_err(format!(
                "old text occurs {} times in {shown} (at lines {}{}); it must occur exactly \
                 once: include more surrounding lines to make it unique",
                many.len(),
                lines.join(", "),
                if many.len() > 10 { ", ..." } else { "" }
            )))
        }
    }
}

/// Byte offsets of every occurrence of `needle`, overlapping ones included (in "aaa", "aa"
/// occurs twice: which one to replace would be ambiguous).
fn occurrences(haystack: &str, needle: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = haystack[from..].find(needle) {
        found.push(from + i);
        // Step one character past this match's start.
        let step = haystack[from + i..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        from += i + step;
        if from > haystack.len() {
            break;
        }
    }
    found
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte].matches('\n').count() + 1
}

// ---------------------------------------------------------------------------------------------
// file_list

/// List a directory of the workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Directory, relative to the workspace (default: the workspace itself).
    #[serde(default)]
    pub path: Option<String>,
    /// How many levels deep to list, 1 to 6 (default 2).
    #[serde(default)]
    pub depth: Option<usize>,
}

pub struct FileList {
    ws: Arc<Workspace>,
}

impl FileList {
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

#[async_trait]
impl Tool for FileList {
    fn spec(&self) -> ToolSpec {
        spec_for::<ListArgs>(
            "file_list",
            "List files and directories in the workspace, as paths relative to it; \
             directories end with /, symbolic links with @. Skips .git and what .gitignore \
             excludes. At most 500 entries.",
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: ListArgs = parse("file_list", arguments)?;
        let depth = args.depth.unwrap_or(DEFAULT_LIST_DEPTH);
        if !(1..=MAX_LIST_DEPTH).contains(&depth) {
            return Err(model_err(format!(
                "depth must be between 1 and {MAX_LIST_DEPTH} (got {depth})"
            )));
        }
        let ws = self.ws.clone();
        blocking(move || list_dir(&ws, args.path.as_deref().unwrap_or("."), depth)).await
    }
}

fn list_dir(ws: &Workspace, path: &str, depth: usize) -> Result<String, ToolError> {
    let dir = ws.resolve(path)?;
    let shown = ws.display(&dir);
    let meta = std::fs::metadata(&dir).map_err(|e| io_err(&shown, e))?;
    if !meta.is_dir() {
        return Err(model_err(format!(
            "{shown} is a file, not a directory: use file_read to read it"
        )));
    }
    let mut out = String::new();
    let mut shown_entries = 0usize;
    let mut more = 0usize;
    for entry in walk(ws.root(), &dir, Some(depth)) {
        if entry.path() == dir {
            continue;
        }
        if shown_entries >= MAX_LIST_ENTRIES {
            more += 1;
            if more >= 100_000 {
                break;
            }
            continue;
        }
        let rel = ws.display(entry.path());
        let mark = match entry.file_type() {
            Some(t) if t.is_dir() => "/",
            Some(t) if t.is_symlink() => "@",
            _ => "",
        };
        out.push_str(&rel);
        out.push_str(mark);
        out.push('\n');
        shown_entries += 1;
    }
    if shown_entries == 0 {
        return Ok(format!("({shown} is an empty directory)"));
    }
    if more > 0 {
        out.push_str(&format!(
            "[... {shown_entries} entries shown, {more}{} more not shown: list a subdirectory or use a smaller depth ...]\n",
            if more >= 100_000 { "+" } else { "" }
        ));
    }
    Ok(out)
}

/// The tools of this module over `ws` (file_search is added by the caller).
pub(crate) fn tools(ws: &Arc<Workspace>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(FileRead::new(ws.clone())),
        Arc::new(FileWrite::new(ws.clone())),
        Arc::new(FileEdit::new(ws.clone())),
        Arc::new(FileList::new(ws.clone())),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overlapping_occurrences_count() {
        assert_eq!(occurrences("aaa", "aa"), vec![0, 1]);
        assert_eq!(occurrences("abcabc", "bc"), vec![1, 4]);
        assert_eq!(occurrences("ééé", "éé"), vec![0, 2]);
        assert!(occurrences("abc", "x").is_empty());
    }

    #[test]
    fn text_sniffing() {
        assert!(looks_like_text(b"hello\n"));
        assert!(looks_like_text("é".as_bytes()));
        assert!(
            looks_like_text(&"é".as_bytes()[..1]),
            "a cut sequence at the end"
        );
        assert!(!looks_like_text(b"a\0b"));
        assert!(!looks_like_text(b"\xff\xfeabc"));
    }

    #[test]
    fn cut_on_char_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn atomic_write_keeps_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path()).unwrap();
        let p = ws.resolve("x.sh").unwrap();
        write_atomically(&p, b"one").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o644
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            write_atomically(&p, b"two").unwrap();
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o755
            );
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
