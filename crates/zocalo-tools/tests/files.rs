//! The file tools against a real directory: what they return, their limits, and that no path
//! (`..`, absolute, through a link) reaches outside the workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError};
use zocalo_tools::{tools, ToolsConfig, TOOL_NAMES};

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    tools: Vec<Arc<dyn Tool>>,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
        let tools = tools(&ToolsConfig::new(&root)).unwrap();
        let root = root.canonicalize().unwrap();
        let outside = outside.canonicalize().unwrap();
        Fx {
            _tmp: tmp,
            root,
            outside,
            tools,
        }
    }

    fn tool(&self, name: &str) -> &Arc<dyn Tool> {
        self.tools
            .iter()
            .find(|t| t.spec().name == name)
            .unwrap_or_else(|| panic!("no tool {name}"))
    }

    async fn ok(&self, name: &str, args: Value) -> String {
        match self.tool(name).call(args.clone()).await {
            Ok(s) => s,
            Err(e) => panic!("{name} {args}: {e:?}"),
        }
    }

    /// The tool's recoverable error message (panics on success or a fatal error).
    async fn err(&self, name: &str, args: Value) -> String {
        match self.tool(name).call(args.clone()).await {
            Err(ToolError::Recoverable(m)) => m,
            other => panic!("{name} {args}: expected a recoverable error, got {other:?}"),
        }
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap()
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn names_and_arguments_are_the_contract() {
    let fx = Fx::new();
    let specs: Vec<_> = fx.tools.iter().map(|t| t.spec()).collect();
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, TOOL_NAMES);
    let expect: &[(&str, &[&str], &[&str])] = &[
        ("file_read", &["path"], &["path", "offset", "limit"]),
        ("file_write", &["path", "content"], &["path", "content"]),
        (
            "file_edit",
            &["path", "old", "new"],
            &["path", "old", "new"],
        ),
        ("file_list", &[], &["path", "depth"]),
        ("file_search", &["pattern"], &["pattern", "path"]),
        ("shell", &["command"], &["command", "timeout_s"]),
        ("web_fetch", &["url"], &["url"]),
    ];
    for (spec, (name, required, all)) in specs.iter().zip(expect) {
        assert_eq!(spec.name, *name);
        let p = &spec.parameters;
        assert_eq!(p["type"], "object", "{name}");
        assert_eq!(p["additionalProperties"], false, "{name}");
        let req: Vec<&str> = p["required"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(req, *required, "{name}");
        let mut props: Vec<&str> = p["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        props.sort();
        let mut all = all.to_vec();
        all.sort();
        assert_eq!(props, all, "{name}");
        for (k, v) in p["properties"].as_object().unwrap() {
            assert!(
                v["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}.{k} has no description"
            );
        }
        assert!(
            !spec.description.is_empty() && spec.description.len() < 400,
            "{name}: {}",
            spec.description
        );
    }
}

#[tokio::test]
async fn read_whole_part_and_limits() {
    let fx = Fx::new();
    let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    fx.write("notes/a.txt", &text);
    assert_eq!(
        fx.ok("file_read", json!({"path": "notes/a.txt"})).await,
        text
    );
    // An absolute path inside the workspace is fine.
    let abs = fx.root.join("notes/a.txt").display().to_string();
    assert_eq!(fx.ok("file_read", json!({"path": abs})).await, text);

    let part = fx
        .ok(
            "file_read",
            json!({"path": "notes/a.txt", "offset": 3, "limit": 2}),
        )
        .await;
    assert!(part.starts_with("line 3\nline 4\n[..."), "{part}");
    assert!(part.contains("offset=5"), "{part}");
    let tail = fx
        .ok("file_read", json!({"path": "notes/a.txt", "offset": 9}))
        .await;
    assert_eq!(tail, "line 9\nline 10\n");

    let e = fx
        .err("file_read", json!({"path": "notes/a.txt", "offset": 11}))
        .await;
    assert!(e.contains("past the end") && e.contains("10 lines"), "{e}");
    let e = fx
        .err("file_read", json!({"path": "notes/a.txt", "offset": 0}))
        .await;
    assert!(e.contains("from 1"), "{e}");
    let e = fx.err("file_read", json!({"path": "notes"})).await;
    assert!(e.contains("directory") && e.contains("file_list"), "{e}");
    let e = fx.err("file_read", json!({"path": "nope.txt"})).await;
    assert!(e.contains("nope.txt") && e.contains("no such file"), "{e}");

    fx.write("empty.txt", "");
    assert!(fx
        .ok("file_read", json!({"path": "empty.txt"}))
        .await
        .contains("empty file"));
}

#[tokio::test]
async fn read_refuses_binary_and_caps_size() {
    let fx = Fx::new();
    fx.write("img.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    let e = fx.err("file_read", json!({"path": "img.png"})).await;
    assert!(e.contains("binary"), "{e}");
    fx.write("latin1.txt", b"caf\xe9 cr\xe8me\n");
    let e = fx.err("file_read", json!({"path": "latin1.txt"})).await;
    assert!(e.contains("binary"), "{e}");

    // 4000 lines of 100 bytes = 400 KB: more than the 256 KiB cap.
    let line = format!("{}\n", "x".repeat(99));
    fx.write("big.txt", line.repeat(4000));
    let out = fx.ok("file_read", json!({"path": "big.txt"})).await;
    assert!(out.len() <= 256 * 1024 + 200, "{}", out.len());
    let shown = 256 * 1024 / 100; // whole lines that fit
    assert!(
        out.contains(&format!("showing lines 1-{shown}"))
            && out.contains(&format!("offset={}", shown + 1)),
        "{}",
        &out[out.len() - 200..]
    );
    // One line longer than the cap is cut, and says so.
    fx.write("long.txt", "y".repeat(300 * 1024));
    let out = fx.ok("file_read", json!({"path": "long.txt"})).await;
    assert!(
        out.contains("longer than 256 KiB"),
        "{}",
        &out[out.len() - 200..]
    );
}

#[tokio::test]
async fn write_creates_replaces_and_caps() {
    let fx = Fx::new();
    let out = fx
        .ok(
            "file_write",
            json!({"path": "a/b/c.md", "content": "# hi\n"}),
        )
        .await;
    assert!(
        out.contains("5 bytes") && out.contains("a/b/c.md") && out.contains("new"),
        "{out}"
    );
    assert_eq!(fx.read("a/b/c.md"), "# hi\n");
    let out = fx
        .ok("file_write", json!({"path": "a/b/c.md", "content": "x"}))
        .await;
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(fx.read("a/b/c.md"), "x");
    // Only the file itself: no temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(fx.root.join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["c.md"]);

    let big = "z".repeat(1024 * 1024 + 1);
    let e = fx
        .err("file_write", json!({"path": "big.txt", "content": big}))
        .await;
    assert!(e.contains("1 MiB"), "{e}");
    assert!(!fx.root.join("big.txt").exists());
    let e = fx
        .err("file_write", json!({"path": "a", "content": "x"}))
        .await;
    assert!(e.contains("directory"), "{e}");
}

#[tokio::test]
async fn edit_needs_exactly_one_match() {
    let fx = Fx::new();
    fx.write("f.py", "def a():\n    return 1\n\ndef b():\n    return 1\n");
    let out = fx
        .ok(
            "file_edit",
            json!({"path": "f.py", "old": "def b():\n    return 1", "new": "def b():\n    return 2"}),
        )
        .await;
    assert!(out.contains("f.py") && out.contains("line 4"), "{out}");
    assert_eq!(
        fx.read("f.py"),
        "def a():\n    return 1\n\ndef b():\n    return 2\n"
    );

    fx.write("g.txt", "x = 1\ny = 1\nz = 1\n");
    let e = fx
        .err(
            "file_edit",
            json!({"path": "g.txt", "old": " = 1", "new": " = 2"}),
        )
        .await;
    assert!(
        e.contains("occurs 3 times") && e.contains("lines 1, 2, 3"),
        "{e}"
    );
    let e = fx
        .err(
            "file_edit",
            json!({"path": "g.txt", "old": "w = 1", "new": "w = 2"}),
        )
        .await;
    assert!(e.contains("not found") && e.contains("0 matches"), "{e}");
    let e = fx
        .err("file_edit", json!({"path": "g.txt", "old": "", "new": "q"}))
        .await;
    assert!(e.contains("empty"), "{e}");
    assert_eq!(
        fx.read("g.txt"),
        "x = 1\ny = 1\nz = 1\n",
        "failed edits change nothing"
    );
    // Deleting text is an edit to the empty string.
    fx.ok(
        "file_edit",
        json!({"path": "g.txt", "old": "y = 1\n", "new": ""}),
    )
    .await;
    assert_eq!(fx.read("g.txt"), "x = 1\nz = 1\n");
}

#[tokio::test]
async fn list_marks_dirs_honours_gitignore_and_bounds() {
    let fx = Fx::new();
    fx.write("src/main.rs", "fn main() {}\n");
    fx.write("src/deep/er/x.rs", "");
    fx.write("README.md", "hi\n");
    fx.write(".gitignore", "target/\n*.log\n");
    fx.write("target/debug/app", "bin");
    fx.write("run.log", "log");
    fx.write("src/also.log", "log");
    fx.write(".git/HEAD", "ref: refs/heads/main\n");
    symlink(&fx.outside, &fx.root.join("out"));

    let out = fx.ok("file_list", json!({})).await;
    assert_eq!(
        out, ".gitignore\nREADME.md\nout@\nsrc/\nsrc/deep/\nsrc/main.rs\n",
        "{out}"
    );
    let out = fx.ok("file_list", json!({"path": "src", "depth": 1})).await;
    assert_eq!(out, "src/deep/\nsrc/main.rs\n");
    let out = fx.ok("file_list", json!({"path": "src", "depth": 6})).await;
    assert!(out.contains("src/deep/er/x.rs"), "{out}");
    // An ignored directory can still be listed by name.
    let out = fx.ok("file_list", json!({"path": "target"})).await;
    assert_eq!(out, "target/debug/\ntarget/debug/app\n");

    let e = fx.err("file_list", json!({"depth": 7})).await;
    assert!(e.contains("between 1 and 6"), "{e}");
    let e = fx.err("file_list", json!({"path": "README.md"})).await;
    assert!(e.contains("file_read"), "{e}");
    let e = fx.err("file_list", json!({"path": "out"})).await;
    assert!(e.contains("outside the workspace"), "{e}");

    for i in 0..620 {
        fx.write(&format!("many/f{i:04}"), "");
    }
    let out = fx.ok("file_list", json!({"path": "many"})).await;
    assert_eq!(out.lines().count(), 501, "{}", out.lines().last().unwrap());
    assert!(
        out.contains("500 entries shown, 120 more not shown"),
        "{out}"
    );
    std::fs::create_dir(fx.root.join("void")).unwrap();
    assert!(fx
        .ok("file_list", json!({"path": "void"}))
        .await
        .contains("empty directory"));
}

#[tokio::test]
async fn search_like_ripgrep() {
    let fx = Fx::new();
    fx.write("a.txt", "alpha\nbeta\nGamma ray\n");
    fx.write("sub/b.md", "nothing\nmore beta here\n");
    fx.write(".gitignore", "ignored/\n");
    fx.write("ignored/c.txt", "beta\n");
    fx.write("bin.dat", b"beta\0\x01\x02");
    fx.write(".git/config", "beta\n");
    symlink(&fx.outside.join("secret.txt"), &fx.root.join("secret-link"));
    symlink(&fx.outside, &fx.root.join("out"));
    fx.write("sub/secret-note", "nothing about top secret\n");

    let out = fx.ok("file_search", json!({"pattern": "beta"})).await;
    assert_eq!(out, "a.txt:2: beta\nsub/b.md:2: more beta here\n");
    let out = fx
        .ok(
            "file_search",
            json!({"pattern": "(?i)gamma", "path": "a.txt"}),
        )
        .await;
    assert_eq!(out, "a.txt:3: Gamma ray\n");
    let out = fx
        .ok("file_search", json!({"pattern": "beta", "path": "sub"}))
        .await;
    assert_eq!(out, "sub/b.md:2: more beta here\n");
    // Links leading out are not followed: only the note inside matches.
    let out = fx.ok("file_search", json!({"pattern": "top secret"})).await;
    assert_eq!(out, "sub/secret-note:1: nothing about top secret\n");
    let out = fx.ok("file_search", json!({"pattern": "zeta"})).await;
    assert!(out.starts_with("no matches"), "{out}");

    let e = fx.err("file_search", json!({"pattern": "(unclosed"})).await;
    assert!(e.contains("invalid regular expression"), "{e}");
    let e = fx
        .err("file_search", json!({"pattern": "x", "path": "out"}))
        .await;
    assert!(e.contains("outside the workspace"), "{e}");
    let e = fx
        .err("file_search", json!({"pattern": "x", "path": "../outside"}))
        .await;
    assert!(e.contains("outside the workspace"), "{e}");

    fx.write("many.txt", "hit\n".repeat(300));
    let out = fx
        .ok("file_search", json!({"pattern": "hit", "path": "many.txt"}))
        .await;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("many.txt:")).count(),
        200
    );
    assert!(out.contains("more than 200 matching lines"), "{out}");
    let long = format!("{}needle{}\n", "a".repeat(10), "b".repeat(1000));
    fx.write("long.txt", long);
    let out = fx
        .ok(
            "file_search",
            json!({"pattern": "needle", "path": "long.txt"}),
        )
        .await;
    assert!(out.len() < 400 && out.trim_end().ends_with('…'), "{out}");
}

#[tokio::test]
async fn no_path_leads_outside() {
    let fx = Fx::new();
    let secret = fx.outside.join("secret.txt");
    symlink(&fx.outside, &fx.root.join("out"));
    symlink(&secret, &fx.root.join("secret-link"));
    symlink(&fx.outside.join("new.txt"), &fx.root.join("dangling"));
    let outside = fx.outside.display().to_string();
    let escapes = [
        "../outside/secret.txt".to_owned(),
        "a/../../outside/secret.txt".to_owned(),
        format!("{outside}/secret.txt"),
        "/etc/passwd".to_owned(),
        "out/secret.txt".to_owned(),
        "secret-link".to_owned(),
    ];
    for p in &escapes {
        let e = fx.err("file_read", json!({"path": p})).await;
        assert!(e.contains("outside the workspace"), "{p}: {e}");
        assert!(e.contains(&fx.root.display().to_string()), "{p}: {e}");
        let e = fx
            .err("file_write", json!({"path": p, "content": "pwned"}))
            .await;
        assert!(e.contains("outside the workspace"), "{p}: {e}");
        let e = fx
            .err(
                "file_edit",
                json!({"path": p, "old": "top", "new": "pwned"}),
            )
            .await;
        assert!(e.contains("outside the workspace"), "{p}: {e}");
    }
    // Writing into a directory link, or through a dangling one, would create files outside.
    for p in ["out/new.txt", "out/sub/new.txt", "dangling"] {
        let e = fx
            .err("file_write", json!({"path": p, "content": "pwned"}))
            .await;
        assert!(
            e.contains("outside") || e.contains("symbolic link"),
            "{p}: {e}"
        );
    }
    let e = fx
        .err("file_write", json!({"path": "dangling", "content": "x"}))
        .await;
    assert!(e.contains("does not exist"), "{e}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret\n");
    let left: Vec<_> = std::fs::read_dir(&fx.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["secret.txt"], "nothing was created outside");
    let e = fx.err("file_read", json!({"path": "a\u{0}b"})).await;
    assert!(e.contains("NUL"), "{e}");

    // A link that stays inside is followed, and writing through it changes its target.
    fx.write("real/target.txt", "old\n");
    symlink(&fx.root.join("real"), &fx.root.join("alias"));
    fx.ok(
        "file_write",
        json!({"path": "alias/target.txt", "content": "new\n"}),
    )
    .await;
    assert_eq!(fx.read("real/target.txt"), "new\n");
}

#[tokio::test]
async fn wrong_types_are_clear_errors() {
    let fx = Fx::new();
    let cases = [
        ("file_read", json!({}), "`path`"),
        ("file_read", json!({"path": 3}), "invalid type"),
        (
            "file_read",
            json!({"path": "a", "offset": "2"}),
            "invalid type",
        ),
        (
            "file_read",
            json!({"path": "a", "limit": -1}),
            "invalid value",
        ),
        ("file_write", json!({"path": "a"}), "`content`"),
        (
            "file_write",
            json!({"path": "a", "content": ["x"]}),
            "invalid type",
        ),
        ("file_edit", json!({"path": "a", "old": "x"}), "`new`"),
        ("file_list", json!({"depth": "deep"}), "invalid type"),
        ("file_list", json!({"dir": "x"}), "`dir`"),
        ("file_search", json!({"path": "x"}), "`pattern`"),
        ("shell", json!({"command": 1}), "invalid type"),
        (
            "shell",
            json!({"command": "true", "timeout_s": 1.5}),
            "invalid type",
        ),
        ("web_fetch", json!({"href": "http://x"}), "`href`"),
        ("web_fetch", json!([]), "expected a JSON object"),
        ("file_list", json!("."), "expected a JSON object"),
    ];
    for (tool, args, needle) in cases {
        let e = fx.err(tool, args.clone()).await;
        assert!(e.contains(needle) && e.contains(tool), "{tool} {args}: {e}");
    }
    // file_list takes no required arguments: null is an empty object.
    assert!(fx
        .ok("file_list", Value::Null)
        .await
        .contains("empty directory"));
}
