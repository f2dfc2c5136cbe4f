//! `zocalo skills ...` and skills inside `zocalo ask`, end to end as a process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{zocalo, Run};
use zocalo_testkit::fake::{openai_text_sse, openai_tool_call_sse, FakeServer, Reply};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zocalo-skills/tests/fixtures")
}

fn fx(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

/// A data home plus a private HOME, so the developer's ~/.agents/skills stays out.
struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            home: tempfile::tempdir().unwrap(),
            user_home: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args).await
    }

    async fn run_with(&self, extra: &[(&str, &str)], args: &[&str]) -> Run {
        let mut env = vec![("HOME", self.user_home.path().to_str().unwrap())];
        env.extend_from_slice(extra);
        zocalo(self.home.path(), &env, args).await
    }

    fn skills_root(&self) -> PathBuf {
        self.home.path().join("skills")
    }
}

#[tokio::test]
async fn validate_reports_the_contract_json_and_exit_codes() {
    let env = Env::new();
    let ok = env
        .run(&["skills", "validate", &fx("valid/hello-world"), "--json"])
        .await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let v = ok.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["name"], "hello-world");
    assert_eq!(v["errors"], serde_json::json!([]));
    assert!(v["warnings"].is_array());

    for (dir, field) in [
        ("invalid/mismatch", "name"),
        ("invalid/no-frontmatter", "frontmatter"),
        ("invalid/unknown-field", "version"),
        ("invalid/no-skill-md", "SKILL.md"),
        ("does-not-exist", "SKILL.md"),
    ] {
        let bad = env.run(&["skills", "validate", &fx(dir), "--json"]).await;
        assert_eq!(bad.code, 2, "{dir}: {}", bad.stderr);
        let v = bad.json();
        assert_eq!(v["valid"], false, "{dir}");
        assert_eq!(v["errors"][0]["field"], field, "{dir}: {v}");
        assert!(bad.stderr.contains("not a valid skill"), "{}", bad.stderr);
    }
    let human = env
        .run(&["skills", "validate", &fx("invalid/double--hyphen")])
        .await;
    assert_eq!(human.code, 2);
    assert!(
        human
            .stdout
            .contains("error: name: must not contain consecutive hyphens"),
        "{}",
        human.stdout
    );
    let seed = env
        .run(&["skills", "validate", &fx("valid/seed-weather")])
        .await;
    assert_eq!(seed.code, 0);
    assert!(
        seed.stdout.contains("warning: triggers:"),
        "{}",
        seed.stdout
    );
}

#[tokio::test]
async fn install_list_show_and_conflicts() {
    let env = Env::new();
    let r = env
        .run(&["skills", "install", &fx("valid/hello-world")])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(env
        .skills_root()
        .join("hello-world/scripts/hello.py")
        .is_file());
    let again = env
        .run(&["skills", "install", &fx("valid/hello-world")])
        .await;
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(
        env.run(&["skills", "install", &fx("valid/hello-world"), "--force"])
            .await
            .code,
        0
    );
    // An invalid skill is refused and nothing is written.
    let bad = env
        .run(&["skills", "install", &fx("invalid/mismatch")])
        .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("name"), "{}", bad.stderr);
    let entries: Vec<_> = std::fs::read_dir(env.skills_root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, ["hello-world"]);

    // --skills-dir adds a root after the data home: its hello-world is shadowed, with a warning,
    // its seed-weather is listed; the broken fixtures are skipped with warnings.
    let list = env
        .run(&[
            "skills",
            "list",
            "--json",
            "--skills-dir",
            &fx("valid"),
            "--skills-dir",
            &fx("invalid"),
        ])
        .await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v = list.json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"hello-world") && names.contains(&"seed-weather"),
        "{names:?}"
    );
    let hello = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hello-world")
        .unwrap();
    assert!(
        hello["dir"]
            .as_str()
            .unwrap()
            .starts_with(env.skills_root().to_str().unwrap()),
        "{hello}"
    );
    assert!(list.stderr.contains("shadowed"), "{}", list.stderr);
    assert!(
        list.stderr.contains("skipped invalid skill") && list.stderr.contains("no-description"),
        "{}",
        list.stderr
    );

    let show = env.run(&["skills", "show", "hello-world"]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains("# Hello world") && show.stdout.contains("scripts/hello.py"),
        "{}",
        show.stdout
    );
    let show = env.run(&["skills", "show", "hello-world", "--json"]).await;
    assert_eq!(show.json()["metadata"]["author"], "zocalo-tests");
    let missing = env.run(&["skills", "show", "nope"]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("known: hello-world"),
        "{}",
        missing.stderr
    );
}

