//! The guard rails in the ask loop, against a provider talking to a scripted local server, on
//! both store backends: which tools are offered, allow / ask / deny, approvals, the audit and
//! token budgets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_agent::{
    audit, AgentError, AgentRun, AgentRunner, Approval, ApprovalRequest, Approvals, Approver,
    AskEvent, AskOptions, AskOutcome, AskRequest, AskSettings, Asker, AuditRow, BudgetScope,
    DecidedBy, Decision, Outcome, Policy, TokenLimit, ToolPatterns, ToolRegistry,
};
use zocalo_core::config::{BudgetsConfig, Config};
use zocalo_core::{ConversationId, Role, StopReason, Tool, ToolError, ToolSpec};
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::RetryPolicy;
use zocalo_store::{Store, UsageBy};
use zocalo_testkit::both_backends;
use zocalo_testkit::fake::{openai_text_sse, openai_tool_call_sse, FakeServer, Reply};

fn provider(server: &FakeServer) -> Arc<OpenAiProvider> {
    let mut ep = Endpoint::new(
        "openai",
        &format!("{}/v1", server.url()),
        Some(zocalo_core::Secret::new("sk-test")),
        "OPENAI_API_KEY",
        "gpt-test",
    );
    ep.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(20),
    };
    Arc::new(OpenAiProvider::new(ep))
}

/// A tool that only counts its runs.
struct Probe {
    name: &'static str,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Tool for Probe {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.into(),
            description: format!("probe {}", self.name),
            parameters: json!({"type": "object"}),
        }
    }

    async fn call(&self, _arguments: Value) -> Result<String, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{} ran", self.name))
    }
}

/// Probes under these names, and their run counters.
struct Probes {
    registry: ToolRegistry,
    runs: Vec<(&'static str, Arc<AtomicUsize>)>,
}

impl Probes {
    fn new(names: &[&'static str]) -> Self {
        let mut registry = ToolRegistry::new();
        let mut runs = Vec::new();
        for name in names {
            let counter = Arc::new(AtomicUsize::new(0));
            registry.register(Arc::new(Probe {
                name,
                runs: counter.clone(),
            }));
            runs.push((*name, counter));
        }
        Self { registry, runs }
    }

    fn runs(&self, name: &str) -> usize {
        self.runs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .unwrap()
    }
}

fn config(toml: &str) -> Config {
    Config::parse(toml, Path::new("config.toml")).unwrap()
}

fn asker(store: &Store, server: &FakeServer, tools: &Probes, policy: Option<Policy>) -> Asker {
    let a = Asker::new(
        store.clone(),
        provider(server),
        tools.registry.clone(),
        AskSettings::default(),
    );
    match policy {
        Some(p) => a.with_policy(p),
        None => a,
    }
}

fn call(server: &FakeServer, id: &str, tool: &str, args: Value) {
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        id,
        tool,
        &args.to_string(),
    )));
}

fn answer(server: &FakeServer, text: &str) {
    server.push(Reply::sse(openai_text_sse("gpt-test", &[text])));
}

async fn ask(
    a: &Asker,
    conversation: Option<ConversationId>,
    options: &AskOptions,
) -> Result<AskOutcome, AgentError> {
    let mut streamed = String::new();
    let out = a
        .ask_with(
            AskRequest {
                conversation,
                message: "go".into(),
                model: None,
            },
            options,
            &mut |e| {
                if let AskEvent::Text(t) = e {
                    streamed.push_str(&t);
                }
            },
        )
        .await;
    if let Ok(o) = &out {
        assert!(streamed.ends_with(&o.text), "{streamed:?} vs {:?}", o.text);
    }
    out
}

