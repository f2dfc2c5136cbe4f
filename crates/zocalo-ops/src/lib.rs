//! zocalo-ops: keeping a zocalo home for years.
//!
//! - [`backup`]: one archive file (zip) of a data home: `manifest.json` (format, versions,
//!   every file's size and sha256), the database (SQLite: a consistent copy made with
//!   `VACUUM INTO` while others write; PostgreSQL: the portable export), the vault and its key
//!   file, config.toml and the installed skills. Written beside the target and renamed into
//!   place, so the target is never half an archive.
//! - [`restore`]: checks the whole archive (manifest, checksums, the database's integrity and
//!   schema version) before changing anything, refuses a home or database that holds data
//!   unless forced, and replaces each file by a rename.
//! - [`export()`] / [`import()`]: the data of a database as one versioned JSON document
//!   ([`Export`]), between homes and between backends; an import is one transaction.
//!
//! The format of both is documented in docs/operations.md.

mod archive;
pub mod error;
pub mod export;
mod skills;
mod ts;

pub use archive::{
    backup, restore, verify, BackupReport, Manifest, ManifestFile, RestoreReport, BACKUP_FORMAT,
    BACKUP_VERSION,
};
pub use error::OpsError;
pub use export::{
    export, export_home, import, import_home, Counts, Export, ExportAutomation, ExportConversation,
    ExportKey, ExportMemory, ExportMessage, ExportService, ExportSettings, ExportSummary,
    ImportReport, OnConflict, EXPORT_FORMAT, EXPORT_VERSION,
};
pub use skills::{read_skills, ExportSkillFile};
