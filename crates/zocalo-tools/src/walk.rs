//! Walking the workspace the way ripgrep does (the `ignore` crate): `.gitignore`, `.ignore`
//! and `.git/info/exclude` files inside the workspace are honoured, even when it is not a git
//! repository; `.git` itself is skipped; hidden files are listed; links are not followed.
//!
//! Ignore files outside the workspace (a dotfiles repository in `$HOME`, the user's global
//! git excludes) do not apply: the walk starts at the workspace root, so the root's own
//! `.gitignore` applies to every subdirectory the model lists. A directory the rules exclude
//! can still be listed or searched by naming it: then only the ignore files inside it apply.

use std::path::{Path, PathBuf};

use ignore::{DirEntry, WalkBuilder};

fn builder(start: &Path) -> WalkBuilder {
    let mut b = WalkBuilder::new(start);
    b.hidden(false)
        .parents(false)
        .ignore(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    b
}

fn is_git_dir(e: &DirEntry) -> bool {
    e.file_name() == ".git" && e.file_type().is_some_and(|t| t.is_dir())
}

/// Entries under `target` (itself included, first), at most `depth` levels below it, in a
/// stable order. `target` must be `root` or inside it.
pub(crate) fn walk(
    root: &Path,
    target: &Path,
    depth: Option<usize>,
) -> impl Iterator<Item = DirEntry> {
    let below = target
        .strip_prefix(root)
        .map(|r| r.components().count())
        .unwrap_or(0);
    let start = if below == 0 || reachable(root, target, below) {
        root
    } else {
        target
    };
    let base = if start == root { below } else { 0 };
    let mut b = builder(start);
    if let Some(d) = depth {
        b.max_depth(Some(base + d));
    }
    let t: PathBuf = target.to_path_buf();
    b.filter_entry(move |e| {
        !is_git_dir(e) && (e.path().starts_with(&t) || t.starts_with(e.path()))
    });
    let t: PathBuf = target.to_path_buf();
    b.build()
        .filter_map(Result::ok)
        .filter(move |e| e.path().starts_with(&t))
}

/// Whether a walk from `root` reaches `target` (`below` levels down), i.e. no ignore rule
/// excludes it or a directory on the way.
fn reachable(root: &Path, target: &Path, below: usize) -> bool {
    let mut b = builder(root);
    b.max_depth(Some(below));
    let t = target.to_path_buf();
    b.filter_entry(move |e| !is_git_dir(e) && t.starts_with(e.path()));
    b.build().filter_map(Result::ok).any(|e| e.path() == target)
}