/// The tool names offered in the `n`-th model request.
fn offered(server: &FakeServer, n: usize) -> Vec<String> {
    server.requests()[n].body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The tool result the model got for `call_id`, from the requests it was sent in.
fn result_seen(server: &FakeServer, call_id: &str) -> String {
    server
        .requests()
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no result for {call_id}"))
}

/// The audit of a conversation, oldest first.
async fn audited(store: &Store, conversation: &ConversationId) -> Vec<AuditRow> {
    let mut rows = audit(store, Some(conversation), 100).await.unwrap();
    rows.reverse();
    rows
}

fn shape(r: &AuditRow) -> (&str, Decision, DecidedBy, Outcome) {
    (r.tool.as_str(), r.decision, r.decided_by, r.outcome)
}

/// Every tool result follows the assistant message that made its call, and the turn ends on
/// an assistant message.
async fn assert_well_formed(store: &Store, conversation: &ConversationId) {
    let rows = store.messages(conversation).await.unwrap();
    let mut open: Vec<String> = Vec::new();
    for r in &rows {
        match r.message.role {
            Role::Assistant => {
                assert!(open.is_empty(), "calls without results: {open:?}");
                open = r.message.tool_calls.iter().map(|c| c.id.clone()).collect();
            }
            Role::Tool => {
                let id = r.message.tool_call_id.clone().unwrap();
                assert!(open.contains(&id), "result {id} without its call");
                open.retain(|c| *c != id);
            }
            Role::User => assert!(open.is_empty(), "calls without results: {open:?}"),
        }
    }
    assert!(open.is_empty());
    let last = rows.last().unwrap();
    assert_eq!(last.message.role, Role::Assistant);
    assert!(last.message.tool_calls.is_empty());
}

both_backends!(
    defaults_allow_reading_and_deny_asks_when_unattended,
    |store| async move {
        let server = FakeServer::start().await;
        let probes = Probes::new(&["file_read", "shell"]);
        let a = asker(&store, &server, &probes, Some(Policy::defaults()));
        call(&server, "c1", "file_read", json!({"path": "notes.md"}));
        call(
            &server,
            "c2",
            "shell",
            json!({"command": "deploy", "api_token": "tok-123", "env": {"DB_PASSWORD": "pw"}}),
        );
        answer(&server, "I could read but not run the shell.");
        let out = ask(&a, None, &AskOptions::default()).await.unwrap();
        assert_eq!(out.stop_reason, StopReason::EndTurn);
        assert_eq!(offered(&server, 0), ["file_read", "shell"]);
        assert_eq!(probes.runs("file_read"), 1);
        assert_eq!(
            probes.runs("shell"),
            0,
            "an unattended ask never runs an `ask` tool"
        );
        assert_eq!(result_seen(&server, "c1"), "file_read ran");
        let refusal = result_seen(&server, "c2");
        assert!(
            refusal.starts_with("tool shell was denied")
                && refusal.contains("--allow shell")
                && refusal.contains("--yes"),
            "{refusal}"
        );
        let stored = store.messages(&out.conversation_id).await.unwrap();
        assert!(stored[4].message.is_error, "the refusal is an error result");
        assert_well_formed(&store, &out.conversation_id).await;

        let rows = audited(&store, &out.conversation_id).await;
        assert_eq!(
            rows.iter().map(shape).collect::<Vec<_>>(),
            [
                ("file_read", Decision::Allow, DecidedBy::Policy, Outcome::Ok),
                (
                    "shell",
                    Decision::Deny,
                    DecidedBy::Unattended,
                    Outcome::Denied
                ),
            ]
        );
        assert_eq!(rows[0].call_id, "c1");
        assert_eq!(rows[0].arguments, json!({"path": "notes.md"}));
        assert_eq!(rows[0].excerpt.as_deref(), Some("file_read ran"));
        assert_eq!(
            rows[1].arguments,
            json!({"command": "deploy", "api_token": "***", "env": {"DB_PASSWORD": "***"}})
        );
        assert_eq!(rows[1].duration_ms, 0);
        assert!(rows[1].excerpt.as_deref().unwrap().contains("denied"));
        // The audit of everything includes them too, newest first.
        let all = audit(&store, None, 10).await.unwrap();
        assert_eq!(all[0].tool, "shell");
        assert!(audit(&store, None, 0).await.unwrap().is_empty());
        // An AuditRow is what `zocalo audit --json` prints.
        let v = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(v["decided_by"], "unattended");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["outcome"], "denied");
    }
);

