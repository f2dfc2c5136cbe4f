//! The key vault: API keys encrypted at rest in `$ZOCALO_HOME/vault.bin`.
//!
//! Each entry (provider name → key) is sealed on its own with XChaCha20-Poly1305 under the
//! *vault key*, with the file header and the provider name as associated data, so an entry
//! cannot be moved to another provider or another vault without failing to open. The vault
//! key is derived with Argon2id from a passphrase (`ZOCALO_VAULT_PASSPHRASE`, or a prompt
//! without echo when stdin is a terminal), or, for unattended servers, from a random key file
//! (`vault.key`, 0600) that `zocalo keys init --keyfile` generates.
//!
//! A *check block* (a fixed text sealed under the vault key) tells a wrong passphrase apart
//! from a damaged file, and a SHA-256 trailer over the whole file catches truncation and
//! bit rot before any decryption is tried. Writes go to a temporary file that is fsynced and
//! renamed over `vault.bin`, under an exclusive lock on `vault.lock`, so concurrent writers
//! serialize and each one's change survives. A file that does not decode is never
//! overwritten: the error names it and the user decides.
//!
//! See `docs/vault.md` for the threat model.

pub mod format;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;
use zocalo_core::Secret;

pub use format::{Entry, FormatError, Header, Kdf, VaultFile};

/// The variable holding the vault passphrase for non-interactive use.
pub const PASSPHRASE_ENV: &str = "ZOCALO_VAULT_PASSPHRASE";

/// The fixed plaintext of the check block.
const CHECK_PLAINTEXT: &[u8] = b"zocalo vault key check v1";

/// Why a vault operation failed. Messages never contain a key or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault passphrase is incorrect ({} was not changed)", path.display())]
    IncorrectPassphrase { path: PathBuf },
    #[error("{} is corrupted or truncated ({reason}); it was left as it is. Restore it from a backup, or move it away and set your keys again", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{} was written by a newer zocalo (format version {version}); upgrade zocalo to read it", path.display())]
    NewerFormat { path: PathBuf, version: u8 },
    #[error("{} is sealed with a passphrase: set {PASSPHRASE_ENV} or run this command in a terminal to be asked for it", path.display())]
    Locked { path: PathBuf },
    #[error("the vault passphrase is empty")]
    EmptyPassphrase,
    #[error("the two passphrases differ; nothing was written")]
    PassphraseMismatch,
    #[error("{} is sealed with a key file, but {} cannot be read: {reason}", vault.display(), keyfile.display())]
    KeyFile {
        vault: PathBuf,
        keyfile: PathBuf,
        reason: String,
    },
    #[error("{} already exists; remove it first to start a new vault (its keys would be lost)", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("invalid provider name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vault encryption failed: {0}")]
    Crypto(String),
}

impl VaultError {
    /// Errors in what the user typed (exit code 2), as opposed to runtime failures.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            VaultError::EmptyPassphrase
                | VaultError::PassphraseMismatch
                | VaultError::AlreadyExists { .. }
                | VaultError::InvalidName(_)
        )
    }
}

/// Where the passphrase comes from when the vault needs one. `confirm` is true when a new
/// vault is being created (an interactive prompt then asks twice).
pub type PassphraseSource = Box<dyn Fn(bool) -> Result<Secret, VaultError> + Send + Sync>;

/// How a new vault is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    Passphrase,
    KeyFile,
}

