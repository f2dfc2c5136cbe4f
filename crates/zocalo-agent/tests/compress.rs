//! Context compression against a real OpenAI provider talking to a local server that speaks
//! the OpenAI wire format, on both store backends: a conversation that outgrows the budget has
//! its oldest turns summarised by the model, once, and later asks send the summary instead.
//!
//! The budget arithmetic follows the documented estimate (4 bytes a token, 4 tokens framing a
//! message): every message here is 400 bytes = 104 tokens; the system prompt "Test." is 2
//! tokens and 100 are reserved for output, so with `context_tokens` 1000 the history gets
//! 1000 - 2 - 100 - 104 (the new message) = 794 tokens. Seven stored messages fit (728), eight
//! (832) do not: the 5th ask is the first that has to compress. Compression keeps the newest
//! turns in half the room (397 tokens: the last full turn) and summarises the rest.

// Test helpers outside #[test] functions: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::Value;
use zocalo_agent::compress::{SUMMARISER_PROMPT, SUMMARISE_INSTRUCTION, SUMMARY_HEADING};
use zocalo_agent::{AskRequest, AskSettings, Asker, ToolRegistry};
use zocalo_core::ConversationId;
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::RetryPolicy;
use zocalo_store::Store;
use zocalo_testkit::both_backends;
use zocalo_testkit::fake::{openai_text_sse, FakeServer, RecordedRequest, Reply};

fn asker(store: &Store, server: &FakeServer) -> Asker {
    asker_with(store, server, true)
}

fn asker_with(store: &Store, server: &FakeServer, compress_history: bool) -> Asker {
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
    let settings = AskSettings {
        system_prompt: "Test.".into(),
        context_tokens: 1000,
        max_output_tokens: 100,
        compress_history,
        ..AskSettings::default()
    };
    Asker::new(
        store.clone(),
        Arc::new(OpenAiProvider::new(ep)),
        ToolRegistry::new(),
        settings,
    )
}

/// `prefix` padded with words to exactly 400 bytes (104 estimated tokens as a message).
fn sized(prefix: &str) -> String {
    let mut s = prefix.to_owned();
    while s.len() < 400 {
        s.push_str(" lorem");
    }
    s.truncate(399);
    s.push('.'); // no trailing blank: transcripts trim messages
    s
}

fn question(i: usize) -> String {
    sized(&format!("question {i}: tell me about topic {i}."))
}

fn answer(i: usize) -> String {
    sized(&format!("answer {i}: topic {i} is interesting."))
}