both_backends!(
    globs_override_defaults_and_hide_denied_tools,
    |store| async move {
        let server = FakeServer::start().await;
        let probes = Probes::new(&[
            "current_time",
            "mcp__github__delete_repo",
            "mcp__github__list_issues",
            "mcp__slack__post",
            "shell",
        ]);
        let cfg = config(
            r#"
        [permissions]
        "mcp__*" = "ask"
        "mcp__github__*" = "allow"
        "mcp__github__delete_*" = "deny"
        shell = "deny"
        "#,
        );
        let policy = Policy::from_config(&cfg, None).unwrap();
        let a = asker(&store, &server, &probes, Some(policy));
        call(&server, "c1", "mcp__github__list_issues", json!({}));
        call(
            &server,
            "c2",
            "mcp__github__delete_repo",
            json!({"repo": "x"}),
        );
        call(&server, "c3", "mcp__slack__post", json!({"text": "hi"}));
        answer(&server, "done");
        let out = ask(&a, None, &AskOptions::default()).await.unwrap();
        // Denied tools are never shown; `ask` ones are.
        assert_eq!(
            offered(&server, 0),
            [
                "current_time",
                "mcp__github__list_issues",
                "mcp__slack__post"
            ]
        );
        assert_eq!(probes.runs("mcp__github__list_issues"), 1);
        assert_eq!(probes.runs("mcp__github__delete_repo"), 0);
        assert_eq!(probes.runs("mcp__slack__post"), 0);
        // A hidden tool is refused as unknown: the model learns nothing more about it.
        let refusal = result_seen(&server, "c2");
        assert!(
            refusal.starts_with("there is no tool named \"mcp__github__delete_repo\"")
                && !refusal.contains("shell"),
            "{refusal}"
        );
        assert!(result_seen(&server, "c3").starts_with("tool mcp__slack__post was denied"));
        let rows = audited(&store, &out.conversation_id).await;
        assert_eq!(
            rows.iter().map(shape).collect::<Vec<_>>(),
            [
                (
                    "mcp__github__list_issues",
                    Decision::Allow,
                    DecidedBy::Policy,
                    Outcome::Ok
                ),
                (
                    "mcp__github__delete_repo",
                    Decision::Deny,
                    DecidedBy::Policy,
                    Outcome::Denied
                ),
                (
                    "mcp__slack__post",
                    Decision::Deny,
                    DecidedBy::Unattended,
                    Outcome::Denied
                ),
            ]
        );
    }
);

