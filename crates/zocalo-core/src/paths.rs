//! The data home: `$ZOCALO_HOME`, else `~/.zocalo`. Created on first use with mode 0700.

use std::path::{Path, PathBuf};

use crate::CoreError;

#[derive(Clone, Debug)]
pub struct DataHome {
    root: PathBuf,
}

impl DataHome {
    /// Resolve from the environment without touching the disk.
    pub fn from_env() -> Result<Self, CoreError> {
        if let Some(dir) = std::env::var_os("ZOCALO_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or(CoreError::NoHome)?;
        Ok(Self::at(PathBuf::from(home).join(".zocalo")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create the directory (0700 on Unix) if it does not exist yet.
    pub fn ensure(&self) -> Result<&Path, CoreError> {
        let io = |source| CoreError::Io {
            path: self.root.clone(),
            source,
        };
        if !self.root.exists() {
            std::fs::create_dir_all(&self.root).map_err(io)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
        }
        Ok(&self.root)
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("zocalo.db")
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DataHome::at(tmp.path().join("a/b"));
        home.ensure().unwrap();
        assert!(home.root().is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.root()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert_eq!(home.database(), tmp.path().join("a/b/zocalo.db"));
    }
}
