//! Shared by the memory tests: the real MiniLM embedder behind the core `Embedder` seam.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;
use zocalo_core::embed::{EmbedError, Embedder};

/// `zocalo_local::LocalEmbedder` seen through `zocalo_core::embed::Embedder`.
pub struct MiniLm(pub zocalo_local::LocalEmbedder);

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        zocalo_local::Embedder::model_id(&self.0)
    }
    fn dim(&self) -> usize {
        zocalo_local::Embedder::dim(&self.0)
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.0
            .embed_texts(texts)
            .map_err(|e| EmbedError::Failed(e.to_string()))
    }
}

/// `$ZOCALO_TEST_MODELS`, else `$HOME/.cache/zocalo-models-test` (shared with zocalo-local's
/// tests; fetched from the package index on first use).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ZOCALO_TEST_MODELS").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/zocalo-models-test")
}

/// The embedder, loaded once per test binary. Fetching the weights must work: these tests
/// are about semantic recall and mean nothing without the model.
pub async fn minilm() -> Arc<dyn Embedder> {
    static ONCE: OnceCell<Arc<MiniLm>> = OnceCell::const_new();
    let e = ONCE
        .get_or_init(|| async {
            let dir = models_dir();
            let minilm = zocalo_local::fetch::MINILM;
            if zocalo_local::fetch::ensure_verified(&minilm, &dir).is_err() {
                zocalo_local::fetch_all(&dir, &|_| {})
                    .await
                    .expect("fetch model weights");
            }
            let dir2 = dir.clone();
            let e = tokio::task::spawn_blocking(move || zocalo_local::LocalEmbedder::load(&dir2))
                .await
                .unwrap()
                .expect("load all-MiniLM-L6-v2");
            Arc::new(MiniLm(e))
        })
        .await
        .clone();
    e
}
