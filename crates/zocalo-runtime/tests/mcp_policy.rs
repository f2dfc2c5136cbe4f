//! The tools served over MCP follow `[permissions]`: denied ones are not served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use zocalo_runtime::{Options, Runtime};

async fn served(config: &str) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let url = format!("sqlite://{}", home.path().join("z.db").display());
    let rt = Runtime::open(Options {
        home: Some(home.path().to_path_buf()),
        database_url: Some(url),
    })
    .await
    .unwrap();
    let store = rt.store().await.unwrap();
    let names = zocalo_runtime::mcp::served_tools(&rt, store)
        .iter()
        .map(|t| t.spec().name)
        .collect();
    rt.close().await;
    names
}

#[tokio::test]
async fn denied_tools_are_not_served_over_mcp() {
    let all = served("").await;
    for t in ["memory_search", "skill_run", "pool_submit", "schedule_add"] {
        assert!(all.contains(&t.to_owned()), "{t} missing from {all:?}");
    }
    let some = served(
        "[permissions]\npool_submit = \"deny\"\n\"skill*\" = \"deny\"\nmemory_forget = \"ask\"\n",
    )
    .await;
    assert!(!some.contains(&"pool_submit".to_owned()), "{some:?}");
    assert!(!some.iter().any(|t| t.starts_with("skill")), "{some:?}");
    // `ask` is the MCP client's to ask: served.
    assert!(some.contains(&"memory_forget".to_owned()), "{some:?}");
    assert_eq!(some.len(), all.len() - 3, "{all:?} vs {some:?}");
}
