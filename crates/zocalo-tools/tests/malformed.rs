//! Malformed input: random path strings never make `Workspace::resolve` panic or answer a
//! path outside the root, and random arguments never make a file tool panic or fail fatally,
//! nor touch anything outside the workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value};
use zocalo_core::{Tool, ToolError};
use zocalo_tools::{tools, ToolsConfig, Workspace};

struct Fx {
    _tmp: tempfile::TempDir,
    ws: Workspace,
    outside: PathBuf,
}

/// A workspace with a directory, a file and links in, out and nowhere; a file outside.
fn fixture() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    let ws = Workspace::new(tmp.path().join("ws")).unwrap();
    let r = ws.root().to_path_buf();
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::fs::write(r.join("a/f.txt"), "one\ntwo\n").unwrap();
    std::os::unix::fs::symlink(&outside, r.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), r.join("secret")).unwrap();
    std::os::unix::fs::symlink(outside.join("none"), r.join("dangling")).unwrap();
    std::os::unix::fs::symlink(r.join("a"), r.join("in")).unwrap();
    std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
    Fx {
        _tmp: tmp,
        ws,
        outside: outside.canonicalize().unwrap(),
    }
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("f.txt".to_owned()),
        Just("out".to_owned()),
        Just("secret".to_owned()),
        Just("dangling".to_owned()),
        Just("in".to_owned()),
        Just("loop".to_owned()),
        Just("outside".to_owned()),
        Just("\0".to_owned()),
        Just("ü日本🦀".to_owned()),
        Just("x".repeat(300)),
        "[^/]{0,12}",
    ]
}

fn path_string(root: String) -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(String::new()),
            Just("/".to_owned()),
            Just(format!("{root}/")),
            Just("/tmp/".to_owned()),
            Just("~/".to_owned()),
        ],
        prop::collection::vec(component(), 0..12),
        prop::bool::ANY,
    )
        .prop_map(|(prefix, parts, trailing)| {
            let mut s = prefix + &parts.join("/");
            if trailing {
                s.push('/');
            }
            s
        })
}

/// The deepest ancestor of `p` (itself included) that exists as an entry.
fn deepest_existing(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| std::fs::symlink_metadata(a).is_ok())
}

/// Checks one input; says whether it was accepted.
fn check_inside(fx: &Fx, input: &str) -> Result<bool, TestCaseError> {
    let root = fx.ws.root();
    let resolved = fx.ws.resolve(input);
    let accepted = resolved.is_ok();
    if let Ok(p) = resolved {
        prop_assert!(p.starts_with(root), "{input:?} -> {p:?}");
        prop_assert!(
            !p.components().any(|c| c == Component::ParentDir),
            "{input:?} -> {p:?}"
        );
        // Whatever exists of it leads, links followed, into the root.
        if let Some(existing) = deepest_existing(&p) {
            if let Ok(c) = existing.canonicalize() {
                prop_assert!(c.starts_with(root), "{input:?} -> {p:?} -> {c:?}");
            }
        }
    }
    Ok(accepted)
}

#[test]
fn resolve_stays_inside() {
    let fx = fixture();
    let root = fx.ws.root().display().to_string();
    let (accepted, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let count = |ok: bool| {
        let c = if ok { &accepted } else { &refused };
        c.set(c.get() + 1);
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
    runner
        .run(&path_string(root), |input| {
            count(check_inside(&fx, &input)?);
            Ok(())
        })
        .unwrap();
    // Both outcomes were exercised, not just refusals.
    assert!(
        accepted.get() > 300 && refused.get() > 300,
        "{accepted:?} {refused:?}"
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
    runner
        .run(&any::<String>(), |input| {
            check_inside(&fx, &input).map(drop)
        })
        .unwrap();
    // Very long paths: past PATH_MAX and NAME_MAX.
    for input in [
        "a/".repeat(5000),
        "../".repeat(5000),
        "x".repeat(100_000),
        format!("{}/{}", "in/b/..".repeat(500), "f"),
    ] {
        check_inside(&fx, &input).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(&fx.outside).unwrap().count(),
        1,
        "resolve never creates anything"
    );
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z./]{0,10}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(Value::from("../outside/secret")),
        Just(Value::from("out/secret")),
        Just(Value::from("secret")),
        Just(Value::from("dangling")),
        Just(Value::from("a/f.txt")),
        Just(Value::from("one")),
        Just(Value::from("(")),
        Just(Value::Array(vec![Value::from(1)])),
    ]
}

fn arguments() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("path"),
        Just("content"),
        Just("old"),
        Just("new"),
        Just("offset"),
        Just("limit"),
        Just("depth"),
        Just("pattern"),
        Just("junk"),
    ];
    prop_oneof![
        4 => prop::collection::btree_map(key, json_leaf(), 0..6).prop_map(|m| {
            Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
        }),
        1 => json_leaf(),
    ]
}

#[test]
fn file_tools_never_panic_or_fail_fatally() {
    let fx = fixture();
    let all = tools(&ToolsConfig::new(fx.ws.root())).unwrap();
    let file_tools: Vec<Arc<dyn Tool>> = all
        .into_iter()
        .filter(|t| t.spec().name.starts_with("file_"))
        .collect();
    assert_eq!(file_tools.len(), 5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(&arguments(), |args| {
            for tool in &file_tools {
                let name = tool.spec().name;
                match rt.block_on(tool.call(args.clone())) {
                    Ok(_) | Err(ToolError::Recoverable(_)) => {}
                    Err(ToolError::Fatal(m)) => {
                        return Err(TestCaseError::fail(format!("{name} {args}: fatal: {m}")))
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(fx.outside.join("secret")).unwrap(),
        "s"
    );
    assert_eq!(
        std::fs::read_dir(&fx.outside).unwrap().count(),
        1,
        "nothing was created outside the workspace"
    );
}
