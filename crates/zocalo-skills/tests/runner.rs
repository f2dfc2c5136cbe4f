//! The script runner with real processes: limits, environment, interpreters, seed shim.
//! Scripts go through the sandbox launcher, as `zocalo` runs them (see tests/sandbox.rs for
//! what the sandbox enforces).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use zocalo_skills::{check_dir, run_script, RunLimits, Skill};

/// A skill in a temp dir with the given scripts.
fn skill_with(scripts: &[(&str, &str)]) -> (tempfile::TempDir, Skill) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: lab\ndescription: Test scripts.\n---\nRun them.\n",
    )
    .unwrap();
    for (name, text) in scripts {
        std::fs::write(dir.join("scripts").join(name), text).unwrap();
    }
    let skill = check_dir(&dir).skill.expect("valid skill");
    (tmp, skill)
}

fn limits(timeout_ms: u64) -> RunLimits {
    RunLimits {
        timeout: Duration::from_millis(timeout_ms),
        ..RunLimits::sandboxed(env!("CARGO_BIN_EXE_zocalo-skill-sandbox"))
    }
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: /proc/PID/stat state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.contains(") Z"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_script_that_never_ends_is_killed_with_its_group() {
    let (_tmp, skill) = skill_with(&[(
        "forever.sh",
        "sleep 300 &\necho \"child $!\"\necho started\nwhile true; do sleep 1; done\n",
    )]);
    let start = Instant::now();
    let out = run_script(&skill, Some("scripts/forever.sh"), &[], &limits(700))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert!(!out.success());
    assert_eq!(out.exit_code, None);
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(out.stdout.contains("started"), "{out:?}");
    assert!(out.render().contains("killed at the time limit"));
    // The background grandchild was in the group and died too.
    let pid: i32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("child "))
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "grandchild {pid} survived the group kill");
}

#[tokio::test]
async fn a_flood_of_output_is_cut_and_marked() {
    // 100 MB on stdout, a little on stderr.
    let (_tmp, skill) = skill_with(&[(
        "flood.py",
        "import sys\nchunk = 'x' * (1024 * 1024)\nfor _ in range(100):\n    sys.stdout.write(chunk)\nsys.stderr.write('done\\n')\n",
    )]);
    let start = Instant::now();
    let out = run_script(&skill, Some("flood.py"), &[], &limits(30_000))
        .await
        .unwrap();
    assert!(out.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout_bytes, 100 * 1024 * 1024);
    assert!(out.stdout.len() < 64 * 1024 + 200, "{}", out.stdout.len());
    assert!(out.stdout.starts_with("xxxx"));
    assert!(
        out.stdout.contains(&format!(
            "[... output truncated: 65536 of {} bytes shown ...]",
            100 * 1024 * 1024
        )),
        "{}",
        &out.stdout[out.stdout.len() - 200..]
    );
    assert_eq!(out.stderr, "done\n");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn the_environment_is_clean_and_cwd_is_the_skill() {
    // The test process itself holds a provider key; the script must not see it.
    std::env::set_var("OPENAI_API_KEY", "sk-must-not-leak");
    std::env::set_var("ZOCALO_DATABASE_URL", "postgres://secret@host/db");
    let (_tmp, skill) = skill_with(&[(
        "env.py",
        "import os\nfor k in sorted(os.environ):\n    print(k)\nprint('cwd=' + os.getcwd())\nprint('dir=' + os.environ['ZOCALO_SKILL_DIR'])\n",
    )]);
    let out = run_script(&skill, Some("env.py"), &[], &limits(10_000))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    let keys: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.contains('='))
        // Added by the interpreter's own launcher (a pyenv shim is a bash script), not by us.
        .filter(|l| !["PWD", "SHLVL", "_"].contains(l) && !l.contains("PYENV"))
        .collect();
    for k in &keys {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "ZOCALO_SKILL_DIR",
                "ZOCALO_SKILL_SCRATCH",
                "TMPDIR",
                "LC_CTYPE"
            ]
            .contains(k),
            "unexpected variable {k} in {keys:?}"
        );
    }
    assert!(keys.contains(&"ZOCALO_SKILL_DIR") && keys.contains(&"PATH"));
    let canon = skill.dir.canonicalize().unwrap();
    assert!(
        out.stdout.contains(&format!("cwd={}", canon.display())),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("sk-must-not-leak"));
}

#[tokio::test]
async fn interpreters_by_shebang_and_extension() {
    let (_tmp, skill) = skill_with(&[
        ("a.sh", "echo \"bash $1\"\n"),
        (
            "b",
            "#!/usr/bin/env python3\nimport sys\nprint('py', sys.argv[1])\n",
        ),
        ("fail.sh", "echo oops >&2\nexit 3\n"),
        ("notes.txt", "plain text"),
    ]);
    let run = |s: &'static str| {
        let skill = skill.clone();
        async move { run_script(&skill, Some(s), &["arg1".to_string()], &limits(10_000)).await }
    };
    assert_eq!(run("a.sh").await.unwrap().stdout, "bash arg1\n");
    assert_eq!(run("scripts/b").await.unwrap().stdout, "py arg1\n");
    let fail = run("fail.sh").await.unwrap();
    assert_eq!(fail.exit_code, Some(3));
    assert_eq!(fail.stderr, "oops\n");
    assert!(fail.render().contains("exit code 3"));
    let e = run("notes.txt").await.unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("#!"), "{e}");
    let e = run("missing.sh").await.unwrap_err();
    assert!(e.is_usage(), "{e}");
    if Path::new("/usr/bin/node").exists() || which("node") {
        let (_t, s) = skill_with(&[("n.js", "console.log('node', process.argv[2])\n")]);
        let out = run_script(&s, Some("n.js"), &["x".into()], &limits(10_000))
            .await
            .unwrap();
        assert_eq!(out.stdout, "node x\n");
    }
}

fn which(p: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .unwrap_or(false)
}

#[tokio::test]
async fn seed_style_run_functions_go_through_the_shim() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/seed-weather");
    let skill = check_dir(&fixture).skill.unwrap();
    // No --script: the skill's scripts/<name>.py is picked.
    let out = run_script(&skill, None, &["city=Lima".into()], &limits(10_000))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["city"], "Lima");
    assert_eq!(v["unit"], "C");
    let out = run_script(&skill, None, &["Oslo".into(), "F".into()], &limits(10_000))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["city"].as_str(), v["unit"].as_str()),
        (Some("Oslo"), Some("F"))
    );

    let (_t, s) = skill_with(&[(
        "lab.py",
        "def execute(args):\n    return ' '.join(reversed(args))\n",
    )]);
    let out = run_script(
        &s,
        None,
        &["a".into(), "b".into(), "c".into()],
        &limits(10_000),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "c b a\n");
}

#[tokio::test]
async fn ambiguous_default_script_lists_the_choices() {
    let (_t, s) = skill_with(&[("one.sh", "true\n"), ("two.sh", "true\n")]);
    let e = run_script(&s, None, &[], &limits(10_000))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("scripts/one.sh") && msg.contains("scripts/two.sh"),
        "{msg}"
    );
}
