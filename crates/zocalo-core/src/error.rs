use std::path::PathBuf;

/// Errors from reading configuration and preparing the data home.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot find a home directory: set ZOCALO_HOME")]
    NoHome,
    #[error("cannot create or read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid id {value:?}: expected an id starting with `{prefix}_`")]
    BadId { prefix: &'static str, value: String },
}
