//! The whole disclosure path through the real ask loop: a model (the fake OpenAI server)
//! opens a skill, runs its script, and answers with what the script printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use zocalo_agent::{AskRequest, AskSettings, Asker, ToolRegistry};
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_skills::{prompt_index, skill_tools, RunLimits, Skills};
use zocalo_testkit::fake::{openai_text_sse, openai_tool_call_sse, FakeServer, Reply};

fn fixture_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid")
}

/// The text of every tool result the model was sent in one request.
fn tool_results(body: &serde_json::Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_model_opens_a_skill_and_runs_its_script() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    let skills = Skills::load(vec![fixture_root()]);
    assert_eq!(skills.names(), ["hello-world", "seed-weather"]);

    let mut tools = ToolRegistry::builtin();
    for t in skill_tools(&skills, RunLimits::default()) {
        tools.register(t);
    }
    let mut settings = AskSettings::default();
    settings.system_prompt = format!(
        "{}\n\n{}",
        settings.system_prompt,
        prompt_index(&skills).unwrap()
    );
    let mut ep = Endpoint::new(
        "openai",
        &format!("{}/v1", server.url()),
        Some(zocalo_core::Secret::new("sk-test")),
        "OPENAI_API_KEY",
        "gpt-test",
    );
    ep.retry.max_attempts = 1;
    let asker = Asker::new(
        db.store.clone(),
        Arc::new(OpenAiProvider::new(ep)),
        tools,
        settings,
    );

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
        r#"{"name":"hello-world","script":"scripts/hello.py","args":["Ada"]}"#,
    )));
    // What the script must print: computed here independently of it.
    let checksum: u32 = "Ada".chars().map(|c| c as u32).sum();
    let line = format!("Hello, Ada! (checksum {checksum}, from hello-world in hello-world)");
    server.push(Reply::sse(openai_text_sse(
        "gpt-test",
        &["The skill says: ", &line],
    )));

    let outcome = asker
        .ask(
            AskRequest {
                message: "Give me a hello-world greeting for Ada".into(),
                ..AskRequest::default()
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        outcome
            .tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["skill_open", "skill_run"]
    );
    assert!(outcome.text.contains(&line), "{}", outcome.text);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    // Step 1: only names and descriptions in the prompt, and the skill tools offered.
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("- hello-world: Greets someone by name"),
        "{system}"
    );
    assert!(
        system.contains("- seed-weather: Reports canned weather"),
        "{system}"
    );
    assert!(
        !system.contains("Answer with the line it prints"),
        "body leaked: {system}"
    );
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in ["skill_open", "skill_read", "skill_run"] {
        assert!(offered.contains(&t), "{offered:?}");
    }
    // Step 2: the instructions and file list came back from skill_open.
    let opened = &tool_results(&requests[1].body)[0];
    assert!(
        opened.contains("Answer with the line it prints, unchanged."),
        "{opened}"
    );
    assert!(opened.contains("<file>scripts/hello.py</file>"), "{opened}");
    // Step 3: the script really ran and its output reached the model.
    let ran = &tool_results(&requests[2].body)[1];
    assert!(ran.contains("[exit code 0]"), "{ran}");
    assert!(ran.contains(&line), "{ran}");
    db.cleanup().await;
}