both_backends!(
    personas_filter_offered_tools_and_win_over_config,
    |store| async move {
        let server = FakeServer::start().await;
        let probes = Probes::new(&[
            "current_time",
            "file_read",
            "file_write",
            "shell",
            "web_fetch",
        ]);
        let cfg = config(
            r#"
        [permissions]
        file_write = "deny"
        [personas.writer]
        tools = ["file_*", "current_time"]
        permissions = { file_write = "allow" }
        "#,
        );
        let a = asker(
            &store,
            &server,
            &probes,
            Some(Policy::from_config(&cfg, Some("writer")).unwrap()),
        );
        call(
            &server,
            "c1",
            "file_write",
            json!({"path": "a", "content": "b"}),
        );
        call(&server, "c2", "shell", json!({"command": "ls"}));
        answer(&server, "ok");
        let out = ask(&a, None, &AskOptions::default()).await.unwrap();
        assert_eq!(
            offered(&server, 0),
            ["current_time", "file_read", "file_write"],
            "only the persona's tools are shown"
        );
        assert_eq!(
            probes.runs("file_write"),
            1,
            "the persona's allow wins over config's deny"
        );
        assert_eq!(probes.runs("shell"), 0);
        assert!(result_seen(&server, "c2").starts_with("there is no tool named \"shell\""));
        let rows = audited(&store, &out.conversation_id).await;
        assert_eq!(
            rows.iter().map(shape).collect::<Vec<_>>(),
            [
                (
                    "file_write",
                    Decision::Allow,
                    DecidedBy::Policy,
                    Outcome::Ok
                ),
                ("shell", Decision::Deny, DecidedBy::Policy, Outcome::Denied),
            ]
        );

        // Without the persona, config's deny hides file_write and every tool is offered.
        let server = FakeServer::start().await;
        answer(&server, "hi");
        let plain = asker(
            &store,
            &server,
            &probes,
            Some(Policy::from_config(&cfg, None).unwrap()),
        );
        ask(&plain, None, &AskOptions::default()).await.unwrap();
        assert_eq!(
            offered(&server, 0),
            ["current_time", "file_read", "shell", "web_fetch"]
        );
    }
);

both_backends!(
    allow_flags_and_yes_approve_without_asking,
    |store| async move {
        let server = FakeServer::start().await;
        let probes = Probes::new(&["file_write", "shell"]);
        let a = asker(&store, &server, &probes, Some(Policy::defaults()));
        // --allow 'sh*': shell runs, file_write (not matched) is still denied.
        call(&server, "c1", "shell", json!({"command": "ls"}));
        call(
            &server,
            "c2",
            "file_write",
            json!({"path": "a", "content": "b"}),
        );
        answer(&server, "ok");
        let options = AskOptions {
            approvals: Approvals::unattended().allowing(ToolPatterns::parse(["sh*"]).unwrap()),
            ..AskOptions::default()
        };
        let first = ask(&a, None, &options).await.unwrap();
        // --yes: everything that would be asked runs.
        call(
            &server,
            "c3",
            "file_write",
            json!({"path": "a", "content": "b"}),
        );
        answer(&server, "ok");
        let options = AskOptions {
            approvals: Approvals::unattended().yes(true),
            ..AskOptions::default()
        };
        let second = ask(&a, None, &options).await.unwrap();
        assert_eq!(probes.runs("shell"), 1);
        assert_eq!(probes.runs("file_write"), 1);
        assert_eq!(
            audited(&store, &first.conversation_id)
                .await
                .iter()
                .map(shape)
                .collect::<Vec<_>>(),
            [
                ("shell", Decision::Allow, DecidedBy::AllowFlag, Outcome::Ok),
                (
                    "file_write",
                    Decision::Deny,
                    DecidedBy::Unattended,
                    Outcome::Denied
                ),
            ]
        );
        assert_eq!(
            audited(&store, &second.conversation_id)
                .await
                .iter()
                .map(shape)
                .collect::<Vec<_>>(),
            [(
                "file_write",
                Decision::Allow,
                DecidedBy::YesFlag,
                Outcome::Ok
            )]
        );
    }
);

both_backends!(yes_does_not_override_deny, |store| async move {
    let server = FakeServer::start().await;
    let probes = Probes::new(&["shell"]);
    let cfg = config("[permissions]\nshell = \"deny\"");
    let a = asker(
        &store,
        &server,
        &probes,
        Some(Policy::from_config(&cfg, None).unwrap()),
    );
    call(&server, "c1", "shell", json!({"command": "ls"}));
    answer(&server, "ok");
    let options = AskOptions {
        approvals: Approvals::unattended()
            .yes(true)
            .allowing(ToolPatterns::parse(["*"]).unwrap()),
        ..AskOptions::default()
    };
    ask(&a, None, &options).await.unwrap();
    assert_eq!(probes.runs("shell"), 0);
    assert!(offered(&server, 0).is_empty());
});

