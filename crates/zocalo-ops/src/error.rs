//! [`OpsError`]: what a backup, restore, export or import can fail with. Every message says
//! what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The archive is not one we can restore: unreadable, truncated, tampered with, or from a
    /// format this zocalo does not know. Nothing was changed.
    #[error("{} is not a usable zocalo backup: {reason} (nothing was changed)", path.display())]
    BadArchive { path: PathBuf, reason: String },
    /// The archive or export was made by a newer zocalo.
    #[error(
        "{what} has database schema version {found}, newer than this zocalo (knows up to \
         {known}): upgrade zocalo to restore it (nothing was changed)"
    )]
    NewerSchema {
        what: String,
        found: i64,
        known: i64,
    },
    /// The target already holds data and `--force` was not given.
    #[error(
        "{target} is not empty ({found}); restoring would replace it: pass --force to \
         overwrite, or restore into a new ZOCALO_HOME / database (nothing was changed)"
    )]
    NotEmpty { target: String, found: String },
    /// An export document that does not parse or breaks its own rules.
    #[error("invalid export: {0} (nothing was imported)")]
    BadExport(String),
    /// Import found records whose ids (or unique names) the database already has.
    #[error(
        "the database already has {count} of the imported records (first: {first}): pass \
         --skip-existing to import only the others (nothing was imported)"
    )]
    Exists { count: usize, first: String },
    /// Where to write is not usable (the output exists as a directory, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] zocalo_store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl OpsError {
    /// True when the user gave bad input (exit 2) rather than the environment failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            OpsError::BadArchive { .. }
            | OpsError::NewerSchema { .. }
            | OpsError::NotEmpty { .. }
            | OpsError::BadExport(_)
            | OpsError::Exists { .. }
            | OpsError::Invalid(_) => true,
            OpsError::Store(e) => e.is_usage(),
            OpsError::Io { .. } | OpsError::Db(_) => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OpsError {
        let path = path.into();
        move |source| OpsError::Io { path, source }
    }
}