/// The vault of one data home. Cheap to create; touches the disk only when used.
pub struct Vault {
    path: PathBuf,
    keyfile: PathBuf,
    lock: PathBuf,
    passphrase: PassphraseSource,
    kdf_params: format::KdfParams,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The vault in data home `dir` (`vault.bin`, `vault.key`, `vault.lock`), asking for the
    /// passphrase with [`passphrase_from_env_or_terminal`].
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("vault.bin"),
            keyfile: dir.join("vault.key"),
            lock: dir.join("vault.lock"),
            passphrase: Box::new(passphrase_from_env_or_terminal),
            kdf_params: format::KdfParams::default(),
        }
    }

    /// Use `source` instead of the environment / terminal for the passphrase.
    pub fn with_passphrase_source(mut self, source: PassphraseSource) -> Self {
        self.passphrase = source;
        self
    }

    /// Argon2id cost for vaults created from now on (existing vaults keep theirs).
    pub fn with_kdf_params(mut self, params: format::KdfParams) -> Self {
        self.kdf_params = params;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keyfile_path(&self) -> &Path {
        &self.keyfile
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Create an empty vault. With [`InitMode::KeyFile`], first generate `vault.key` (32
    /// random bytes, hex, mode 0600). Refuses to replace an existing vault.
    pub fn init(&self, mode: InitMode) -> Result<(), VaultError> {
        self.locked(|| {
            if self.path.exists() {
                return Err(VaultError::AlreadyExists {
                    path: self.path.clone(),
                });
            }
            if mode == InitMode::KeyFile {
                write_new_keyfile(&self.keyfile)?;
            }
            let (file, _key) = self.new_vault(mode)?;
            self.write_atomically(&file)
        })
    }

    /// Every key in the vault, decrypted (empty if there is no vault yet). Each value is
    /// registered with [`crate::redact`] so it can never reach a log line.
    pub fn load(&self) -> Result<BTreeMap<String, Secret>, VaultError> {
        let Some(file) = self.read()? else {
            return Ok(BTreeMap::new());
        };
        let key = self.unlock(&file)?;
        let mut out = BTreeMap::new();
        for entry in &file.entries {
            let secret = self.open_entry(&file.header, &key, entry)?;
            crate::redact::register(&secret);
            out.insert(entry.name.clone(), secret);
        }
        Ok(out)
    }

    /// One provider's key, if the vault has it.
    pub fn get(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        let Some(file) = self.read()? else {
            return Ok(None);
        };
        let Some(entry) = file.entries.iter().find(|e| e.name == name) else {
            return Ok(None);
        };
        let key = self.unlock(&file)?;
        let secret = self.open_entry(&file.header, &key, entry)?;
        crate::redact::register(&secret);
        Ok(Some(secret))
    }

    /// Provider names stored, without decrypting anything (names are not secret).
    pub fn names(&self) -> Result<Vec<String>, VaultError> {
        Ok(self
            .read()?
            .map(|f| f.entries.into_iter().map(|e| e.name).collect())
            .unwrap_or_default())
    }

    /// Store `value` as `name`'s key, replacing any previous one. Creates the vault (with a
    /// passphrase, or the key file if `vault.key` exists) when there is none.
    pub fn set(&self, name: &str, value: &Secret) -> Result<(), VaultError> {
        format::check_name(name).map_err(|_| VaultError::InvalidName(name.to_owned()))?;
        crate::redact::register(value);
        self.locked(|| {
            let (mut file, key) = match self.read()? {
                Some(file) => {
                    let key = self.unlock(&file)?;
                    (file, key)
                }
                None => {
                    let mode = if self.keyfile.exists() {
                        InitMode::KeyFile
                    } else {
                        InitMode::Passphrase
                    };
                    self.new_vault(mode)?
                }
            };
            let entry = seal_entry(&file.header, &key, name, value)?;
            match file.entries.iter_mut().find(|e| e.name == name) {
                Some(old) => *old = entry,
                None => file.entries.push(entry),
            }
            file.entries.sort_by(|a, b| a.name.cmp(&b.name));
            self.write_atomically(&file)
        })
    }

    /// Remove `name`'s key; false if the vault did not have it (nothing is written then).
    pub fn remove(&self, name: &str) -> Result<bool, VaultError> {
        self.locked(|| {
            let Some(mut file) = self.read()? else {
                return Ok(false);
            };
            if !file.entries.iter().any(|e| e.name == name) {
                return Ok(false);
            }
            // Only the owner of the vault may change it, even though removing needs no key.
            self.unlock(&file)?;
            file.entries.retain(|e| e.name != name);
            self.write_atomically(&file)?;
            Ok(true)
        })
    }

    /// The vault file, decoded but not decrypted; `None` if there is none.
    fn read(&self) -> Result<Option<VaultFile>, VaultError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(VaultError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        match format::decode(&bytes) {
            Ok(file) => Ok(Some(file)),
            Err(FormatError::NewerVersion(version)) => Err(VaultError::NewerFormat {
                path: self.path.clone(),
                version,
            }),
            Err(e) => Err(VaultError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Derive the vault key and prove it with the check block.
    fn unlock(&self, file: &VaultFile) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let key = match file.header.kdf {
            Kdf::Argon2id(params) => {
                let pass = self.ask_passphrase(false)?;
                derive_from_passphrase(&pass, &file.header.salt, params)?
            }
            Kdf::KeyFile => derive_from_keyfile(&self.read_keyfile()?, &file.header.salt),
        };
        let cipher = XChaCha20Poly1305::new((&*key).into());
        let aad = file.header.encode();
        let opened = cipher.decrypt(
            XNonce::from_slice(&file.check_nonce),
            Payload {
                msg: &file.check,
                aad: &aad,
            },
        );
        match opened {
            Ok(text) if text == CHECK_PLAINTEXT => Ok(key),
            _ => match file.header.kdf {
                Kdf::Argon2id(_) => Err(VaultError::IncorrectPassphrase {
                    path: self.path.clone(),
                }),
                Kdf::KeyFile => Err(VaultError::KeyFile {
                    vault: self.path.clone(),
                    keyfile: self.keyfile.clone(),
                    reason: "it is not the key file this vault was sealed with".into(),
                }),
            },
        }
    }

    fn open_entry(
        &self,
        header: &Header,
        key: &[u8; 32],
        entry: &Entry,
    ) -> Result<Secret, VaultError> {
        let cipher = XChaCha20Poly1305::new(key.into());
        let aad = entry_aad(header, &entry.name);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&entry.nonce),
                Payload {
                    msg: &entry.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Corrupt {
                path: self.path.clone(),
                reason: format!("the entry for {} does not authenticate", entry.name),
            })?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Corrupt {
            path: self.path.clone(),
            reason: format!("the entry for {} is not text", entry.name),
        })?;
        Ok(Secret::new(text))
    }

    /// A fresh, empty vault sealed per `mode`, and its key.
    fn new_vault(&self, mode: InitMode) -> Result<(VaultFile, Zeroizing<[u8; 32]>), VaultError> {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let (kdf, key) = match mode {
            InitMode::Passphrase => {
                let pass = self.ask_passphrase(true)?;
                let params = self.kdf_params;
                (
                    Kdf::Argon2id(params),
                    derive_from_passphrase(&pass, &salt, params)?,
                )
            }
            InitMode::KeyFile => (
                Kdf::KeyFile,
                derive_from_keyfile(&self.read_keyfile()?, &salt),
            ),
        };
        let header = Header { kdf, salt };
        let (check_nonce, check) = seal(&key, &header.encode(), CHECK_PLAINTEXT)?;
        Ok((
            VaultFile {
                header,
                check_nonce,
                check,
                entries: Vec::new(),
            },
            key,
        ))
    }

    fn read_keyfile(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let err = |reason: String| VaultError::KeyFile {
            vault: self.path.clone(),
            keyfile: self.keyfile.clone(),
            reason,
        };
        let text =
            Zeroizing::new(fs::read_to_string(&self.keyfile).map_err(|e| err(e.to_string()))?);
        let bytes = hex::decode(text.trim()).map_err(|_| {
            err("it is not the hex text `zocalo keys init --keyfile` writes".into())
        })?;
        if bytes.len() != 32 {
            return Err(err(format!("it holds {} bytes, expected 32", bytes.len())));
        }
        Ok(Zeroizing::new(bytes))
    }

    fn ask_passphrase(&self, confirm: bool) -> Result<Secret, VaultError> {
        (self.passphrase)(confirm).map_err(|e| match e {
            VaultError::Locked { .. } => VaultError::Locked {
                path: self.path.clone(),
            },
            other => other,
        })
    }

    /// Run `f` holding an exclusive lock on `vault.lock` (waiting for other writers). The
    /// lock file, not `vault.bin`, because the rename replaces that file's inode.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, VaultError>) -> Result<T, VaultError> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|source| VaultError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(|source| VaultError::Io {
                path: self.lock.clone(),
                source,
            })?;
        let mut lock = fd_lock::RwLock::new(file);
        let _guard = lock.write().map_err(|source| VaultError::Io {
            path: self.lock.clone(),
            source,
        })?;
        f()
    }

    /// Temp file in the same directory, fsync, rename over `vault.bin`, fsync the directory.
    fn write_atomically(&self, file: &VaultFile) -> Result<(), VaultError> {
        let bytes = format::encode(file);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".vault.bin.tmp-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| VaultError::Io { path, source }
        };
        let result = (|| {
            let mut f = private_options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn write_new_keyfile(path: &Path) -> Result<(), VaultError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(&mut *raw);
    let text = Zeroizing::new(format!("{}\n", hex::encode(*raw)));
    let mut f = private_options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => VaultError::AlreadyExists {
                path: path.to_owned(),
            },
            _ => VaultError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| VaultError::Io {
            path: path.to_owned(),
            source,
        })
}

