//! Backup archives: [`backup`] writes one, [`verify`] checks one, [`restore`] puts one back.
//!
//! An archive is a zip file. `manifest.json` comes first; every other entry is listed in it
//! with its size and sha256, under the name it has relative to the data home (`zocalo.db`,
//! `vault.bin`, `vault.key`, `config.toml`, `skills/...`), except a PostgreSQL database, which
//! is the portable export `export.json`.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use zocalo_core::paths::DataHome;
use zocalo_store::{Backend, Pool, Store};

use crate::export::{export, import, Export, OnConflict};
use crate::OpsError;

/// `format` of every manifest.
pub const BACKUP_FORMAT: &str = "zocalo-backup";
/// The archive layout this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;

const MANIFEST: &str = "manifest.json";
const SQLITE_DB: &str = "zocalo.db";
const EXPORT_JSON: &str = "export.json";
/// Home files kept as they are (the vault is encrypted; its key file is only there when the
/// vault was sealed with one instead of a passphrase).
const HOME_FILES: [&str; 3] = ["vault.bin", "vault.key", "config.toml"];
const SKILLS_DIR: &str = "skills";
/// A manifest bigger than this is not one we wrote.
const MANIFEST_LIMIT: u64 = 64 << 20;

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_VERSION`].
    pub version: u32,
    pub zocalo_version: String,
    /// The database's schema version (its highest migration).
    pub schema_version: i64,
    /// `sqlite` (the entry `zocalo.db` is the database file) or `postgres` (the entry
    /// `export.json` is the portable export).
    pub backend: String,
    pub created_at: DateTime<Utc>,
    pub files: Vec<ManifestFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The entry's name, relative to the data home.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Unix permission bits (skills' scripts must stay executable).
    pub mode: u32,
}

/// What [`backup`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
}

/// What [`restore`] did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// The backend the archive was taken from.
    pub from_backend: String,
    /// The database it was restored into (no password).
    pub database: String,
    pub schema_version: i64,
    /// Home files written (relative paths), the database excluded.
    pub files: Vec<String>,
    /// Whether existing data was replaced (`--force` on a home or database with data).
    pub replaced: bool,
}

/// Writes a backup of `home` and `store` to `out` (a temporary file beside it, renamed into
/// place when complete). Safe while other processes write: the SQLite copy is one snapshot
/// (`VACUUM INTO`), the Postgres export one `REPEATABLE READ` transaction.
pub async fn backup(home: &DataHome, store: &Store, out: &Path) -> Result<BackupReport, OpsError> {
    if out.is_dir() {
        return Err(OpsError::Invalid(format!(
            "{} is a directory: give the archive's file name",
            out.display()
        )));
    }
    let parent = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_owned(),
        None => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".zocalo-backup-")
        .tempdir_in(&parent)
        .map_err(OpsError::io(&parent))?;

    // The database first: it is the part that can fail for reasons of its own.
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    let schema_version = match store.pool() {
        Pool::Sqlite(pool) => {
            let copy = staging.path().join(SQLITE_DB);
            let target = copy
                .to_str()
                .ok_or_else(|| OpsError::Invalid(format!("{} is not UTF-8", copy.display())))?;
            sqlx::query("VACUUM INTO $1")
                .bind(target)
                .execute(pool)
                .await?;
            let version = check_sqlite_copy(&copy).await?;
            entries.push((SQLITE_DB.into(), copy));
            version
        }
        Pool::Postgres(_) => {
            let doc = export(store).await?;
            let path = staging.path().join(EXPORT_JSON);
            let json = serde_json::to_vec(&doc)
                .map_err(|e| OpsError::Invalid(format!("cannot encode the export: {e}")))?;
            std::fs::write(&path, json).map_err(OpsError::io(&path))?;
            entries.push((EXPORT_JSON.into(), path));
            doc.schema_version
        }
    };
    for name in HOME_FILES {
        let path = home.root().join(name);
        if path.is_file() {
            entries.push((name.into(), path));
        }
    }
    let skills = home.root().join(SKILLS_DIR);
    if skills.is_dir() {
        walk(&skills, SKILLS_DIR, &mut entries)?;
    }

    let mut files = Vec::with_capacity(entries.len());
    for (name, path) in &entries {
        let (size, sha256) = hash_file(path)?;
        files.push(ManifestFile {
            path: name.clone(),
            size,
            sha256,
            mode: file_mode(path)?,
        });
    }
    let manifest = Manifest {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        zocalo_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        backend: store.backend().as_str().into(),
        created_at: Utc::now(),
        files,
    };

    let tmp = tempfile::Builder::new()
        .prefix(".zocalo-backup-")
        .suffix(".zip.part")
        .tempfile_in(&parent)
        .map_err(OpsError::io(&parent))?;
    let zip_err = |e: zip::result::ZipError| OpsError::Io {
        path: tmp.path().to_owned(),
        source: std::io::Error::other(e),
    };
    let file = tmp.reopen().map_err(OpsError::io(tmp.path()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| OpsError::Invalid(format!("cannot encode the manifest: {e}")))?;
    zip.start_file(MANIFEST, options).map_err(zip_err)?;
    zip.write_all(&manifest_json)
        .map_err(OpsError::io(tmp.path()))?;
    for ((name, path), meta) in entries.iter().zip(&manifest.files) {
        let options = options
            .unix_permissions(meta.mode)
            .large_file(meta.size >= u64::from(u32::MAX));
        zip.start_file(name.as_str(), options).map_err(zip_err)?;
        let mut src = std::fs::File::open(path).map_err(OpsError::io(path))?;
        std::io::copy(&mut src, &mut zip).map_err(OpsError::io(path))?;
    }
    let writer = zip.finish().map_err(zip_err)?;
    let file = writer
        .into_inner()
        .map_err(|e| OpsError::io(tmp.path())(e.into_error()))?;
    file.sync_all().map_err(OpsError::io(tmp.path()))?;
    let bytes = file.metadata().map_err(OpsError::io(tmp.path()))?.len();
    drop(file);
    set_mode(tmp.path(), 0o600)?;
    tmp.persist(out).map_err(|e| OpsError::io(out)(e.error))?;
    Ok(BackupReport {
        file: out.to_owned(),
        bytes,
        manifest,
    })
}

/// Every regular file under `dir`, named `prefix/...`. Symbolic links are left out: they
/// would point outside the archive on another machine.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), OpsError> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(OpsError::io(dir))?
        .collect::<Result<_, _>>()
        .map_err(OpsError::io(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "backup: skipping a file whose name is not UTF-8");
            continue;
        };
        let kind = child.file_type().map_err(OpsError::io(&path))?;
        let entry = format!("{prefix}/{name}");
        if kind.is_dir() {
            walk(&path, &entry, out)?;
        } else if kind.is_file() {
            out.push((entry, path));
        } else {
            tracing::warn!(path = %path.display(), "backup: skipping a symbolic link or special file");
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, String), OpsError> {
    let mut file = std::fs::File::open(path).map_err(OpsError::io(path))?;
    hash_reader(&mut file).map_err(OpsError::io(path))
}

fn hash_reader(r: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(unix)]
pub(crate) fn file_mode(path: &Path) -> Result<u32, OpsError> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)
        .map_err(OpsError::io(path))?
        .permissions()
        .mode()
        & 0o777)
}

#[cfg(not(unix))]
pub(crate) fn file_mode(_path: &Path) -> Result<u32, OpsError> {
    Ok(0o600)
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), OpsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(OpsError::io(path))
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> Result<(), OpsError> {
    Ok(())
}

/// Opens a SQLite file that is no live database (a copy, a staged restore) and checks it:
/// `PRAGMA integrity_check` passes; returns its schema version. Leaves it as one
/// self-contained file: switching to the rollback journal checkpoints any WAL into it and
/// removes the WAL, so the file can be moved alone (zocalo turns WAL back on when it opens it).
async fn check_sqlite_copy(path: &Path) -> Result<i64, OpsError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        // A pool that used this file may still be closing its last connection.
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await?;
    let result = async {
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut conn)
        .await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
            .fetch_one(&mut conn)
            .await?;
        Ok::<_, sqlx::Error>((check, version, mode))
    }
    .await;
    conn.close().await?;
    let (check, version, mode) = result?;
    if check != "ok" {
        return Err(OpsError::Invalid(format!(
            "the database copy {} fails its integrity check: {check}",
            path.display()
        )));
    }
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(OpsError::Invalid(format!(
            "the database copy {} is still in use (journal mode {mode})",
            path.display()
        )));
    }
    Ok(version)
}

/// An archive checked and unpacked into a staging directory (removed when dropped).
struct Staged {
    manifest: Manifest,
    dir: tempfile::TempDir,
}

/// Checks `archive` completely without changing anything: the manifest, that every entry is
/// listed and matches its size and checksum, that names stay inside the home, the database's
/// integrity and that its schema is not newer than this zocalo's. Returns the manifest.
pub async fn verify(archive: &Path) -> Result<Manifest, OpsError> {
    let scratch = std::env::temp_dir();
    Ok(stage(archive, &scratch).await?.manifest)
}

async fn stage(archive: &Path, near: &Path) -> Result<Staged, OpsError> {
    let bad = |reason: String| OpsError::BadArchive {
        path: archive.to_owned(),
        reason,
    };
    let file = std::fs::File::open(archive).map_err(OpsError::io(archive))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(format!(
            "cannot read it as a zip archive ({e}); is it truncated?"
        ))
    })?;
    let manifest: Manifest = {
        let entry = zip
            .by_name(MANIFEST)
            .map_err(|_| bad(format!("it has no {MANIFEST}")))?;
        let mut text = Vec::new();
        entry
            .take(MANIFEST_LIMIT)
            .read_to_end(&mut text)
            .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
        serde_json::from_slice(&text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?
    };
    if manifest.format != BACKUP_FORMAT {
        return Err(bad(format!("{MANIFEST} has format {:?}", manifest.format)));
    }
    if manifest.version != BACKUP_VERSION {
        return Err(bad(format!(
            "archive format version {} is not {BACKUP_VERSION}, the one this zocalo reads",
            manifest.version
        )));
    }
    let known = known_schema_version().await?;
    if manifest.schema_version > known {
        return Err(OpsError::NewerSchema {
            what: format!("the backup {}", archive.display()),
            found: manifest.schema_version,
            known,
        });
    }
    let db_entry = match manifest.backend.as_str() {
        "sqlite" => SQLITE_DB,
        "postgres" => EXPORT_JSON,
        other => return Err(bad(format!("unknown backend {other:?}"))),
    };
    if !manifest.files.iter().any(|f| f.path == db_entry) {
        return Err(bad(format!("it has no {db_entry}")));
    }
    let mut listed = std::collections::HashSet::new();
    for f in &manifest.files {
        if !allowed_name(&f.path) {
            return Err(bad(format!(
                "entry {:?} is not a file a backup holds",
                f.path
            )));
        }
        if !listed.insert(f.path.as_str()) {
            return Err(bad(format!("entry {:?} is listed twice", f.path)));
        }
    }
    for name in zip.file_names() {
        if name != MANIFEST && !listed.contains(name) && !name.ends_with('/') {
            return Err(bad(format!("entry {name:?} is not in the manifest")));
        }
    }

    std::fs::create_dir_all(near).map_err(OpsError::io(near))?;
    let dir = tempfile::Builder::new()
        .prefix(".zocalo-restore-")
        .tempdir_in(near)
        .map_err(OpsError::io(near))?;
    for f in &manifest.files {
        let mut entry = zip
            .by_name(&f.path)
            .map_err(|e| bad(format!("entry {:?}: {e}", f.path)))?;
        let dest = dir.path().join(&f.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(OpsError::io(parent))?;
        }
        let mut out = std::fs::File::create(&dest).map_err(OpsError::io(&dest))?;
        let mut tee = Tee {
            inner: &mut entry,
            out: &mut out,
        };
        let (size, sha256) = hash_reader(&mut tee)
            .map_err(|e| bad(format!("entry {:?} cannot be read: {e}", f.path)))?;
        if size != f.size || sha256 != f.sha256 {
            return Err(bad(format!(
                "entry {:?} does not match its checksum in the manifest (damaged or altered)",
                f.path
            )));
        }
        out.sync_all().map_err(OpsError::io(&dest))?;
        set_mode(&dest, f.mode & 0o777)?;
    }
    if manifest.backend == "sqlite" {
        let db = dir.path().join(SQLITE_DB);
        let version = check_sqlite_copy(&db)
            .await
            .map_err(|e| bad(format!("its database: {e}")))?;
        if version > known {
            return Err(OpsError::NewerSchema {
                what: format!("the database in {}", archive.display()),
                found: version,
                known,
            });
        }
    } else {
        let path = dir.path().join(EXPORT_JSON);
        let text = std::fs::read(&path).map_err(OpsError::io(&path))?;
        let doc = Export::from_json(&text).map_err(|e| bad(format!("{EXPORT_JSON}: {e}")))?;
        if doc.schema_version > known {
            return Err(OpsError::NewerSchema {
                what: format!("the export in {}", archive.display()),
                found: doc.schema_version,
                known,
            });
        }
    }
    Ok(Staged { manifest, dir })
}

/// Copies what it reads into `out`.
struct Tee<'a, R: Read, W: Write> {
    inner: &'a mut R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Names a backup may hold: relative, inside the home, and one of ours.
fn allowed_name(name: &str) -> bool {
    let path = Path::new(name);
    let plain =
        !name.contains('\\') && path.components().all(|c| matches!(c, Component::Normal(_)));
    plain
        && (name == SQLITE_DB
            || name == EXPORT_JSON
            || HOME_FILES.contains(&name)
            || (name.starts_with("skills/") && path.components().count() >= 2))
}

/// The highest migration this build knows (the same on both backends).
async fn known_schema_version() -> Result<i64, OpsError> {
    let store = Store::open_sqlite_memory().await?;
    let known = store.known_schema_version();
    store.close().await;
    Ok(known)
}

/// Where a restore writes the database.
enum Target {
    SqliteFile(PathBuf),
    Url(String),
}

fn target_of(home: &DataHome, database_url: Option<&str>) -> Result<Target, OpsError> {
    let Some(url) = database_url else {
        return Ok(Target::SqliteFile(home.database()));
    };
    match Store::check_url(url)? {
        Backend::Postgres => Ok(Target::Url(url.to_owned())),
        Backend::Sqlite => {
            let rest = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() || path == ":memory:" {
                return Err(OpsError::Invalid(
                    "cannot restore into an in-memory database: give a file".into(),
                ));
            }
            Ok(Target::SqliteFile(PathBuf::from(path)))
        }
    }
}

/// Restores `archive` into `home` and the database at `database_url` (None: the home's SQLite
/// file). The archive is checked completely first; a home or database that holds data is
/// refused unless `force`. A SQLite archive restores into either backend, as does an export
/// (a Postgres archive). Files the archive does not hold are left as they are.
///
/// Stop the daemon and other zocalo processes of this home first: they would keep writing to
/// the database being replaced.
pub async fn restore(
    archive: &Path,
    home: &DataHome,
    database_url: Option<&str>,
    force: bool,
) -> Result<RestoreReport, OpsError> {
    let target = target_of(home, database_url)?;
    // Staged where the files will go, so each is put in place by a rename on one filesystem:
    // inside the home if it exists, else beside it (where it will be created).
    let near = if home.root().is_dir() {
        home.root().to_owned()
    } else {
        home.root()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned)
    };
    let staged = stage(archive, &near).await?;

    // What is there now: refused before anything is written.
    let mut found = Vec::new();
    for name in HOME_FILES {
        if home.root().join(name).exists() {
            found.push(name.to_owned());
        }
    }
    let skills = home.root().join(SKILLS_DIR);
    if std::fs::read_dir(&skills).is_ok_and(|mut d| d.next().is_some()) {
        found.push("installed skills".into());
    }
    let target_store = match &target {
        Target::SqliteFile(path) => {
            if let Some(what) = sqlite_contents(path).await {
                found.push(what);
            }
            None
        }
        Target::Url(url) => {
            let store = Store::connect(url).await?;
            if let Some(what) = store_contents(&store).await? {
                found.push(what);
            }
            Some(store)
        }
    };
    let replaced = !found.is_empty();
    if replaced && !force {
        if let Some(store) = &target_store {
            store.close().await;
        }
        let target = match &target {
            Target::SqliteFile(_) => home.root().display().to_string(),
            Target::Url(url) => format!(
                "{} (database {})",
                home.root().display(),
                zocalo_store::redact_url(url)
            ),
        };
        return Err(OpsError::NotEmpty {
            target,
            found: found.join(", "),
        });
    }

    home.ensure()
        .map_err(|e| OpsError::Invalid(e.to_string()))?;
    let staged_db = staged.dir.path().join(SQLITE_DB);
    let staged_export = staged.dir.path().join(EXPORT_JSON);
    let on_conflict = if force {
        OnConflict::Replace
    } else {
        OnConflict::Refuse
    };
    let (database, schema_version) = match (&target, target_store) {
        (Target::SqliteFile(path), _) => {
            if staged.manifest.backend == "postgres" {
                // A fresh database next to the archive's files, filled from the export.
                let text = std::fs::read(&staged_export).map_err(OpsError::io(&staged_export))?;
                let doc = Export::from_json(&text)?;
                let store = Store::open_sqlite_file(&staged_db).await?;
                let imported = import(&store, &doc, OnConflict::Refuse).await;
                store.close().await;
                imported?;
            } else {
                // Migrated forward now, so a database this build cannot open fails here and
                // not after the old one is gone.
                let store = Store::open_sqlite_file(&staged_db).await?;
                store.close().await;
            }
            let version = check_sqlite_copy(&staged_db).await?;
            replace_sqlite(&staged_db, path)?;
            (format!("sqlite://{}", path.display()), version)
        }
        (Target::Url(url), Some(store)) => {
            let result = async {
                let doc = if staged.manifest.backend == "postgres" {
                    let text =
                        std::fs::read(&staged_export).map_err(OpsError::io(&staged_export))?;
                    Export::from_json(&text)?
                } else {
                    let source = Store::open_sqlite_file(&staged_db).await?;
                    let doc = export(&source).await;
                    source.close().await;
                    doc?
                };
                import(&store, &doc, on_conflict).await?;
                Ok::<_, OpsError>(store.schema_version().await?)
            }
            .await;
            store.close().await;
            (zocalo_store::redact_url(url), result?)
        }
        (Target::Url(_), None) => {
            return Err(OpsError::Invalid("no database to restore into".into()));
        }
    };

    let mut files = Vec::new();
    for name in HOME_FILES {
        let from = staged.dir.path().join(name);
        if from.is_file() {
            let to = home.root().join(name);
            std::fs::rename(&from, &to).map_err(OpsError::io(&to))?;
            files.push(name.to_owned());
        }
    }
    let staged_skills = staged.dir.path().join(SKILLS_DIR);
    if staged_skills.is_dir() {
        let old = staged.dir.path().join("skills.old");
        if skills.exists() {
            std::fs::rename(&skills, &old).map_err(OpsError::io(&skills))?;
        }
        std::fs::rename(&staged_skills, &skills).map_err(OpsError::io(&skills))?;
        files.extend(
            staged
                .manifest
                .files
                .iter()
                .filter(|f| f.path.starts_with("skills/"))
                .map(|f| f.path.clone()),
        );
    }
    Ok(RestoreReport {
        from_backend: staged.manifest.backend.clone(),
        database,
        schema_version,
        files,
        replaced,
    })
}

/// Puts the staged database file in place of `target`. The old one's WAL and shared-memory
/// files go first: SQLite would otherwise apply the old WAL to the new file.
fn replace_sqlite(staged: &Path, target: &Path) -> Result<(), OpsError> {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(OpsError::io(dir))?;
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpsError::io(&side)(e)),
        }
    }
    set_mode(staged, 0o600)?;
    std::fs::rename(staged, target).map_err(OpsError::io(target))
}

/// What a SQLite file holds, if anything worth keeping ("zocalo.db with 3 conversations").
async fn sqlite_contents(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() == 0 {
        return None;
    }
    let name = path.display();
    let counts = async {
        // Read-only: closing a read-write connection would checkpoint the WAL into the file
        // of a database the restore is about to refuse to touch.
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(true)
            .connect()
            .await?;
        let row: (i64, i64, i64, i64) = sqlx::query_as(include_str!("sql/count_rows.sql"))
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(row)
    }
    .await;
    match counts {
        Ok(counts) => describe(counts).map(|what| format!("{name} holds {what}")),
        // Tables missing (never migrated) or unreadable: not ours to throw away silently.
        Err(_) => Some(format!("{name} exists")),
    }
}

async fn store_contents(store: &Store) -> Result<Option<String>, OpsError> {
    let counts: (i64, i64, i64, i64) = zocalo_store::with_pool!(store.pool(), |p| {
        sqlx::query_as(include_str!("sql/count_rows.sql"))
            .fetch_one(p)
            .await
    })?;
    Ok(describe(counts).map(|what| format!("the database holds {what}")))
}

fn describe((c, m, a, s): (i64, i64, i64, i64)) -> Option<String> {
    let parts: Vec<String> = [
        (c, "conversations"),
        (m, "memories"),
        (a, "automations"),
        (s, "services"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_home() {
        for ok in [
            "zocalo.db",
            "export.json",
            "vault.bin",
            "skills/a/SKILL.md",
            "skills/x",
        ] {
            assert!(allowed_name(ok), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "skills/../../x",
            "skills/a\\..\\b",
            "other.txt",
            "skills",
            "./zocalo.db",
            "",
        ] {
            assert!(!allowed_name(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn allowed_names_never_escape(name in "[a-z./\\\\]{0,24}") {
            if allowed_name(&name) {
                let p = Path::new(&name);
                proptest::prop_assert!(p.is_relative());
                proptest::prop_assert!(!p.components().any(|c| matches!(c, Component::ParentDir)));
            }
        }
    }
}
