//! The Landlock write sandbox, with real processes: a script may write only its scratch
//! directory (and /dev/null); its home, the skill directory and the rest of /tmp are denied
//! with EACCES, and so are its children; the skill directory is left unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zocalo_skills::runner::probe_sandbox;
use zocalo_skills::{check_dir, run_script, RunLimits, Skill, SkillError};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_zocalo-skill-sandbox");

/// The Landlock ABI this kernel offers, found independently of the code under test: restrict
/// a throwaway thread (Landlock binds only the calling thread) and read the crate's
/// compatibility status.
fn kernel_abi() -> Option<i32> {
    use landlock::{Access, AccessFs, LandlockStatus, Ruleset, RulesetAttr};
    std::thread::spawn(|| {
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(landlock::ABI::V1))
            .unwrap()
            .create()
            .unwrap()
            .restrict_self()
            .unwrap();
        match status.landlock {
            LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => Some(kernel_abi.unwrap_or(effective_abi as i32)),
            _ => None,
        }
    })
    .join()
    .unwrap()
}

/// What the runner should report here: the kernel's ABI, capped at the one we ask for.
fn expected_label() -> String {
    match kernel_abi() {
        Some(abi) => format!("landlock-v{}", abi.min(7)),
        None => "none".into(),
    }
}

fn sandboxed() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(20),
        ..RunLimits::sandboxed(LAUNCHER)
    }
}

fn skill_with(scripts: &[(&str, &str)]) -> (tempfile::TempDir, Skill) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: lab\ndescription: Sandbox probes.\n---\nRun them.\n",
    )
    .unwrap();
    for (name, text) in scripts {
        std::fs::write(dir.join("scripts").join(name), text).unwrap();
    }
    let skill = check_dir(&dir).skill.expect("valid skill");
    (tmp, skill)
}

/// Every path under `dir` with its bytes (directories as empty entries).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
                out.insert(p, Vec::new());
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// Tries each kind of write and prints {name: "ok" | errno name}.
const PROBE: &str = r#"
import errno, json, os, subprocess, sys, tempfile
outside, home_file, parent_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
skill = os.environ["ZOCALO_SKILL_DIR"]
scratch = os.environ["ZOCALO_SKILL_SCRATCH"]
res = {"scratch": scratch, "tmpdir": os.environ.get("TMPDIR")}
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = errno.errorcode.get(e.errno, str(e.errno))
def write(path, mode="w"):
    with open(path, mode) as f:
        f.write("written by the probe")
# Denied: the user's home, the skill directory in every way, /tmp outside the scratch dir.
attempt("home_write", lambda: write(home_file))
attempt("skill_new_file", lambda: write(os.path.join(skill, "new.txt")))
attempt("skill_append", lambda: write(os.path.join(skill, "SKILL.md"), "a"))
attempt("skill_truncate", lambda: os.truncate(os.path.join(skill, "SKILL.md"), 0))
attempt("skill_remove", lambda: os.remove(os.path.join(skill, "SKILL.md")))
attempt("skill_rename", lambda: os.rename(os.path.join(skill, "SKILL.md"), os.path.join(skill, "X.md")))
attempt("skill_mkdir", lambda: os.mkdir(os.path.join(skill, "d")))
attempt("skill_symlink", lambda: os.symlink("/etc/passwd", os.path.join(skill, "scripts", "l")))
attempt("tmp_outside", lambda: write(os.path.join(outside, "escaped.txt")))
attempt("signal_parent", lambda: os.kill(parent_pid, 0))
# A child process inherits the restriction.
child = subprocess.run(["sh", "-c", 'echo x > "$1"', "sh", os.path.join(outside, "child.txt")],
                       capture_output=True, text=True)
res["child_exit"] = child.returncode
# Allowed: the scratch dir (directly and through TMPDIR), /dev/null, reading anything.
attempt("scratch_write", lambda: write(os.path.join(scratch, "out.txt")))
attempt("scratch_mkdir", lambda: os.makedirs(os.path.join(scratch, "a", "b")))
attempt("scratch_rename", lambda: os.rename(os.path.join(scratch, "out.txt"), os.path.join(scratch, "a", "moved.txt")))
attempt("tempfile", lambda: res.__setitem__("tempfile_path", tempfile.mkstemp()[1]))
attempt("dev_null", lambda: write("/dev/null"))
attempt("read_skill", lambda: open(os.path.join(skill, "SKILL.md")).read())
attempt("read_root", lambda: os.listdir("/usr/bin"))
print(json.dumps(res))
"#;