fn derive_from_passphrase(
    pass: &Secret,
    salt: &[u8; 16],
    params: format::KdfParams,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let params = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| VaultError::Crypto(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.expose().as_bytes(), salt, &mut *key)
        .map_err(|e| VaultError::Crypto(e.to_string()))?;
    Ok(key)
}

/// The key file already holds 256 random bits, so a fast hash (domain-separated, salted per
/// vault) is enough; a slow KDF only protects low-entropy passphrases.
fn derive_from_keyfile(raw: &[u8], salt: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"zocalo vault keyfile v1\0");
    h.update(salt);
    h.update(raw);
    Zeroizing::new(h.finalize().into())
}

fn entry_aad(header: &Header, name: &str) -> Vec<u8> {
    let mut aad = header.encode();
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<([u8; 24], Vec<u8>), VaultError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|e| VaultError::Crypto(e.to_string()))?;
    Ok((nonce, ct))
}

fn seal_entry(
    header: &Header,
    key: &[u8; 32],
    name: &str,
    value: &Secret,
) -> Result<Entry, VaultError> {
    let (nonce, ciphertext) = seal(key, &entry_aad(header, name), value.expose().as_bytes())?;
    Ok(Entry {
        name: name.to_owned(),
        nonce,
        ciphertext,
    })
}

