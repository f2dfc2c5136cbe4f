//! The shell tool with real processes, through the Landlock launcher: writes outside the
//! workspace fail (where the kernel has Landlock), the environment holds no keys, the time
//! limit kills the whole process group, output is capped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zocalo_core::{Tool, ToolError};
use zocalo_tools::{Shell, ShellConfig, Workspace};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_zocalo-tools-sandbox");

/// Whether this kernel enforces Landlock, found independently of the code under test:
/// restrict a throwaway thread (Landlock binds only the calling thread).
fn kernel_has_landlock() -> bool {
    use landlock::{Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus};
    std::thread::spawn(|| {
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(landlock::ABI::V1))
            .unwrap()
            .create()
            .unwrap()
            .restrict_self()
            .unwrap();
        status.ruleset != RulesetStatus::NotEnforced
    })
    .join()
    .unwrap()
}

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
            max_output: 4096,
            ..ShellConfig::default()
        },
    );
    Fx {
        _tmp: tmp,
        root,
        shell,
    }
}

async fn call(shell: &Shell, args: serde_json::Value) -> String {
    match shell.call(args.clone()).await {
        Ok(s) => s,
        Err(e) => panic!("{args}: {e:?}"),
    }
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A `sleep` argument no other process has: about 100 s, with unique decimals.
fn unique_sleep() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("100.{}{n}{nanos:09}", std::process::id())
}

/// Whether any process on the machine has `needle` in its command line.
fn running(needle: &str) -> bool {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout).contains(needle)
}

#[tokio::test]
async fn writes_stay_in_the_workspace() {
    let fx = fixture(Some(LAUNCHER));
    let outside = std::env::temp_dir().join(unique("zocalo-outside"));
    let home_file = PathBuf::from(std::env::var_os("HOME").unwrap()).join(unique(".zocalo-probe"));
    let cmd = format!(
        "echo inside > made.txt && mkdir -p d/e && echo deep > d/e/f.txt && \
         echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\" && pwd && \
         echo x > {} ; echo \"outside=$?\"; echo y > {} ; echo \"home=$?\"",
        outside.display(),
        home_file.display()
    );
    let out = fx.shell.run(&cmd, Duration::from_secs(20)).await.unwrap();
    let outside_written = outside.exists();
    let home_written = home_file.exists();
    let _ = std::fs::remove_file(&outside);
    let _ = std::fs::remove_file(&home_file);

    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(fx.root.join("made.txt")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(fx.root.join("d/e/f.txt")).unwrap(),
        "deep\n"
    );
    assert!(out.output.contains("tmp\n"), "{}", out.output);
    assert!(
        out.output.contains(&format!("{}\n", fx.root.display())),
        "cwd is the workspace: {}",
        out.output
    );
    if !kernel_has_landlock() {
        assert_eq!(out.sandbox, "none");
        eprintln!("this kernel has no Landlock: only checking that commands still run");
        return;
    }
    assert!(out.sandbox.starts_with("landlock-v"), "{}", out.sandbox);
    assert!(!outside_written, "the command wrote {outside:?}");
    assert!(!home_written, "the command wrote into $HOME");
    assert!(
        out.output.contains("outside=1") || out.output.contains("outside=2"),
        "{}",
        out.output
    );
    assert!(out.output.contains("Permission denied"), "{}", out.output);
    assert!(!out.output.contains("home=0"), "{}", out.output);
}

#[tokio::test]
async fn the_tool_reports_a_failed_outside_write() {
    let fx = fixture(Some(LAUNCHER));
    if !kernel_has_landlock() {
        eprintln!("this kernel has no Landlock: skipping");
        return;
    }
    let outside = std::env::temp_dir().join(unique("zocalo-outside"));
    let text = call(
        &fx.shell,
        json!({"command": format!("echo x > {}", outside.display())}),
    )
    .await;
    assert!(!outside.exists());
    assert!(text.starts_with("[exit code "), "{text}");
    assert!(!text.starts_with("[exit code 0"), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
}

#[tokio::test]
async fn the_time_limit_kills_the_group() {
    let fx = fixture(Some(LAUNCHER));
    let (a, b) = (unique_sleep(), unique_sleep());
    // Background children too: the command's process group goes at the limit.
    let started = Instant::now();
    let text = call(
        &fx.shell,
        json!({"command": format!("sleep {a} & sleep {b}; echo finished"), "timeout_s": 2}),
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(text.starts_with("[timed out after 2 s"), "{text}");
    assert!(!text.contains("finished"), "{text}");
    assert!(!running(&a) && !running(&b), "a sleep outlived the call");

    let started = Instant::now();
    let out = fx
        .shell
        .run("sleep 100", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
}

#[tokio::test]
async fn exit_codes_and_output() {
    let fx = fixture(Some(LAUNCHER));
    let text = call(
        &fx.shell,
        json!({"command": "echo out; echo err >&2; exit 3"}),
    )
    .await;
    assert!(text.starts_with("[exit code 3, "), "{text}");
    assert!(
        text.ends_with(" s]\nout\nerr\n"),
        "stdout and stderr in order: {text}"
    );
    let text = call(&fx.shell, json!({"command": "true"})).await;
    assert!(
        text.starts_with("[exit code 0") && text.ends_with("(no output)\n"),
        "{text}"
    );
    let text = call(&fx.shell, json!({"command": "kill -TERM $$"})).await;
    assert!(text.starts_with("[killed by signal 15"), "{text}");
    // Input is closed: a program reading stdin sees the end at once.
    let text = call(&fx.shell, json!({"command": "cat; echo done"})).await;
    assert!(text.contains("done"), "{text}");
}

#[tokio::test]
async fn output_is_capped() {
    let fx = fixture(Some(LAUNCHER));
    let out = fx
        .shell
        .run(
            "head -c 100000 /dev/zero | tr '\\0' a",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.output_bytes, 100_000);
    assert!(
        out.output.starts_with(&"a".repeat(4096)),
        "{}",
        &out.output[..50]
    );
    assert!(
        out.output
            .contains("[... output truncated: the first 4096 of 100000 bytes are shown ...]"),
        "{}",
        &out.output[4000..]
    );
}

#[tokio::test]
async fn bad_arguments_and_a_broken_launcher() {
    let fx = fixture(Some(LAUNCHER));
    for (args, needle) in [
        (
            json!({"command": "true", "timeout_s": 0}),
            "between 1 and 600",
        ),
        (
            json!({"command": "true", "timeout_s": 601}),
            "between 1 and 600",
        ),
        (json!({"command": "  "}), "empty"),
        (json!({}), "`command`"),
    ] {
        match fx.shell.call(args.clone()).await {
            Err(ToolError::Recoverable(m)) => assert!(m.contains(needle), "{args}: {m}"),
            other => panic!("{args}: {other:?}"),
        }
    }
    let broken = fixture(Some("/no/such/launcher"));
    match broken.shell.call(json!({"command": "true"})).await {
        Err(ToolError::Fatal(m)) => assert!(m.contains("/no/such/launcher"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_abandoned_call_kills_the_group() {
    let fx = fixture(Some(LAUNCHER));
    let (a, b) = (unique_sleep(), unique_sleep());
    let cmd = format!("sleep {a} & sleep {b}");
    // The ask is cancelled after half a second: the call's future is dropped.
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        fx.shell.run(&cmd, Duration::from_secs(60)),
    )
    .await;
    assert!(r.is_err(), "the command should still have been running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !running(&a) && !running(&b),
        "a sleep outlived the abandoned call"
    );
}
