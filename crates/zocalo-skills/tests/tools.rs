//! The disclosure tools: what `skill_open` shows and what `skill_read` refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::json;
use zocalo_core::{Tool, ToolError};
use zocalo_skills::tools::{SkillOpen, SkillRead, SkillRun};
use zocalo_skills::{prompt_index, RunLimits, Skills};

/// A root with one skill `box` and a secret file next to it, outside the skill.
fn setup() -> (tempfile::TempDir, Skills) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let dir = root.join("box");
    std::fs::create_dir_all(dir.join("references")).unwrap();
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: box\ndescription: A skill in a box. Use for box things.\n---\n# Box\nRead references/inside.md.\n",
    )
    .unwrap();
    std::fs::write(dir.join("references/inside.md"), "inside text").unwrap();
    std::fs::write(dir.join("scripts/go.sh"), "echo went \"$@\"\n").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "TOP SECRET").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), dir.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("outside-dir")).unwrap();
        std::os::unix::fs::symlink(dir.join("references/inside.md"), dir.join("alias.md")).unwrap();
    }
    let skills = Skills::load(vec![root]);
    assert_eq!(skills.names(), ["box"], "{:?}", skills.warnings());
    (tmp, skills)
}

async fn read(skills: &Skills, path: &str) -> Result<String, ToolError> {
    SkillRead(skills.clone())
        .call(json!({"name": "box", "path": path}))
        .await
}

#[tokio::test]
async fn skill_read_stays_inside_the_skill() {
    let (tmp, skills) = setup();
    assert_eq!(
        read(&skills, "references/inside.md").await.unwrap(),
        "inside text"
    );
    assert_eq!(
        read(&skills, "./references/inside.md").await.unwrap(),
        "inside text"
    );
    // A symlink that stays inside is fine.
    assert_eq!(read(&skills, "alias.md").await.unwrap(), "inside text");
    let secret = tmp.path().join("secret.txt").display().to_string();
    for bad in [
        "../secret.txt",
        "references/../../secret.txt",
        "references/../SKILL.md",
        secret.as_str(),
        "/etc/passwd",
        "escape.txt",
        "outside-dir/secret.txt",
        "",
    ] {
        let e = read(&skills, bad).await.unwrap_err();
        let ToolError::Recoverable(msg) = &e else {
            panic!("{bad}: not recoverable: {e:?}")
        };
        assert!(!msg.contains("TOP SECRET"), "{bad}: {msg}");
        assert!(
            msg.contains("not allowed"),
            "{bad}: expected a refusal, got {msg}"
        );
    }
    let e = read(&skills, "nope.md").await.unwrap_err();
    assert!(e.to_string().contains("has no file"), "{e}");
    let e = SkillRead(skills.clone())
        .call(json!({"name": "other", "path": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("known: box"), "{e}");
}

#[tokio::test]
async fn skill_open_gives_body_and_files_and_the_index_only_names() {
    let (_tmp, skills) = setup();
    let out = SkillOpen(skills.clone())
        .call(json!({"name": "box"}))
        .await
        .unwrap();
    assert!(out.contains("# Box\nRead references/inside.md."), "{out}");
    assert!(
        !out.contains("description: A skill"),
        "frontmatter is stripped: {out}"
    );
    assert!(out.contains("<file>references/inside.md</file>"), "{out}");
    assert!(out.contains("<file>scripts/go.sh</file>"), "{out}");
    let index = prompt_index(&skills).unwrap();
    assert!(
        index.contains("- box: A skill in a box. Use for box things."),
        "{index}"
    );
    assert!(
        !index.contains("# Box"),
        "the body stays out of the prompt: {index}"
    );
    // The schema constrains names to the known skills.
    let spec = SkillOpen(skills.clone()).spec();
    assert_eq!(
        spec.parameters["properties"]["name"]["enum"],
        json!(["box"])
    );
    assert!(prompt_index(&Skills::load(vec![])).is_none());
}

#[tokio::test]
async fn skill_run_reports_output_and_failures_to_the_model() {
    let (_tmp, skills) = setup();
    let run = SkillRun {
        skills: skills.clone(),
        limits: RunLimits::default(),
    };
    let out = run
        .call(json!({"name": "box", "script": "go.sh", "args": ["a", 1]}))
        .await
        .unwrap();
    assert!(
        out.contains("[exit code 0]") && out.contains("went a 1"),
        "{out}"
    );
    let e = run
        .call(json!({"name": "box", "script": "../secret.txt"}))
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::Recoverable(_)), "{e:?}");
    let e = run
        .call(json!({"name": "box", "script": "go.sh", "args": "a"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("array"), "{e}");
    assert!(Path::new("/bin/sh").exists());
}