#[tokio::test]
async fn run_passes_args_and_enforces_the_time_limit() {
    let env = Env::new();
    let r = env
        .run(&[
            "skills",
            "run",
            "hello-world",
            "--skills-dir",
            &fx("valid"),
            "--",
            "Ada",
        ])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Hello, Ada! (checksum 262, from hello-world in hello-world)\n"
    );

    let seed = env
        .run(&[
            "skills",
            "run",
            "seed-weather",
            "--skills-dir",
            &fx("valid"),
            "--",
            "city=Quito",
        ])
        .await;
    assert_eq!(seed.code, 0, "{}", seed.stderr);
    assert!(
        seed.stdout.contains("\"city\": \"Quito\""),
        "{}",
        seed.stdout
    );

    let slow = env.skills_root().join("slow");
    std::fs::create_dir_all(slow.join("scripts")).unwrap();
    std::fs::write(
        slow.join("SKILL.md"),
        "---\nname: slow\ndescription: Never finishes.\n---\nRun it.\n",
    )
    .unwrap();
    std::fs::write(slow.join("scripts/slow.sh"), "echo begun\nsleep 600\n").unwrap();
    let start = Instant::now();
    let r = env.run(&["skills", "run", "slow", "--timeout", "1"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(r.stdout, "begun\n");
    assert!(r.stderr.contains("time limit"), "{}", r.stderr);

    let r = env.run(&["skills", "run", "nope"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_discloses_skills_and_runs_their_scripts() {
    let env = Env::new();
    assert_eq!(
        env.run(&["skills", "install", &fx("valid/hello-world")])
            .await
            .code,
        0
    );
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_1",
        "skill_open",
        r#"{"name":"hello-world"}"#,
    )));
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_2",
        "skill_run",
        r#"{"name":"hello-world","script":"hello.py","args":["Grace"]}"#,
    )));
    server.push(Reply::sse(openai_text_sse("gpt-test", &["Done."])));
    let base = format!("{}/v1", server.url());
    let r = env
        .run_with(
            &[
                ("OPENAI_BASE_URL", &base),
                ("OPENAI_API_KEY", "sk-test-123"),
            ],
            // No terminal here: running a skill's script is approved up front.
            &[
                "ask",
                "--provider",
                "openai",
                "--allow",
                "skill_run",
                "Greet Grace",
            ],
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "Done.");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let system = reqs[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("- hello-world: Greets someone by name"),
        "{system}"
    );
    let last = reqs[2].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "tool");
    let checksum: u32 = "Grace".chars().map(|c| c as u32).sum();
    assert!(
        last["content"].as_str().unwrap().contains(&format!(
            "Hello, Grace! (checksum {checksum}, from hello-world in hello-world)"
        )),
        "{last}"
    );
    // --no-tools: no catalog, no skill tools.
    server.push(Reply::sse(openai_text_sse("gpt-test", &["Plain."])));
    let r = env
        .run_with(
            &[
                ("OPENAI_BASE_URL", &base),
                ("OPENAI_API_KEY", "sk-test-123"),
            ],
            &["ask", "--provider", "openai", "--no-tools", "Hi"],
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let req = server.requests().pop().unwrap();
    assert!(!req.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("hello-world"));
}
