//! `zocalo agents` as a real process against a local server speaking the OpenAI streaming
//! format, on SQLite and PostgreSQL: results in input order, bounded concurrency, bad input
//! refused before any agent starts, provider failures isolated, timeouts, Ctrl-C, the pool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use zocalo_testkit::db::TestDb;
use zocalo_testkit::fake::{
    openai_text_sse, openai_tool_call_sse, FakeServer, RecordedRequest, Reply,
};

fn prompt_of(r: &RecordedRequest) -> String {
    r.body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// "echo: PROMPT" after `delay`; `slow…` prompts wait 30 s, `fail…` prompts get a 400.
async fn echo_server(delay: Duration) -> FakeServer {
    let server = FakeServer::start().await;
    server.respond_with(move |r| {
        let prompt = prompt_of(r);
        if prompt.starts_with("fail") {
            return Reply::json(
                400,
                serde_json::json!({"error": {"message": "this prompt is refused", "type": "invalid_request_error"}}),
            );
        }
        let wait = if prompt.starts_with("slow") {
            Duration::from_secs(30)
        } else {
            delay
        };
        Reply::sse(openai_text_sse("gpt-test", &["echo: ", &prompt])).delay(wait)
    });
    server
}

fn command(
    db: &TestDb,
    home: &Path,
    server: &FakeServer,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"));
    for k in [
        "ZOCALO_DATABASE_URL",
        "ZOCALO_LOG",
        "ZOCALO_PROVIDER",
        "ZOCALO_MODEL",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("ZOCALO_HOME", home)
        .env("ZOCALO_MEMORY", "off")
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .env("OPENAI_API_KEY", "sk-test-agents-0123456789")
        .arg("--database-url")
        .arg(db.url())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(db: &TestDb, home: &Path, server: &FakeServer, args: &[&str]) -> common::Run {
    common::output_within(command(db, home, server, args), 90).await
}

/// `zocalo worker --drain ARGS...`, its log at info: a worker that does not finish in time
/// shows in the panic what it was doing.
async fn drain(db: &TestDb, home: &Path, server: &FakeServer, args: &[&str]) -> common::Run {
    let mut all = vec!["worker", "--drain"];
    all.extend_from_slice(args);
    let mut cmd = command(db, home, server, &all);
    cmd.env("ZOCALO_LOG", "info");
    common::output_within(cmd, 90).await
}

/// Waits (at most 30 s) until `pool stats` counts `n` queued jobs: the `--on-pool` spawner
/// has enqueued its agents.
async fn wait_until_queued(db: &TestDb, home: &Path, server: &FakeServer, n: u64) {
    let t0 = std::time::Instant::now();
    loop {
        let s = run(db, home, server, &["pool", "stats", "--json"])
            .await
            .json();
        if s["queued"].as_u64() == Some(n) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{n} jobs never queued: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_tasks(home: &Path, lines: &[String]) -> String {
    let path = home.join("tasks.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

fn task_lines(n: usize, prompt: impl Fn(usize) -> String) -> Vec<String> {
    (0..n)
        .map(|i| serde_json::json!({"id": format!("t{i}"), "prompt": prompt(i)}).to_string())
        .collect()
}

both!(
    spawn_all_prints_results_in_input_order,
    |db, home| async move {
        let server = echo_server(Duration::from_millis(30)).await;
        let file = write_tasks(home, &task_lines(40, |i| format!("question {i}")));
        let r = run(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--provider",
                "openai",
                "--concurrency",
                "6",
                "--json",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let results = r.json();
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), 40);
        for (i, a) in results.iter().enumerate() {
            assert_eq!(a["id"], format!("t{i}"), "{a}");
            assert_eq!(a["status"], "ok", "{a}");
            assert_eq!(a["output"], format!("echo: question {i}"));
            assert!(a["elapsed_ms"].as_u64().unwrap() >= 25, "{a}");
        }
        let peak = server.peak_in_flight();
        assert!((3..=6).contains(&peak), "peak in flight {peak}");

        // The batch is recorded: list and show agree with what was printed.
        let listed = run(db, home, &server, &["agents", "list", "--json"]).await;
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        let batches = listed.json();
        assert_eq!(batches.as_array().unwrap().len(), 1);
        let b = &batches[0];
        assert_eq!(
            (b["total"].as_u64(), b["ok"].as_u64()),
            (Some(40), Some(40))
        );
        assert_eq!(b["state"], "finished");
        assert_eq!(b["runner"], "local");
        let id = b["id"].as_str().unwrap();
        let shown = run(db, home, &server, &["agents", "show", id, "--json"]).await;
        assert_eq!(shown.code, 0, "{}", shown.stderr);
        let agents = shown.json()["agents"].as_array().unwrap().clone();
        assert_eq!(agents.len(), 40);
        assert_eq!(agents[7]["id"], "t7");
        assert_eq!(agents[7]["output"], "echo: question 7");
        // Each agent's answer is its own stored conversation.
        let conv = agents[7]["conversation_id"].as_str().unwrap();
        let c = run(
            db,
            home,
            &server,
            &["conversations", "show", conv, "--json"],
        )
        .await;
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert_eq!(c.json()["messages"][0]["message"]["content"], "question 7");
    }
);

both!(
    bad_input_is_refused_before_any_agent_starts,
    |db, home| async move {
        let server = echo_server(Duration::ZERO).await;
        let mut lines = task_lines(3, |i| format!("q{i}"));
        lines.insert(2, "{\"id\": \"x\", \"prompt\": ".into());
        let file = write_tasks(home, &lines);
        let r = run(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--provider",
                "openai",
                "--json",
            ],
        )
        .await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("line 3"), "{}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);

        let mut lines = task_lines(4, |i| format!("q{i}"));
        lines.push(serde_json::json!({"id": "t1", "prompt": "again"}).to_string());
        let file = write_tasks(home, &lines);
        let r = run(
            db,
            home,
            &server,
            &["agents", "spawn-all", &file, "--provider", "openai"],
        )
        .await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("line 5") && r.stderr.contains("duplicate id \"t1\""),
            "{}",
            r.stderr
        );

        for args in [
            vec!["--concurrency", "0"],
            vec!["--timeout", "0"],
            vec!["--timeout", "soon"],
            vec!["--provider", "nosuch"],
        ] {
            let file = write_tasks(home, &task_lines(2, |i| format!("q{i}")));
            let mut all = vec!["agents", "spawn-all", file.as_str()];
            all.extend(args.iter().copied());
            let r = run(db, home, &server, &all).await;
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        }
        let missing = home.join("none.jsonl");
        let r = run(
            db,
            home,
            &server,
            &["agents", "spawn-all", missing.to_str().unwrap()],
        )
        .await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("none.jsonl"), "{}", r.stderr);

        // Nothing reached the provider and no batch was recorded.
        assert!(server.requests().is_empty());
        let listed = run(db, home, &server, &["agents", "list", "--json"]).await;
        assert_eq!(listed.json(), serde_json::json!([]));
        let r = run(
            db,
            home,
            &server,
            &["agents", "show", "batch_nope", "--json"],
        )
        .await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        let r = run(db, home, &server, &["agents", "show", "nope"]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
    }
);

both!(
    a_failing_or_slow_agent_does_not_stop_the_batch,
    |db, home| async move {
        let server = echo_server(Duration::from_millis(5)).await;
        let lines = vec![
            serde_json::json!({"id": "a", "prompt": "first"}).to_string(),
            serde_json::json!({"id": "b", "prompt": "fail please"}).to_string(),
            serde_json::json!({"id": "c", "prompt": "slow one"}).to_string(),
            serde_json::json!({"id": "d", "prompt": "last"}).to_string(),
        ];
        let file = write_tasks(home, &lines);
        let r = run(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--provider",
                "openai",
                "--timeout",
                "0.5",
                "--json",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = r.json();
        assert_eq!(v[0]["status"], "ok");
        assert_eq!(v[3]["status"], "ok");
        assert_eq!(v[1]["status"], "error");
        assert!(v[1]["output"].is_null());
        assert!(
            v[1]["error"]
                .as_str()
                .unwrap()
                .contains("this prompt is refused"),
            "{}",
            v[1]
        );
        assert_eq!(v[2]["status"], "error");
        assert_eq!(v[2]["error_kind"], "timeout");
    }
);

both!(spawn_runs_one_agent, |db, home| async move {
    let server = echo_server(Duration::ZERO).await;
    let r = run(
        db,
        home,
        &server,
        &["agents", "spawn", "--provider", "openai", "hello", "there"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "echo: hello there\n");
    let r = run(
        db,
        home,
        &server,
        &["agents", "spawn", "--provider", "openai", "--json", "again"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["output"], "echo: again");
    assert!(v["batch_id"].as_str().unwrap().starts_with("batch_"));
    let r = run(
        db,
        home,
        &server,
        &[
            "agents",
            "spawn",
            "--provider",
            "openai",
            "--json",
            "fail now",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.json()["status"], "error");
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
});

both!(
    ctrl_c_cancels_and_records_outstanding_agents,
    |db, home| async move {
        let server = echo_server(Duration::from_millis(5)).await;
        let file = write_tasks(
            home,
            &task_lines(12, |i| {
                if i < 2 {
                    format!("quick {i}")
                } else {
                    format!("slow {i}")
                }
            }),
        );
        let child = command(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--provider",
                "openai",
                "--concurrency",
                "4",
                "--json",
            ],
        )
        .spawn()
        .unwrap();
        // Wait until the quick agents are done and four slow ones are in flight, then interrupt
        // as a terminal would.
        let t0 = std::time::Instant::now();
        while server.requests().len() < 6 || server.in_flight() < 4 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "agents never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let out: common::Run =
            tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
                .await
                .expect("zocalo did not stop after Ctrl-C")
                .unwrap()
                .into();
        assert_eq!(out.code, 130, "{}", out.stderr);
        let v = out.json();
        let statuses: Vec<(&str, &str)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["status"].as_str().unwrap(),
                    a["error_kind"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(&statuses[..2], &[("ok", ""), ("ok", "")]);
        assert!(
            statuses[2..].iter().all(|s| *s == ("error", "cancelled")),
            "{statuses:?}"
        );
        // The in-flight requests were dropped, not left running.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.in_flight(), 0);

        let listed = run(db, home, &server, &["agents", "list", "--json"])
            .await
            .json();
        assert_eq!(listed[0]["state"], "cancelled");
        assert_eq!(listed[0]["pending"], 0);
        assert_eq!(listed[0]["error"], 10);
    }
);

both!(
    on_pool_runs_each_agent_as_an_ask_job,
    |db, home| async move {
        let server = echo_server(Duration::from_millis(10)).await;
        let file = write_tasks(home, &task_lines(8, |i| format!("pooled {i}")));
        let spawner = command(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--on-pool",
                "--provider",
                "openai",
                "--concurrency",
                "8",
                "--json",
            ],
        )
        .spawn()
        .unwrap();
        // Once the jobs are queued, a worker process drains them.
        wait_until_queued(db, home, &server, 8).await;
        let worker = drain(db, home, &server, &["--concurrency", "4"]).await;
        assert_eq!(worker.code, 0, "{}", worker.stderr);
        let out: common::Run =
            tokio::time::timeout(Duration::from_secs(30), spawner.wait_with_output())
                .await
                .expect("spawn-all did not collect the results")
                .unwrap()
                .into();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v = out.json();
        for (i, a) in v.as_array().unwrap().iter().enumerate() {
            assert_eq!(a["status"], "ok", "{a}");
            assert_eq!(a["output"], format!("echo: pooled {i}"));
            assert!(a["job_id"].as_str().unwrap().starts_with("job_"));
        }
        assert!(server.peak_in_flight() <= 4);
        let listed = run(db, home, &server, &["agents", "list", "--json"])
            .await
            .json();
        assert_eq!(listed[0]["runner"], "pool");
        let shown = run(
            db,
            home,
            &server,
            &[
                "agents",
                "show",
                listed[0]["id"].as_str().unwrap(),
                "--json",
            ],
        )
        .await
        .json();
        let conv = shown["agents"][3]["conversation_id"].as_str().unwrap();
        assert!(conv.starts_with("conv_"), "{shown}");
        let _: Value = shown;
    }
);

both!(
    pooled_agents_keep_their_depth_limit,
    |db, home| async move {
        // Sub-agents may nest one deep: an agent a user spawned is at depth 1, so its own
        // `spawn_agents` call must be refused -- also when a pool worker runs it. Pool runs are
        // unattended, so the tool is allowed in config (else the permission layer refuses it
        // before the depth limit is reached).
        std::fs::write(
            home.join("config.toml"),
            "[agents]\nmax_depth = 1\n[permissions]\nspawn_agents = \"allow\"\n",
        )
        .unwrap();
        let server = FakeServer::start().await;
        server.respond_with(|r| {
            let messages = r.body["messages"].as_array().cloned().unwrap_or_default();
            let last = messages.last().cloned().unwrap_or_default();
            if last["role"] == "tool" {
                let result = last["content"].as_str().unwrap_or_default().to_owned();
                return Reply::sse(openai_text_sse("gpt-test", &["tool said: ", &result]));
            }
            match prompt_of(r).as_str() {
                "fan out" => Reply::sse(openai_tool_call_sse(
                    "gpt-test",
                    "call_1",
                    "spawn_agents",
                    &serde_json::json!({"tasks": [{"id": "inner", "prompt": "inner work"}]})
                        .to_string(),
                )),
                p => Reply::sse(openai_text_sse("gpt-test", &["echo: ", p])),
            }
        });
        let file = write_tasks(
            home,
            &[serde_json::json!({"id": "top", "prompt": "fan out"}).to_string()],
        );
        let spawner = command(
            db,
            home,
            &server,
            &[
                "agents",
                "spawn-all",
                &file,
                "--on-pool",
                "--provider",
                "openai",
                "--json",
            ],
        )
        .spawn()
        .unwrap();
        wait_until_queued(db, home, &server, 1).await;
        let worker = drain(db, home, &server, &[]).await;
        assert_eq!(worker.code, 0, "{}", worker.stderr);
        let out: common::Run =
            tokio::time::timeout(Duration::from_secs(30), spawner.wait_with_output())
                .await
                .expect("spawn-all did not collect the result")
                .unwrap()
                .into();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v = out.json();
        let output = v[0]["output"].as_str().unwrap_or_default();
        assert_eq!(v[0]["status"], "ok", "{v}");
        assert!(output.starts_with("tool said: "), "{output}");
        assert!(
            output.contains("depth 1"),
            "the tool was not refused: {output}"
        );
        assert!(
            server
                .requests()
                .iter()
                .all(|r| prompt_of(r) != "inner work"),
            "a sub-agent ran past the depth limit"
        );
    }
);
