//! The model fans out through `spawn_agents`: a scripted OpenAI-format server plays a model
//! that calls the tool, its sub-agents answer, and the model sees their answers; sub-agents
//! cannot nest past the depth limit.

use std::sync::Arc;

use serde_json::{json, Value};
use zocalo_agent::{
    AgentRunner, AskRequest, AskSettings, Asker, Batches, SpawnAgentsTool, SpawnLimits,
    ToolRegistry,
};
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::RetryPolicy;
use zocalo_store::Store;
use zocalo_testkit::fake::{
    openai_text_sse, openai_tool_call_sse, FakeServer, RecordedRequest, Reply,
};

fn provider(server: &FakeServer) -> Arc<OpenAiProvider> {
    let mut ep = Endpoint::new(
        "openai",
        &format!("{}/v1", server.url()),
        Some(zocalo_core::Secret::new("sk-test")),
        "OPENAI_API_KEY",
        "gpt-test",
    );
    ep.retry = RetryPolicy::none();
    Arc::new(OpenAiProvider::new(ep))
}

/// An ask loop with `spawn_agents` bound to itself, as the CLI wires it.
fn asker(store: &Store, server: &FakeServer, limits: SpawnLimits) -> Arc<Asker> {
    let tool = SpawnAgentsTool::new(limits, Some(store.clone()));
    let mut tools = ToolRegistry::builtin();
    tools.register(tool.clone());
    let asker = Arc::new(Asker::new(
        store.clone(),
        provider(server),
        tools,
        AskSettings::default(),
    ));
    let runner: Arc<dyn AgentRunner> = asker.clone();
    tool.bind(&runner);
    asker
}

fn messages(r: &RecordedRequest) -> Vec<Value> {
    r.body["messages"].as_array().cloned().unwrap_or_default()
}

fn first_user(r: &RecordedRequest) -> String {
    messages(r)
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn last_tool_result(r: &RecordedRequest) -> Option<String> {
    messages(r)
        .last()
        .filter(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .map(str::to_owned)
}

/// The scripted model:
/// - "plan …" (the user's ask): call spawn_agents with two tasks, then, given the result,
///   answer "summary: <tool result>";
/// - "research X": answer "found X";
/// - "recurse": call spawn_agents itself, then answer "inner saw: <tool result>".
fn model(server: &FakeServer) {
    server.respond_with(|r| {
        let question = first_user(r);
        let reply = match (question.as_str(), last_tool_result(r)) {
            (q, None) if q.starts_with("plan") => {
                let args = if q.contains("deep") {
                    json!({"tasks": [{"id": "r", "prompt": "recurse"}]})
                } else {
                    json!({"tasks": [
                        {"id": "cats", "prompt": "research cats"},
                        {"id": "dogs", "prompt": "research dogs"}
                    ]})
                };
                openai_tool_call_sse("gpt-test", "call_1", "spawn_agents", &args.to_string())
            }
            ("recurse", None) => openai_tool_call_sse(
                "gpt-test",
                "call_2",
                "spawn_agents",
                &json!({"tasks": [{"id": "x", "prompt": "research x"}]}).to_string(),
            ),
            ("recurse", Some(result)) => {
                openai_text_sse("gpt-test", &[&format!("inner saw: {result}")])
            }
            (q, Some(result)) => {
                openai_text_sse("gpt-test", &[&format!("summary of {q}: {result}")])
            }
            (q, None) => {
                let topic = q.trim_start_matches("research ");
                openai_text_sse("gpt-test", &[&format!("found {topic}")])
            }
        };
        Reply::sse(reply)
    });
}

zocalo_testkit::both_backends!(
    the_model_fans_out_and_sees_the_answers,
    |store| async move {
        let server = FakeServer::start().await;
        model(&server);
        let a = asker(&store, &server, SpawnLimits::default());
        let outcome = a
            .ask(
                AskRequest {
                    conversation: None,
                    message: "plan a pet survey".into(),
                    model: None,
                },
                &mut |_| {},
            )
            .await
            .unwrap();
        // The model's final answer quotes the tool result, which holds both sub-agents' answers
        // in task order.
        let summary = outcome
            .text
            .trim_start_matches("summary of plan a pet survey: ");
        let result: Value = serde_json::from_str(summary).unwrap();
        let results = result["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(
            results[0],
            json!({"id": "cats", "status": "ok", "output": "found cats"})
        );
        assert_eq!(
            results[1],
            json!({"id": "dogs", "status": "ok", "output": "found dogs"})
        );
        assert_eq!(server.requests().len(), 4);

        // The batch is recorded as spawned by the asking conversation, at depth 1, and each
        // sub-agent has its own conversation.
        let batch_id = result["batch_id"].as_str().unwrap();
        let shown = Batches::new(store.clone())
            .show(batch_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            shown.batch.parent_conversation_id.as_deref(),
            Some(outcome.conversation_id.as_str())
        );
        assert_eq!(shown.batch.depth, 1);
        let sub = shown.agents[1]
            .conversation_id
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(sub, outcome.conversation_id);
        let msgs = store.messages(&sub).await.unwrap();
        assert_eq!(msgs[0].message.content, "research dogs");
        assert_eq!(msgs[1].message.content, "found dogs");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_agents_cannot_nest_past_the_depth_limit() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    model(&server);
    let a = asker(
        &db.store,
        &server,
        SpawnLimits {
            max_depth: 1,
            ..SpawnLimits::default()
        },
    );
    let outcome = a
        .ask(
            AskRequest {
                conversation: None,
                message: "plan deep".into(),
                model: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    // The depth-1 agent tried to spawn, was told it may not, and said so in its answer.
    let result: Value =
        serde_json::from_str(outcome.text.trim_start_matches("summary of plan deep: ")).unwrap();
    let inner = result["results"][0]["output"].as_str().unwrap();
    assert!(inner.starts_with("inner saw: "), "{inner}");
    assert!(inner.contains("nested at most 1 deep"), "{inner}");
    // No "research x" request ever reached the model.
    assert!(!server
        .requests()
        .iter()
        .any(|r| first_user(r) == "research x"));
    let batches = Batches::new(db.store.clone()).list(10).await.unwrap();
    assert_eq!(batches.len(), 1);
    db.cleanup().await;
}
