//! Discovery order, name conflicts, invalid skills, hot reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use zocalo_skills::Skills;

fn write_skill(root: &Path, dir: &str, name: &str, description: &str) {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("SKILL.md"),
        format!("---\nname: {name}\ndescription: {description}\n---\nDo it.\n"),
    )
    .unwrap();
}

#[test]
fn earlier_roots_win_conflicts_and_invalid_skills_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_skill(&a, "shared", "shared", "from a");
    write_skill(&b, "shared", "shared", "from b");
    write_skill(&b, "only-b", "only-b", "b's own");
    write_skill(&b, "broken", "broken", "");
    std::fs::create_dir_all(b.join("not-a-skill")).unwrap();
    std::fs::write(b.join("README.md"), "hi").unwrap();
    let missing = tmp.path().join("missing");
    let skills = Skills::load(vec![a.clone(), missing, b.clone()]);
    assert_eq!(skills.names(), ["only-b", "shared"]);
    assert_eq!(skills.get("shared").unwrap().description, "from a");
    let w = skills.warnings().join("\n");
    assert!(
        w.contains("shadowed") && w.contains(&b.join("shared").display().to_string()),
        "{w}"
    );
    assert!(
        w.contains("skipped invalid skill") && w.contains("broken"),
        "{w}"
    );
    assert!(!w.contains("not-a-skill"), "{w}");
    // The other order flips the winner.
    let flipped = Skills::load(vec![b, a]);
    assert_eq!(flipped.get("shared").unwrap().description, "from b");
    let e = skills.get("nope").unwrap_err();
    assert!(
        e.is_usage() && e.to_string().contains("only-b, shared"),
        "{e}"
    );
}

#[test]
fn default_roots_follow_the_documented_order() {
    let home = Path::new("/data-home");
    let extra = vec![Path::new("/extra").to_path_buf()];
    let roots = zocalo_skills::default_roots(home, &extra);
    assert_eq!(roots[0], home.join("skills"));
    assert!(roots[1].ends_with(".agents/skills"));
    assert_eq!(
        roots[2],
        std::env::current_dir().unwrap().join(".agents/skills")
    );
    assert_eq!(roots.last().unwrap(), Path::new("/extra"));
}

fn wait_for(skills: &Skills, what: &str, cond: impl Fn(&Skills) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond(skills) {
        assert!(Instant::now() < deadline, "hot reload never saw: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn hot_reload_sees_new_changed_broken_and_removed_skills() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write_skill(&root, "first", "first", "one");
    let skills = Skills::load(vec![root.clone()]);
    skills.watch().unwrap();
    assert_eq!(skills.names(), ["first"]);

    write_skill(&root, "second", "second", "two");
    wait_for(&skills, "a new skill", |s| s.names() == ["first", "second"]);

    write_skill(&root, "second", "second", "two, edited");
    wait_for(&skills, "an edit", |s| {
        s.get("second")
            .map(|k| k.description.clone())
            .ok()
            .as_deref()
            == Some("two, edited")
    });

    // Breaking a skill drops it with a warning; the rest stay.
    std::fs::write(root.join("second/SKILL.md"), "no frontmatter").unwrap();
    wait_for(&skills, "a broken skill", |s| s.names() == ["first"]);
    assert!(skills.warnings().join(" ").contains("second"));

    std::fs::remove_dir_all(root.join("first")).unwrap();
    wait_for(&skills, "a removal", |s| s.is_empty());
    assert!(skills.reload_count() >= 4);

    // Clones share the watcher; dropping them all stops it (nothing to assert beyond no hang).
    drop(skills);
}
