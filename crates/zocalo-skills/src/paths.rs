//! Paths the model hands us, kept inside the skill directory.

use std::path::{Component, Path, PathBuf};

use crate::SkillError;

/// Resolve `rel` inside `dir`: relative only, no `..`, and after following symlinks still
/// inside `dir`. The file must exist.
pub fn resolve_inside(dir: &Path, rel: &str, skill: &str) -> Result<PathBuf, SkillError> {
    let deny = |reason: &str| SkillError::PathNotAllowed {
        path: rel.to_owned(),
        reason: reason.to_owned(),
    };
    if rel.trim().is_empty() {
        return Err(deny("empty path"));
    }
    if rel.contains('\0') {
        return Err(deny("contains a NUL byte"));
    }
    let p = Path::new(rel);
    if p.is_absolute() || p.has_root() {
        return Err(deny(
            "absolute paths are not allowed; give a path relative to the skill directory",
        ));
    }
    if p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::Prefix(_) | Component::RootDir
        )
    }) {
        return Err(deny("`..` is not allowed; stay inside the skill directory"));
    }
    let root = dir.canonicalize().map_err(|e| SkillError::io(dir, e))?;
    let full = match root.join(p).canonicalize() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SkillError::NoSuchFile {
                skill: skill.to_owned(),
                path: rel.to_owned(),
            })
        }
        Err(e) => return Err(SkillError::io(root.join(p), e)),
    };
    if !full.starts_with(&root) {
        return Err(deny(
            "it resolves (through a symlink) outside the skill directory",
        ));
    }
    Ok(full)
}

/// Files under `dir`, relative, `/`-separated, sorted; hidden entries and symlinked
/// directories skipped; at most `cap` (the bool says whether the list was cut).
pub fn list_files(dir: &Path, cap: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut truncated = false;
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            let name = e.file_name();
            let name_s = name.to_string_lossy();
            if name_s.starts_with('.') || name_s == "__pycache__" || name_s == "node_modules" {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            let child = rel.join(&name);
            if ft.is_dir() {
                stack.push(child);
            } else if ft.is_file() || (ft.is_symlink() && e.path().is_file()) {
                if out.len() >= cap {
                    truncated = true;
                    continue;
                }
                out.push(child.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    (out, truncated)
}
