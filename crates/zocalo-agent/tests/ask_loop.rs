//! The ask loop against a real provider implementation talking to a local server that speaks
//! the OpenAI wire format, on both store backends.

use std::sync::Arc;

use zocalo_agent::{AgentError, AskEvent, AskRequest, AskSettings, Asker, ToolRegistry};
use zocalo_core::Role;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::RetryPolicy;
use zocalo_store::Store;
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
        max_attempts: 2,
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(20),
    };
    Arc::new(OpenAiProvider::new(ep))
}

fn asker(store: &Store, server: &FakeServer, settings: AskSettings) -> Asker {
    Asker::new(
        store.clone(),
        provider(server),
        ToolRegistry::builtin(),
        settings,
    )
}

async fn ask(
    a: &Asker,
    conv: Option<zocalo_core::ConversationId>,
    text: &str,
) -> Result<zocalo_agent::AskOutcome, AgentError> {
    let mut events = Vec::new();
    let r = a
        .ask(
            AskRequest {
                conversation: conv,
                message: text.into(),
                model: None,
            },
            &mut |e| events.push(e),
        )
        .await;
    if let Ok(o) = &r {
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                AskEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            streamed.ends_with(&o.text),
            "streamed {streamed:?} vs final {:?}",
            o.text
        );
    }
    r
}

macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let db = zocalo_testkit::db::sqlite().await;
                ($body)(db.store.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = zocalo_testkit::db::postgres().await;
                ($body)(db.store.clone()).await;
            }
        }
    };
}

on_both!(persists_whole_turn_with_usage, |store: Store| async move {
    let server = FakeServer::start().await;
    server.push(Reply::sse(openai_tool_call_sse(
        "gpt-test",
        "call_1",
        "current_time",
        r#"{"timezone":"UTC"}"#,
    )));
    server.push(Reply::sse(openai_text_sse("gpt-test", &["Noon", "."])));
    let a = asker(&store, &server, AskSettings::default());
    let out = ask(&a, None, "what time?").await.unwrap();
    assert_eq!(out.text, "Noon.");
    assert_eq!(out.steps, 2);
    let rows = store.messages(&out.conversation_id).await.unwrap();
    let roles: Vec<Role> = rows.iter().map(|r| r.message.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(rows[2].message.tool_call_id.as_deref(), Some("call_1"));
    assert!(!rows[2].message.is_error);
    assert_eq!(rows[3].model.as_deref(), Some("gpt-test"));
    assert!(rows[3].usage.is_some());
});

on_both!(
    recoverable_tool_error_reaches_model,
    |store: Store| async move {
        let server = FakeServer::start().await;
        server.push(Reply::sse(openai_tool_call_sse(
            "gpt-test",
            "call_x",
            "current_time",
            r#"{"timezone":"Mars/Base"}"#,
        )));
        server.push(Reply::sse(openai_text_sse(
            "gpt-test",
            &["Sorry, unknown zone."],
        )));
        let a = asker(&store, &server, AskSettings::default());
        let out = ask(&a, None, "time on mars?").await.unwrap();
        let sent = &server.requests()[1].body["messages"];
        let last = sent.as_array().unwrap().last().unwrap();
        assert_eq!(last["role"], "tool");
        assert!(
            last["content"]
                .as_str()
                .unwrap()
                .contains("unknown time zone"),
            "{last}"
        );
        let rows = store.messages(&out.conversation_id).await.unwrap();
        assert!(rows[2].message.is_error);
    }
);

on_both!(
    max_steps_stops_and_writes_nothing,
    |store: Store| async move {
        let server = FakeServer::start().await;
        for i in 0..3 {
            server.push(Reply::sse(openai_tool_call_sse(
                "gpt-test",
                &format!("call_{i}"),
                "current_time",
                r#"{"timezone":"UTC"}"#,
            )));
        }
        let settings = AskSettings {
            max_steps: 3,
            ..AskSettings::default()
        };
        let a = asker(&store, &server, settings);
        let e = ask(&a, None, "loop forever").await.unwrap_err();
        assert!(matches!(e, AgentError::MaxSteps(3)), "{e:?}");
        assert_eq!(server.requests().len(), 3);
        assert!(store.list_conversations(10).await.unwrap().is_empty());
    }
);

on_both!(
    failed_call_leaves_conversation_unchanged,
    |store: Store| async move {
        let server = FakeServer::start().await;
        server.push(Reply::sse(openai_text_sse("gpt-test", &["first answer"])));
        let a = asker(&store, &server, AskSettings::default());
        let out = ask(&a, None, "one").await.unwrap();
        server.push(Reply::json(400, serde_json::json!({"error": {"message": "bad things", "type": "invalid_request_error"}})));
        let e = ask(&a, Some(out.conversation_id.clone()), "two")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bad things"), "{e}");
        assert_eq!(store.messages(&out.conversation_id).await.unwrap().len(), 2);
    }
);

on_both!(
    history_is_cut_to_budget_at_user_turns,
    |store: Store| async move {
        let server = FakeServer::start().await;
        // Plain truncation; summarising instead is tested in tests/compress.rs.
        let settings = AskSettings {
            context_tokens: 1200,
            max_output_tokens: 200,
            compress_history: false,
            ..AskSettings::default()
        };
        let a = asker(&store, &server, settings);
        let long = "word ".repeat(120); // ~150 tokens per message
        let mut conv = None;
        for i in 0..6 {
            server.push(Reply::sse(openai_text_sse(
                "gpt-test",
                &[&format!("reply {i} {long}")],
            )));
            let out = ask(&a, conv.clone(), &format!("question {i} {long}"))
                .await
                .unwrap();
            conv = Some(out.conversation_id);
        }
        let reqs = server.requests();
        let sent: Vec<usize> = reqs
            .iter()
            .map(|r| r.body["messages"].as_array().unwrap().len())
            .collect();
        // Grows at first, then stays bounded by the budget instead of growing with the history.
        assert!(sent[1] > sent[0]);
        assert!(*sent.last().unwrap() < 2 * 6, "{sent:?}");
        for r in &reqs {
            let msgs = r.body["messages"].as_array().unwrap();
            assert_eq!(msgs[0]["role"], "system");
            assert_eq!(msgs[1]["role"], "user", "history must start at a user turn");
        }
        assert_eq!(
            store.messages(conv.as_ref().unwrap()).await.unwrap().len(),
            12,
            "all turns are still stored"
        );
    }
);

on_both!(
    oversized_message_is_refused_before_calling,
    |store: Store| async move {
        let server = FakeServer::start().await;
        let settings = AskSettings {
            context_tokens: 600,
            max_output_tokens: 100,
            ..AskSettings::default()
        };
        let a = asker(&store, &server, settings);
        let e = ask(&a, None, &"x".repeat(10_000)).await.unwrap_err();
        assert!(matches!(e, AgentError::ContextTooLarge { .. }), "{e:?}");
        assert!(server.requests().is_empty());
        assert!(store.list_conversations(10).await.unwrap().is_empty());
    }
);

#[tokio::test]
async fn empty_message_and_unknown_conversation_are_usage_errors() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    let a = asker(&db.store, &server, AskSettings::default());
    let e = ask(&a, None, " \n ").await.unwrap_err();
    assert!(e.is_usage(), "{e:?}");
    let e = ask(&a, Some(zocalo_core::ConversationId::new()), "hi")
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::UnknownConversation(_)) && e.is_usage());
    assert!(server.requests().is_empty());
}