/// Answers from a script, recording what it was asked.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Approval>>,
    asked: Mutex<Vec<ApprovalRequest>>,
}

impl Scripted {
    fn new(answers: &[Approval]) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.iter().copied().collect()),
            asked: Mutex::default(),
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("{}:{}", r.tool, r.call_id))
            .collect()
    }
}

#[async_trait]
impl Approver for Scripted {
    async fn approve(&self, request: &ApprovalRequest) -> Approval {
        self.asked.lock().unwrap().push(request.clone());
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("asked more than scripted")
    }
}

both_backends!(approver_allow_deny_and_always, |store| async move {
    let server = FakeServer::start().await;
    let probes = Probes::new(&["file_write", "shell"]);
    let a = asker(&store, &server, &probes, Some(Policy::defaults()));
    let approver = Scripted::new(&[
        Approval::Deny,
        Approval::Allow,
        Approval::AlwaysInConversation,
    ]);
    let options = AskOptions {
        approvals: Approvals::with_approver(approver.clone()),
        ..AskOptions::default()
    };
    call(
        &server,
        "c1",
        "file_write",
        json!({"path": "a", "content": "x", "password": "hunter2"}),
    );
    call(
        &server,
        "c2",
        "file_write",
        json!({"path": "a", "content": "y"}),
    );
    call(&server, "c3", "shell", json!({"command": "make"}));
    call(&server, "c4", "shell", json!({"command": "make test"}));
    answer(&server, "built");
    let out = ask(&a, None, &options).await.unwrap();
    let conv = out.conversation_id.clone();
    assert_eq!(
        approver.asked(),
        ["file_write:c1", "file_write:c2", "shell:c3"],
        "the second shell call is not asked"
    );
    // The approver saw the real arguments; the audit keeps them redacted.
    assert_eq!(
        approver.asked.lock().unwrap()[0].arguments["password"],
        "hunter2"
    );
    assert_eq!(approver.asked.lock().unwrap()[0].conversation_id, conv);
    assert_eq!(probes.runs("file_write"), 1);
    assert_eq!(probes.runs("shell"), 2);
    assert!(result_seen(&server, "c1").contains("did not approve"));

    // A later ask in the same conversation still remembers "always" (it is stored), even
    // unattended; another conversation does not.
    call(&server, "c5", "shell", json!({"command": "make"}));
    answer(&server, "again");
    ask(&a, Some(conv.clone()), &AskOptions::default())
        .await
        .unwrap();
    assert_eq!(probes.runs("shell"), 3);
    assert_eq!(
        zocalo_agent::conversation_grants(&store, &conv)
            .await
            .unwrap(),
        ["shell"]
    );
    call(&server, "c6", "shell", json!({"command": "make"}));
    answer(&server, "no");
    let other = ask(&a, None, &AskOptions::default()).await.unwrap();
    assert_eq!(probes.runs("shell"), 3);

    let rows = audited(&store, &conv).await;
    assert_eq!(
        rows.iter().map(shape).collect::<Vec<_>>(),
        [
            (
                "file_write",
                Decision::Deny,
                DecidedBy::User,
                Outcome::Denied
            ),
            ("file_write", Decision::Allow, DecidedBy::User, Outcome::Ok),
            ("shell", Decision::Allow, DecidedBy::User, Outcome::Ok),
            ("shell", Decision::Allow, DecidedBy::Always, Outcome::Ok),
            ("shell", Decision::Allow, DecidedBy::Always, Outcome::Ok),
        ]
    );
    assert_eq!(rows[0].arguments["password"], "***");
    assert_eq!(rows[0].arguments["content"], "x");
    assert_eq!(
        audited(&store, &other.conversation_id).await[0].decided_by,
        DecidedBy::Unattended
    );
    assert_eq!(zocalo_agent::revoke_grants(&store, &conv).await.unwrap(), 1);
    assert!(zocalo_agent::conversation_grants(&store, &conv)
        .await
        .unwrap()
        .is_empty());
});