async fn ask(a: &Asker, conv: Option<ConversationId>, i: usize) -> zocalo_agent::AskOutcome {
    a.ask(
        AskRequest {
            conversation: conv,
            message: question(i),
            model: None,
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("ask {i} failed: {e}"))
}

fn system_of(r: &RecordedRequest) -> String {
    let first = &r.body["messages"][0];
    assert_eq!(first["role"], "system", "{first}");
    first["content"].as_str().unwrap_or_default().to_owned()
}

/// The non-system messages' contents, in order.
fn turns_of(r: &RecordedRequest) -> Vec<String> {
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn mentions(texts: &[String], needle: &str) -> bool {
    texts.iter().any(|t| t.contains(needle))
}

/// Asks 0..n in one conversation, one scripted answer each, checking that none of them made a
/// summarising call.
async fn converse(a: &Asker, server: &FakeServer, n: usize) -> ConversationId {
    let mut conv = None;
    for i in 0..n {
        server.push(Reply::sse(openai_text_sse("gpt-test", &[&answer(i)])));
        conv = Some(ask(a, conv, i).await.conversation_id);
        assert_eq!(server.requests().len(), i + 1, "ask {i}: one request");
    }
    conv.unwrap()
}

both_backends!(long_conversation_is_summarised_once, |store| async move {
    let server = FakeServer::start().await;
    let a = asker(&store, &server);
    let conv = converse(&a, &server, 4).await;
    assert!(store.summaries(&conv).await.unwrap().is_empty());

    // The 5th ask does not fit: one summarising call, then the answer.
    let summary = "The user asked about topics 0, 1 and 2; each was called interesting.";
    server.push(Reply::sse(openai_text_sse("gpt-test", &[summary])));
    server.push(Reply::sse(openai_text_sse("gpt-test", &[&answer(4)])));
    let out = ask(&a, Some(conv.clone()), 4).await;
    assert_eq!(out.text, answer(4));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 6, "exactly one summarising request");

    // The summarising request: the summariser's prompt, no tools, and the three oldest turns
    // (not the newest one, and not the new question).
    let s = &reqs[4];
    assert_eq!(system_of(s), SUMMARISER_PROMPT);
    assert!(s.body.get("tools").is_none_or(Value::is_null), "{}", s.body);
    assert_eq!(s.body["max_tokens"], 100);
    let asked = turns_of(s);
    assert_eq!(asked.len(), 1);
    assert!(asked[0].starts_with(SUMMARISE_INSTRUCTION), "{}", asked[0]);
    for i in 0..3 {
        assert!(asked[0].contains(&question(i)), "question {i} missing");
        assert!(asked[0].contains(&answer(i)), "answer {i} missing");
    }
    assert!(!asked[0].contains("question 3:") && !asked[0].contains("question 4:"));

    // The summary is stored with the conversation, standing for messages 1..=6.
    let stored = store.summaries(&conv).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].through_seq, 6);
    assert_eq!(stored[0].text, summary);
    assert_eq!(stored[0].model.as_deref(), Some("gpt-test"));

    // The answering request: summary in the system prompt, the dropped turns gone, the newest
    // turn and the new question there.
    let r = &reqs[5];
    let system = system_of(r);
    assert!(system.starts_with("Test."), "{system}");
    assert!(
        system.contains(SUMMARY_HEADING) && system.contains(summary),
        "{system}"
    );
    let sent = turns_of(r);
    assert_eq!(sent, [question(3), answer(3), question(4)]);

    // Every original message is still in the database.
    let all = store.messages(&conv).await.unwrap();
    assert_eq!(all.len(), 10);
    for i in 0..5 {
        assert_eq!(all[2 * i].message.content, question(i));
        assert_eq!(all[2 * i + 1].message.content, answer(i));
    }

    // The next asks fit with the summary: no new summarising call ...
    for i in 5..7 {
        server.push(Reply::sse(openai_text_sse("gpt-test", &[&answer(i)])));
        ask(&a, Some(conv.clone()), i).await;
        let reqs = server.requests();
        assert_eq!(reqs.len(), 7 + (i - 5), "ask {i}: one request");
        let last = reqs.last().unwrap();
        assert!(system_of(last).contains(summary));
        let sent = turns_of(last);
        assert!(!mentions(&sent, "question 0:") && !mentions(&sent, "answer 2:"));
        assert!(mentions(&sent, "question 3:"));
    }

    // ... until the history outgrows the budget again: the new summary folds in the old one.
    let second = "Topics 0 to 5 were discussed; all interesting.";
    server.push(Reply::sse(openai_text_sse("gpt-test", &[second])));
    server.push(Reply::sse(openai_text_sse("gpt-test", &[&answer(7)])));
    ask(&a, Some(conv.clone()), 7).await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 10);
    assert_eq!(system_of(&reqs[8]), SUMMARISER_PROMPT);
    let fold = &turns_of(&reqs[8])[0];
    assert!(
        fold.contains(summary),
        "the previous summary is folded in: {fold}"
    );
    assert!(fold.contains(&question(3)) && fold.contains(&answer(5)));
    assert!(!fold.contains("question 2:") && !fold.contains("question 6:"));
    let stored = store.summaries(&conv).await.unwrap();
    assert_eq!(
        stored.iter().map(|s| s.through_seq).collect::<Vec<_>>(),
        [6, 12]
    );
    let latest = store.latest_summary(&conv).await.unwrap().unwrap();
    assert_eq!(latest.text, second);
    let system = system_of(&reqs[9]);
    assert!(
        system.contains(second) && !system.contains(summary),
        "{system}"
    );
    assert_eq!(turns_of(&reqs[9]), [question(6), answer(6), question(7)]);
    assert_eq!(store.messages(&conv).await.unwrap().len(), 16);
});

both_backends!(
    failed_summary_falls_back_to_truncation,
    |store| async move {
        let server = FakeServer::start().await;
        let a = asker(&store, &server);
        let conv = converse(&a, &server, 4).await;

        // The summarising call fails; the user still gets the answer.
        server.push(Reply::json(
        400,
        serde_json::json!({"error": {"message": "context_length_exceeded", "type": "invalid_request_error"}}),
    ));
        server.push(Reply::sse(openai_text_sse("gpt-test", &[&answer(4)])));
        let out = ask(&a, Some(conv.clone()), 4).await;
        assert_eq!(out.text, answer(4));
        let reqs = server.requests();
        assert_eq!(reqs.len(), 6);
        assert_eq!(system_of(&reqs[4]), SUMMARISER_PROMPT);

        // Plain truncation: no summary, the oldest turn dropped, the newest kept.
        let r = &reqs[5];
        assert_eq!(system_of(r), "Test.");
        let sent = turns_of(r);
        assert!(!mentions(&sent, "question 0:"), "{sent:?}");
        assert_eq!(sent.last(), Some(&question(4)));
        assert!(mentions(&sent, "answer 3:"));
        assert!(store.summaries(&conv).await.unwrap().is_empty());
        assert_eq!(store.messages(&conv).await.unwrap().len(), 10);
    }
);

both_backends!(compression_off_never_summarises, |store| async move {
    let server = FakeServer::start().await;
    let a = asker_with(&store, &server, false);
    let conv = converse(&a, &server, 7).await;
    assert!(store.summaries(&conv).await.unwrap().is_empty());
    let last = server.requests().pop().unwrap();
    assert_eq!(system_of(&last), "Test.");
    assert!(!mentions(&turns_of(&last), "question 0:"));
});
