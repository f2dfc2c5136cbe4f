//! The byte layout of `vault.bin`, version 1. Pure: no I/O, no cryptography.
//!
//! ```text
//! "ZOCVAULT"                          8   magic
//! version = 1                         u8
//! kdf: 1 = Argon2id, 2 = key file     u8
//!   Argon2id only: m_cost KiB, t_cost, p_cost    3 × u32 LE
//! salt                                16
//! check nonce                         24
//! check length, check ciphertext      u32 LE, bytes (the fixed text, sealed)
//! entry count                         u32 LE
//!   per entry: name length, name      u16 LE, UTF-8 (letters, digits, '-', '_')
//!              nonce                  24
//!              length, ciphertext     u32 LE, bytes (the key, sealed; 16-byte tag included)
//! SHA-256 of everything above         32
//! ```
//!
//! The header (magic through salt) is the associated data of every sealed part, so changing
//! the KDF, its cost or the salt makes the vault fail to open instead of silently weakening
//! it. [`decode`] never panics and bounds every length and cost before trusting it.

use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"ZOCVAULT";
pub const VERSION: u8 = 1;

/// Sanity bounds: far above real use, low enough that a hostile file cannot make us
/// allocate or compute without limit.
const MAX_ENTRIES: u32 = 4096;
const MAX_NAME: usize = 64;
const MAX_CIPHERTEXT: usize = 64 * 1024;
/// 1 GiB of Argon2 memory, 64 passes, 16 lanes.
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;
const TAG: usize = 16;

/// Argon2id cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    Argon2id(KdfParams),
    KeyFile,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kdf: Kdf,
    pub salt: [u8; 16],
}

impl Header {
    /// The header bytes, also used as associated data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(50);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        match self.kdf {
            Kdf::Argon2id(p) => {
                out.push(1);
                out.extend_from_slice(&p.m_cost_kib.to_le_bytes());
                out.extend_from_slice(&p.t_cost.to_le_bytes());
                out.extend_from_slice(&p.p_cost.to_le_bytes());
            }
            Kdf::KeyFile => out.push(2),
        }
        out.extend_from_slice(&self.salt);
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

/// A decoded (still encrypted) vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultFile {
    pub header: Header,
    pub check_nonce: [u8; 24],
    pub check: Vec<u8>,
    pub entries: Vec<Entry>,
}

/// Why bytes are not a vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a zocalo vault (bad magic)")]
    BadMagic,
    #[error("format version {0} is newer than this zocalo understands")]
    NewerVersion(u8),
    #[error("unknown format version {0}")]
    BadVersion(u8),
    #[error("the file ends early, in the {0}")]
    Truncated(&'static str),
    #[error("checksum mismatch: the file was changed or damaged")]
    Checksum,
    #[error("{0}")]
    Invalid(String),
}

/// Whether `name` may name an entry (the same rule as provider names in config.toml).
pub fn check_name(name: &str) -> Result<(), FormatError> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(FormatError::Invalid(format!("invalid entry name {name:?}")));
    }
    Ok(())
}

