//! Backup, restore, export and import of this runtime's home and database (zocalo-ops does
//! the work; this only supplies the home, the store and the daemon check).

use std::path::Path;

use zocalo_ops::{BackupReport, Export, ImportReport, OnConflict, RestoreReport};

use crate::daemon::Client;
use crate::{usage, Runtime};

/// Writes a backup archive of the home and its database to `out`; safe while the daemon runs.
pub async fn backup(rt: &Runtime, out: &Path) -> anyhow::Result<BackupReport> {
    let store = rt.store().await?;
    Ok(zocalo_ops::backup(&rt.home, &store, out).await?)
}

/// Restores `archive` into this home and database. Refused while a daemon runs on the home:
/// it would keep writing to the database being replaced.
pub async fn restore(rt: &Runtime, archive: &Path, force: bool) -> anyhow::Result<RestoreReport> {
    if Client::connect(rt.home.root()).await.is_some() {
        return Err(usage(format!(
            "a daemon is running on {}: stop it first (`zocalo daemon stop`), then restore",
            rt.home.root().display()
        )));
    }
    Ok(zocalo_ops::restore(archive, &rt.home, rt.database_url.as_deref(), force).await?)
}

/// The database's data and the installed skills as one export document.
pub async fn export(rt: &Runtime) -> anyhow::Result<Export> {
    let store = rt.store().await?;
    Ok(zocalo_ops::export_home(&rt.home, &store).await?)
}

/// Imports an export document (its bytes): the database's part in one transaction, then its
/// skills into the home.
pub async fn import(
    rt: &Runtime,
    document: &[u8],
    skip_existing: bool,
) -> anyhow::Result<ImportReport> {
    let doc = Export::from_json(document)?;
    let store = rt.store().await?;
    let on_conflict = if skip_existing {
        OnConflict::Skip
    } else {
        OnConflict::Refuse
    };
    Ok(zocalo_ops::import_home(&rt.home, &store, &doc, on_conflict).await?)
}
