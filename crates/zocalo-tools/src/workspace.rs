//! The workspace: the one directory the file tools may touch, and [`Workspace::resolve`], which
//! turns a path the model wrote into a path on disk that is certainly inside it.
//!
//! A path is taken relative to the root; an absolute path is accepted when it lies under the
//! root. `..` may walk back up inside the path (`a/../b` is `b`) but never above the root.
//! Then the deepest part of the path that exists is canonicalised (following every symbolic
//! link the kernel would follow) and must still be under the canonical root; the rest does not
//! exist yet, so it holds no link. The returned path is that canonical prefix plus the rest, so
//! the operation itself follows no link the check did not see. A symbolic link whose target
//! does not exist is refused (writing through it would create a file wherever it points).
//!
//! What remains (see docs/tools.md): a process that swaps a checked directory for a link
//! between the check and the operation (a race this process does not cause itself).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use zocalo_core::ToolError;

use crate::ToolsError;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` above the root, an absolute path elsewhere, or a link leading out.
    #[error("path {path} is outside the workspace ({root}){how}")]
    Outside {
        path: String,
        root: String,
        how: &'static str,
    },
    #[error("path {path:?} contains a NUL byte")]
    Nul { path: String },
    #[error("path {path} is a symbolic link whose target does not exist; refusing to follow it")]
    Dangling { path: String },
    #[error("path {path} cannot be resolved: {reason}")]
    Unresolvable { path: String, reason: String },
    /// The root itself is gone: nothing the model can fix.
    #[error("the workspace directory {root} is missing")]
    RootMissing { root: String },
}

impl From<PathError> for ToolError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::RootMissing { .. } => ToolError::Fatal(e.to_string()),
            _ => ToolError::Recoverable(e.to_string()),
        }
    }
}

/// The root directory the file tools and the shell work in.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// Canonical: what resolved paths are checked against.
    root: PathBuf,
    /// As configured, when it differs (an absolute path written with it is inside too).
    given: PathBuf,
}

impl Workspace {
    /// Open `root`, creating it (mode 0700) when missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, ToolsError> {
        let given = root.as_ref();
        let io = |source| ToolsError::Workspace {
            path: given.to_path_buf(),
            source,
        };
        if std::fs::symlink_metadata(given).is_err() {
            std::fs::create_dir_all(given).map_err(io)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(given, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
        }
        let canonical = std::fs::canonicalize(given).map_err(io)?;
        if !canonical.is_dir() {
            return Err(ToolsError::NotADirectory(given.to_path_buf()));
        }
        let given = if given.is_absolute() {
            given.to_path_buf()
        } else {
            canonical.clone()
        };
        Ok(Self {
            root: canonical,
            given,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` (as the model wrote it) is on disk: inside the root, whether it exists or
    /// not. See the module docs for the rules.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, PathError> {
        let outside = |how| PathError::Outside {
            path: path.to_owned(),
            root: self.root.display().to_string(),
            how,
        };
        if path.contains('\0') {
            return Err(PathError::Nul {
                path: path.to_owned(),
            });
        }
        let p = Path::new(path);
        let rel = if p.is_absolute() {
            p.strip_prefix(&self.root)
                .or_else(|_| p.strip_prefix(&self.given))
                .map_err(|_| outside(""))?
        } else {
            p
        };
        let mut parts: Vec<&OsStr> = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => parts.push(s),
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(outside(""));
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside("")),
            }
        }
        // The deepest part that exists (as an entry: a dangling link counts).
        let mut existing = parts.len();
        loop {
            let candidate = join(&self.root, &parts[..existing]);
            if std::fs::symlink_metadata(&candidate).is_ok() {
                break;
            }
            if existing == 0 {
                return Err(PathError::RootMissing {
                    root: self.root.display().to_string(),
                });
            }
            existing -= 1;
        }
        let prefix = join(&self.root, &parts[..existing]);
        let canonical = match std::fs::canonicalize(&prefix) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PathError::Dangling {
                    path: self.display(&prefix),
                })
            }
            Err(e) => {
                return Err(PathError::Unresolvable {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        if !canonical.starts_with(&self.root) {
            return Err(outside(" through a symbolic link"));
        }
        Ok(join(&canonical, &parts[existing..]))
    }

    /// `path` (inside the root) as the model should write it: relative, `.` for the root.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(r) if r.as_os_str().is_empty() => ".".into(),
            Ok(r) => r.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

fn join(base: &Path, parts: &[&OsStr]) -> PathBuf {
    let mut p = base.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path().join("ws")).unwrap();
        (tmp, ws)
    }

    #[test]
    fn creates_the_root_private() {
        let (_tmp, ws) = ws();
        assert!(ws.root().is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ws.root()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let file = ws.root().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            Workspace::new(&file),
            Err(ToolsError::NotADirectory(_))
        ));
    }

    #[test]
    fn lexical_rules() {
        let (_tmp, ws) = ws();
        let r = ws.root().to_path_buf();
        assert_eq!(ws.resolve("").unwrap(), r);
        assert_eq!(ws.resolve(".").unwrap(), r);
        assert_eq!(ws.resolve("a/b.txt").unwrap(), r.join("a/b.txt"));
        assert_eq!(ws.resolve("./a/../b").unwrap(), r.join("b"));
        assert_eq!(
            ws.resolve(r.join("x/y").to_str().unwrap()).unwrap(),
            r.join("x/y")
        );
        for bad in ["..", "../x", "a/../../x", "/etc/passwd", "/", "a/\0b"] {
            assert!(ws.resolve(bad).is_err(), "{bad:?}");
        }
        let e = ws.resolve("../x").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("path ../x is outside the workspace ({})", r.display())
        );
        // A sibling whose name starts like the root is not inside it.
        let sibling = format!("{}2/x", r.display());
        assert!(ws.resolve(&sibling).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn links() {
        let (tmp, ws) = ws();
        let r = ws.root().to_path_buf();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, r.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), r.join("secret")).unwrap();
        std::os::unix::fs::symlink(outside.join("nothing"), r.join("dangling")).unwrap();
        std::fs::create_dir(r.join("sub")).unwrap();
        std::os::unix::fs::symlink(r.join("sub"), r.join("in")).unwrap();

        for bad in ["out", "out/secret", "out/new/file", "secret"] {
            let e = ws.resolve(bad).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{bad}: {e}");
        }
        assert!(matches!(
            ws.resolve("dangling"),
            Err(PathError::Dangling { .. })
        ));
        assert!(ws.resolve("dangling/x").is_err());
        // Links that stay inside are followed to their target.
        assert_eq!(ws.resolve("in/f").unwrap(), r.join("sub/f"));
    }
}