#[tokio::test]
async fn a_script_writes_only_its_scratch_dir() {
    let expected = expected_label();
    let (_tmp, skill) = skill_with(&[("probe.py", PROBE)]);
    let outside = tempfile::tempdir().unwrap();
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let home_file = home.join(format!("zocalo-sandbox-probe-{}", std::process::id()));
    let before = snapshot(&skill.dir);

    let out = run_script(
        &skill,
        Some("probe.py"),
        &[
            outside.path().display().to_string(),
            home_file.display().to_string(),
            std::process::id().to_string(),
        ],
        &sandboxed(),
    )
    .await
    .unwrap();
    let home_written = home_file.exists();
    let _ = std::fs::remove_file(&home_file);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.sandbox, expected, "{out:?}");
    let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();

    // Always: a private scratch dir, also as TMPDIR, and removed after the run.
    let scratch = PathBuf::from(r["scratch"].as_str().unwrap());
    assert_eq!(r["tmpdir"], r["scratch"]);
    assert!(
        !scratch.exists(),
        "scratch dir {scratch:?} outlived the run"
    );
    for ok in [
        "scratch_write",
        "scratch_mkdir",
        "scratch_rename",
        "tempfile",
        "dev_null",
        "read_skill",
        "read_root",
    ] {
        assert_eq!(r[ok], "ok", "{ok}: {r}");
    }
    assert!(r["tempfile_path"]
        .as_str()
        .unwrap()
        .starts_with(scratch.to_str().unwrap()));

    if expected == "none" {
        eprintln!("this kernel has no Landlock: only checking that scripts still run");
        return;
    }
    let abi: i32 = expected.trim_start_matches("landlock-v").parse().unwrap();
    let mut denied = vec![
        "home_write",
        "skill_new_file",
        "skill_append",
        "skill_remove",
        "skill_rename",
        "skill_mkdir",
        "skill_symlink",
        "tmp_outside",
    ];
    if abi >= 3 {
        denied.push("skill_truncate"); // the truncate right came with ABI 3
    }
    for d in denied {
        assert_eq!(r[d], "EACCES", "{d}: {r}");
    }
    if abi >= 6 {
        // Signal scoping: nothing outside the sandbox can be signalled.
        assert_eq!(r["signal_parent"], "EPERM", "{r}");
    }
    assert_ne!(r["child_exit"], 0, "{r}");
    assert!(!home_written, "the script wrote into $HOME");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(snapshot(&skill.dir), before, "the skill directory changed");
}

#[tokio::test]
async fn without_a_launcher_scripts_run_unrestricted_and_say_so() {
    let (_tmp, skill) = skill_with(&[(
        "w.sh",
        "echo hi > \"$1/free.txt\" && echo \"scratch=$ZOCALO_SKILL_SCRATCH\"\n",
    )]);
    let outside = tempfile::tempdir().unwrap();
    let out = run_script(
        &skill,
        Some("w.sh"),
        &[outside.path().display().to_string()],
        &RunLimits::default(),
    )
    .await
    .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.sandbox, "none");
    assert!(outside.path().join("free.txt").exists());
    assert!(out.stdout.contains("scratch=/"), "{}", out.stdout);
}

#[tokio::test]
async fn the_probe_reports_what_the_kernel_enforces() {
    let (label, reason) = probe_sandbox(Path::new(LAUNCHER)).await;
    assert_eq!(label, expected_label());
    assert_eq!(reason.is_some(), label == "none", "{reason:?}");
    let (label, reason) = probe_sandbox(Path::new("/no/such/launcher")).await;
    assert_eq!(label, "none");
    assert!(reason.unwrap().contains("/no/such/launcher"));
}

#[tokio::test]
async fn a_missing_interpreter_is_a_spawn_error_through_the_launcher() {
    let (_tmp, skill) = skill_with(&[("x", "#!/no/such/interpreter\necho hi\n")]);
    let e = run_script(&skill, Some("scripts/x"), &[], &sandboxed())
        .await
        .unwrap_err();
    match &e {
        SkillError::Spawn { program, source } => {
            assert_eq!(program, "/no/such/interpreter");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{e}");
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert!(!e.is_usage());
}

#[test]
fn the_launcher_rejects_bad_arguments_and_reports_exec_failures() {
    let run = |args: &[&str]| {
        std::process::Command::new(LAUNCHER)
            .args(args)
            .output()
            .unwrap()
    };
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path().to_str().unwrap();
    for bad in [
        &["not-the-subcommand"][..],
        &["__skill-sandbox", "--", "true"][..],
        &["__skill-sandbox", "--write", "/no/such/dir", "--", "true"][..],
        &["__skill-sandbox", "--write", s][..],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
    let status = scratch.path().join("status");
    let st = status.to_str().unwrap();
    let out = run(&[
        "__skill-sandbox",
        "--status",
        st,
        "--write",
        s,
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&status).unwrap().lines().next(),
        Some(format!("sandbox={}", expected_label()).as_str())
    );
    let out = run(&[
        "__skill-sandbox",
        "--status",
        st,
        "--write",
        s,
        "--",
        "/no/such/program",
    ]);
    assert_eq!(out.status.code(), Some(127));
    assert!(std::fs::read_to_string(&status)
        .unwrap()
        .contains("exec_errno=2"));
}
