//! The shell tool's environment: only PATH, HOME (the workspace), LANG and TMPDIR reach a
//! command, whatever zocalo's own environment holds. Its own test binary, since it sets
//! variables in the test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use zocalo_core::Tool;
use zocalo_tools::{Shell, ShellConfig, Workspace};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_zocalo-tools-sandbox");

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    shell: Shell,
}

fn fixture(launcher: Option<&str>) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Arc::new(Workspace::new(tmp.path().join("ws")).unwrap());
    let root = ws.root().to_path_buf();
    let shell = Shell::new(
        ws,
        ShellConfig {
            launcher: launcher.map(PathBuf::from),
            ..ShellConfig::default()
        },
    );
    Fx {
        _tmp: tmp,
        root,
        shell,
    }
}

#[tokio::test]
async fn the_environment_is_clean() {
    // Set in this test process (alone in its binary, so no other thread reads the
    // environment meanwhile); a command must not see it.
    std::env::set_var("OPENAI_API_KEY", "sk-should-not-leak");
    std::env::set_var("ZOCALO_SECRET_THING", "nope");
    for launcher in [Some(LAUNCHER), None] {
        let fx = fixture(launcher);
        let text = fx
            .shell
            .call(json!({"command": "env | sort"}))
            .await
            .unwrap();
        assert!(!text.contains("sk-should-not-leak"), "{text}");
        assert!(!text.contains("OPENAI_API_KEY"), "{text}");
        assert!(!text.contains("ZOCALO_SECRET_THING"), "{text}");
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
            .collect();
        assert_eq!(names, ["HOME", "LANG", "PATH", "TMPDIR"], "{text}");
        assert!(
            text.contains(&format!("HOME={}", fx.root.display())),
            "{text}"
        );
    }
}
