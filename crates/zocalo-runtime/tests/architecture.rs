//! docs/ARCHITECTURE.md lists every dependency edge between the workspace's crates; this test
//! keeps that list true: each edge drawn is a real `[dependencies]` entry, and each real one is
//! drawn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn documented(doc: &str) -> Graph {
    const START: &str = "<!-- deps:start -->";
    let start = doc.find(START).expect("a deps:start marker") + START.len();
    let end = doc.find("<!-- deps:end -->").expect("a deps:end marker");
    let mut g = Graph::new();
    for line in doc[start..end].lines() {
        let Some((from, to)) = line.split_once("->") else {
            continue;
        };
        let deps = to
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        assert!(
            g.insert(from.trim().to_owned(), deps).is_none(),
            "{} listed twice",
            from.trim()
        );
    }
    g
}

fn real(crates: &Path) -> Graph {
    let mut g = Graph::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let t: toml::Table = toml::from_str(&text).unwrap();
        let name = t["package"]["name"].as_str().unwrap().to_owned();
        let deps = t
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("zocalo"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        g.insert(name, deps);
    }
    g
}

#[test]
fn the_crate_map_in_architecture_md_is_true() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let (drawn, real) = (documented(&doc), real(&root.join("crates")));
    assert!(real.len() > 10, "found only {:?}", real.keys());
    for (krate, deps) in &real {
        let shown = drawn
            .get(krate)
            .unwrap_or_else(|| panic!("{krate} is missing from docs/ARCHITECTURE.md"));
        let missing: Vec<_> = deps.difference(shown).collect();
        let extra: Vec<_> = shown.difference(deps).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{krate}: edges not drawn {missing:?}, drawn but not real {extra:?}"
        );
    }
    for krate in drawn.keys() {
        assert!(real.contains_key(krate), "{krate} is drawn but is no crate");
    }
}