pub fn encode(file: &VaultFile) -> Vec<u8> {
    let mut out = file.header.encode();
    out.extend_from_slice(&file.check_nonce);
    out.extend_from_slice(&(file.check.len() as u32).to_le_bytes());
    out.extend_from_slice(&file.check);
    out.extend_from_slice(&(file.entries.len() as u32).to_le_bytes());
    for e in &file.entries {
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&e.nonce);
        out.extend_from_slice(&(e.ciphertext.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.ciphertext);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if self.rest.len() < n {
            return Err(FormatError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
}

/// Parse and verify the layout and checksum. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<VaultFile, FormatError> {
    if bytes.len() < MAGIC.len() + 1 {
        return Err(if MAGIC.starts_with(bytes) {
            FormatError::Truncated("header")
        } else {
            FormatError::BadMagic
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    match bytes[MAGIC.len()] {
        VERSION => {}
        0 => return Err(FormatError::BadVersion(0)),
        v => return Err(FormatError::NewerVersion(v)),
    }
    if bytes.len() < 32 {
        return Err(FormatError::Truncated("header"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(FormatError::Checksum);
    }

    let mut r = Reader { rest: body };
    r.take(MAGIC.len() + 1, "header")?;
    let kdf = match r.u8("header")? {
        1 => {
            let params = KdfParams {
                m_cost_kib: r.u32("header")?,
                t_cost: r.u32("header")?,
                p_cost: r.u32("header")?,
            };
            if params.p_cost == 0
                || params.p_cost > MAX_P_COST
                || params.t_cost == 0
                || params.t_cost > MAX_T_COST
                || params.m_cost_kib < 8 * params.p_cost
                || params.m_cost_kib > MAX_M_COST_KIB
            {
                return Err(FormatError::Invalid(format!(
                    "Argon2id cost out of range: {params:?}"
                )));
            }
            Kdf::Argon2id(params)
        }
        2 => Kdf::KeyFile,
        k => return Err(FormatError::Invalid(format!("unknown key derivation {k}"))),
    };
    let salt = r.array::<16>("header")?;
    let check_nonce = r.array::<24>("check block")?;
    let check_len = r.u32("check block")? as usize;
    if !(TAG..=MAX_CIPHERTEXT).contains(&check_len) {
        return Err(FormatError::Invalid(format!(
            "check block length {check_len} out of range"
        )));
    }
    let check = r.take(check_len, "check block")?.to_vec();
    let count = r.u32("entry count")?;
    if count > MAX_ENTRIES {
        return Err(FormatError::Invalid(format!("{count} entries is too many")));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let name_len = r.u16("entry")? as usize;
        let name = std::str::from_utf8(r.take(name_len, "entry")?)
            .map_err(|_| FormatError::Invalid("an entry name is not UTF-8".into()))?
            .to_owned();
        check_name(&name)?;
        if entries.iter().any(|e| e.name == name) {
            return Err(FormatError::Invalid(format!("entry {name} appears twice")));
        }
        let nonce = r.array::<24>("entry")?;
        let len = r.u32("entry")? as usize;
        if !(TAG..=MAX_CIPHERTEXT).contains(&len) {
            return Err(FormatError::Invalid(format!(
                "entry {name}: length {len} out of range"
            )));
        }
        let ciphertext = r.take(len, "entry")?.to_vec();
        entries.push(Entry {
            name,
            nonce,
            ciphertext,
        });
    }
    if !r.rest.is_empty() {
        return Err(FormatError::Invalid(format!(
            "{} unexpected bytes after the last entry",
            r.rest.len()
        )));
    }
    Ok(VaultFile {
        header: Header { kdf, salt },
        check_nonce,
        check,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VaultFile {
        VaultFile {
            header: Header {
                kdf: Kdf::Argon2id(KdfParams::default()),
                salt: [7; 16],
            },
            check_nonce: [1; 24],
            check: vec![9; 41],
            entries: vec![
                Entry {
                    name: "groq".into(),
                    nonce: [2; 24],
                    ciphertext: vec![3; 40],
                },
                Entry {
                    name: "openai".into(),
                    nonce: [4; 24],
                    ciphertext: vec![5; 60],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let f = sample();
        assert_eq!(decode(&encode(&f)).unwrap(), f);
        let mut k = sample();
        k.header.kdf = Kdf::KeyFile;
        k.entries.clear();
        assert_eq!(decode(&encode(&k)).unwrap(), k);
    }

    #[test]
    fn every_truncation_and_flip_is_rejected() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn newer_versions_are_named() {
        let mut bytes = encode(&sample());
        bytes[8] = 2;
        assert_eq!(decode(&bytes), Err(FormatError::NewerVersion(2)));
        assert_eq!(decode(b"PK\x03\x04hello"), Err(FormatError::BadMagic));
    }
}