both_backends!(
    registered_secret_values_never_reach_the_audit,
    |store| async move {
        let secret = "sk-guard-test-0123456789abcdef";
        zocalo_llm::redact::register(&zocalo_core::Secret::new(secret));
        let server = FakeServer::start().await;
        let probes = Probes::new(&["file_read"]);
        let a = asker(&store, &server, &probes, Some(Policy::defaults()));
        call(
            &server,
            "c1",
            "file_read",
            json!({"path": format!("/keys/{secret}")}),
        );
        answer(&server, "ok");
        let out = ask(&a, None, &AskOptions::default()).await.unwrap();
        let rows = audited(&store, &out.conversation_id).await;
        let text = serde_json::to_string(&rows).unwrap();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
);

both_backends!(sub_agents_run_unattended, |store| async move {
    let server = FakeServer::start().await;
    let probes = Probes::new(&["shell"]);
    let a = asker(&store, &server, &probes, Some(Policy::defaults()));
    call(&server, "c1", "shell", json!({"command": "ls"}));
    answer(&server, "could not");
    let answer = AgentRunner::run(
        &a,
        &AgentRun {
            batch_id: "batch_test".into(),
            index: 0,
            task_id: "t1".into(),
            prompt: "list files".into(),
            model: None,
            depth: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(answer.text, "could not");
    assert_eq!(probes.runs("shell"), 0);
    let rows = audited(&store, &answer.conversation_id.unwrap()).await;
    assert_eq!(rows[0].decided_by, DecidedBy::Unattended);
});

/// A provider that calls `current_time` forever, with a new call id each time. Each reply
/// uses 10 input + 5 output tokens (the arguments arrive in 5 fragments).
fn tool_calls_forever(server: &FakeServer) {
    let n = AtomicUsize::new(0);
    server.respond_with(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Reply::sse(openai_tool_call_sse(
            "gpt-test",
            &format!("call_{i}"),
            "current_time",
            r#"{"timezone":"UTC"}"#,
        ))
    });
}

const TOKENS_PER_CALL: u64 = 15;

both_backends!(
    budget_stops_the_loop_and_keeps_a_complete_turn,
    |store| async move {
        let server = FakeServer::start().await;
        tool_calls_forever(&server);
        let a = Asker::new(
            store.clone(),
            provider(&server),
            ToolRegistry::builtin(),
            AskSettings::default(),
        )
        .with_policy(Policy::defaults())
        .with_budgets(BudgetsConfig {
            ask_tokens: Some(40),
            conversation_tokens: Some(50),
            ..BudgetsConfig::default()
        });
        // Plain ask: ask_tokens = 40 -> 15, 30, 45: the third call spends it, no fourth.
        let out = a
            .ask(
                AskRequest {
                    message: "what time is it, forever".into(),
                    ..AskRequest::default()
                },
                &mut |_| {},
            )
            .await
            .unwrap();
        assert_eq!(server.requests().len(), 3);
        assert!(out.stop_reason.is_budget());
        assert_eq!(serde_json::to_value(&out.stop_reason).unwrap(), "budget");
        assert_eq!(out.steps, 3);
        assert_eq!(out.tool_calls.len(), 3);
        assert_eq!(
            out.usage.input_tokens + out.usage.output_tokens,
            3 * TOKENS_PER_CALL
        );
        assert!(
            out.text.contains("45 tokens") && out.text.contains("ask_tokens"),
            "{}",
            out.text
        );
        assert_eq!(out.model, "gpt-test");
        assert_eq!(out.provider, "openai");
        let conv = out.conversation_id.clone();
        let stored = store.messages(&conv).await.unwrap();
        assert_eq!(
            stored.len(),
            1 + 3 * 2 + 1,
            "user, 3 x (call, result), closing note"
        );
        assert_eq!(stored.last().unwrap().message.content, out.text);
        assert_well_formed(&store, &conv).await;
        assert_eq!(audited(&store, &conv).await.len(), 3);

        // The conversation has 45 of its 50: one more call, then the conversation budget stops it.
        let out = ask(&a, Some(conv.clone()), &AskOptions::default())
            .await
            .unwrap();
        assert_eq!(server.requests().len(), 4);
        assert!(out.stop_reason.is_budget());
        assert!(out.text.contains("conversation_tokens"), "{}", out.text);
        assert_well_formed(&store, &conv).await;

        // Now spent before any call: an error, nothing called, nothing written.
        let before = store.messages(&conv).await.unwrap().len();
        let e = ask(&a, Some(conv.clone()), &AskOptions::default())
            .await
            .unwrap_err();
        match &e {
            AgentError::Budget(b) => {
                assert_eq!(b.scope, BudgetScope::Conversation);
                assert_eq!((b.used, b.limit), (4 * TOKENS_PER_CALL, 50));
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_usage());
        assert_eq!(server.requests().len(), 4);
        assert_eq!(store.messages(&conv).await.unwrap().len(), before);

        // Usage over what was stored: four calls of one model and provider.
        let by_model = store.usage(UsageBy::Model, None).await.unwrap();
        assert_eq!(by_model.len(), 1);
        assert_eq!(by_model[0].key, "gpt-test");
        assert_eq!(by_model[0].calls, 4);
        assert_eq!(by_model[0].input_tokens, 4 * 10);
        assert_eq!(by_model[0].output_tokens, 4 * 5);
        let by_day = store.usage(UsageBy::Day, None).await.unwrap();
        assert_eq!(
            by_day[0].key,
            chrono::Utc::now().format("%Y-%m-%d").to_string()
        );
    }
);

both_backends!(daily_and_per_caller_limits, |store| async move {
    let server = FakeServer::start().await;
    tool_calls_forever(&server);
    let base = || {
        Asker::new(
            store.clone(),
            provider(&server),
            ToolRegistry::builtin(),
            AskSettings::default(),
        )
    };
    // The caller's own limit (here an automation run's) applies to ask_with.
    let budgets = BudgetsConfig {
        automation_run_tokens: Some(20),
        ..BudgetsConfig::default()
    };
    let a = base().with_budgets(budgets.clone());
    let options = AskOptions {
        token_limit: TokenLimit::automation_run(&budgets),
        ..AskOptions::default()
    };
    let out = ask(&a, None, &options).await.unwrap();
    assert_eq!(server.requests().len(), 2);
    assert!(out.text.contains("automation_run_tokens"), "{}", out.text);

    // 30 tokens are stored today; a daily budget of 30 is spent before the first call.
    let daily = base().with_budgets(BudgetsConfig {
        daily_tokens: Some(30),
        ..BudgetsConfig::default()
    });
    match ask(&daily, None, &AskOptions::default()).await.unwrap_err() {
        AgentError::Budget(b) => {
            assert_eq!(b.scope, BudgetScope::Daily);
            assert!(b.to_string().contains("00:00 UTC"), "{b}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
    // A daily budget above what is spent lets the ask run until it is reached.
    let roomy = base().with_budgets(BudgetsConfig {
        daily_tokens: Some(31),
        ..BudgetsConfig::default()
    });
    let out = ask(&roomy, None, &AskOptions::default()).await.unwrap();
    assert!(out.text.contains("daily_tokens"), "{}", out.text);
    assert_eq!(server.requests().len(), 3);
});

#[tokio::test]
async fn unknown_personas_and_bad_patterns_are_usage_errors() {
    let cfg = config("[personas.a]\n[personas.b]");
    let e = Policy::from_config(&cfg, Some("c")).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("a, b"), "{e}");
    let e = ToolPatterns::parse(["shell", "bad name"]).unwrap_err();
    assert!(e.is_usage(), "{e}");
}
