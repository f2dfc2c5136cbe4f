//! `zocalo skills run` starts scripts through `zocalo __skill-sandbox`: with Landlock, a script
//! writes only its scratch directory; `zocalo doctor` reports the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::zocalo;

const SCRIPT: &str = r#"try() { if sh -c "$2" 2>/dev/null; then echo "$1: written"; else echo "$1: denied"; fi; }
try home 'echo x > "$HOME/escape.txt"'
try skill 'echo x > "$ZOCALO_SKILL_DIR/new.txt"'
try scratch 'echo x > "$ZOCALO_SKILL_SCRATCH/ok.txt" && test "$TMPDIR" = "$ZOCALO_SKILL_SCRATCH"'
"#;

#[tokio::test]
async fn skills_run_confines_writes_to_the_scratch_dir() {
    let home = tempfile::tempdir().unwrap();
    let user_home = tempfile::tempdir().unwrap();
    let skill = home.path().join("skills/lab");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: lab\ndescription: Tries to write.\n---\nRun it.\n",
    )
    .unwrap();
    std::fs::write(skill.join("scripts/lab.sh"), SCRIPT).unwrap();
    let env = [("HOME", user_home.path().to_str().unwrap())];

    let doctor = zocalo(home.path(), &env, &["doctor", "--json"]).await;
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let check = checks
        .iter()
        .find(|c| c["name"] == "skill_sandbox")
        .expect("doctor reports the skill sandbox");
    let detail = check["detail"].as_str().unwrap();
    let sandboxed = check["ok"] == true;
    assert_eq!(sandboxed, detail.starts_with("landlock-v"), "{detail}");

    let run = zocalo(home.path(), &env, &["skills", "run", "lab"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("scratch: written"), "{}", run.stdout);
    if sandboxed {
        assert!(run.stdout.contains("home: denied"), "{}", run.stdout);
        assert!(run.stdout.contains("skill: denied"), "{}", run.stdout);
        assert!(!user_home.path().join("escape.txt").exists());
        assert!(!skill.join("new.txt").exists());
    } else {
        // No Landlock here: the script runs with the user's rights, as documented.
        assert!(run.stdout.contains("home: written"), "{}", run.stdout);
    }
}