/// The passphrase from `ZOCALO_VAULT_PASSPHRASE`, else a prompt without echo when stdin is a
/// terminal (asked twice when `confirm`), else [`VaultError::Locked`].
pub fn passphrase_from_env_or_terminal(confirm: bool) -> Result<Secret, VaultError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        if p.is_empty() {
            return Err(VaultError::EmptyPassphrase);
        }
        let p = Secret::new(p);
        crate::redact::register(&p);
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        // The vault fills in its own path.
        return Err(VaultError::Locked {
            path: PathBuf::new(),
        });
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(|s| Secret::new(s.trim_end_matches(['\r', '\n'])))
            .map_err(|source| VaultError::Io {
                path: PathBuf::from("/dev/tty"),
                source,
            })
    };
    let first = ask("Vault passphrase: ")?;
    if first.expose().is_empty() {
        return Err(VaultError::EmptyPassphrase);
    }
    if confirm {
        let second = ask("Repeat the passphrase: ")?;
        if second != first {
            return Err(VaultError::PassphraseMismatch);
        }
    }
    crate::redact::register(&first);
    Ok(first)
}

/// A secret typed at a prompt without echo (on a terminal), else read from stdin whole.
pub fn read_secret(prompt: &str) -> Result<Secret, VaultError> {
    if let Some(s) = prompt_secret(prompt)? {
        return Ok(s);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
        VaultError::Io {
            path: PathBuf::from("/dev/stdin"),
            source,
        }
    })?;
    Ok(Secret::new(text))
}

/// Ask for a secret on the terminal without echoing it (for `zocalo keys set`). `None`
/// when stdin is not a terminal: the caller reads a pipe instead.
pub fn prompt_secret(prompt: &str) -> Result<Option<Secret>, VaultError> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let value = rpassword::prompt_password(prompt).map_err(|source| VaultError::Io {
        path: PathBuf::from("/dev/tty"),
        source,
    })?;
    Ok(Some(Secret::new(value)))
}
