//! Sub-agent batches through the real ask loop and OpenAI provider, against a local server
//! speaking the OpenAI wire format, recorded on both store backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zocalo_agent::{
    AgentEvent, AgentTask, AskSettings, Asker, BatchState, ErrorKind, SpawnOptions, Spawner,
    ToolRegistry,
};
use zocalo_llm::openai::OpenAiProvider;
use zocalo_llm::registry::Endpoint;
use zocalo_llm::RetryPolicy;
use zocalo_store::Store;
use zocalo_testkit::fake::{openai_text_sse, FakeServer, RecordedRequest, Reply};

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

fn spawner(store: &Store, server: &FakeServer) -> Spawner {
    let asker = Asker::new(
        store.clone(),
        provider(server),
        ToolRegistry::new(),
        AskSettings::default(),
    );
    Spawner::new(Arc::new(asker)).with_store(store.clone())
}

/// The last user message of a recorded chat request.
fn prompt_of(r: &RecordedRequest) -> String {
    r.body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Answers "echo: PROMPT" after `delay`; prompts starting with `slow` wait 30 s instead, and
/// prompts starting with `fail` get a 400 the provider does not retry.
fn echo(server: &FakeServer, delay: Duration) {
    server.respond_with(move |r| {
        let prompt = prompt_of(r);
        if prompt.starts_with("fail") {
            return Reply::json(
                400,
                serde_json::json!({"error": {"message": format!("refused {prompt}"), "type": "invalid_request_error"}}),
            );
        }
        let wait = if prompt.starts_with("slow") {
            Duration::from_secs(30)
        } else {
            delay
        };
        let answer = format!("echo: {prompt}");
        Reply::sse(openai_text_sse("gpt-test", &[&answer])).delay(wait)
    });
}

fn tasks(n: usize, prompt: impl Fn(usize) -> String) -> Vec<AgentTask> {
    (0..n)
        .map(|i| AgentTask::new(format!("t{i}"), prompt(i)))
        .collect()
}

zocalo_testkit::both_backends!(
    a_thousand_agents_stay_within_the_bound,
    |store| async move {
        let server = FakeServer::start().await;
        echo(&server, Duration::from_millis(10));
        let limit = 40;
        let mut finished = 0usize;
        let mut started = 0usize;
        let report = spawner(&store, &server)
            .spawn_all(
                tasks(1000, |i| format!("question {i}")),
                SpawnOptions {
                    concurrency: limit,
                    ..SpawnOptions::default()
                },
                |e| match e {
                    AgentEvent::Started { .. } => started += 1,
                    AgentEvent::Finished(_) => finished += 1,
                },
            )
            .await
            .unwrap();
        assert_eq!((started, finished), (1000, 1000));
        assert_eq!(server.requests().len(), 1000);
        let peak = server.peak_in_flight();
        assert!(
            peak <= limit,
            "the server saw {peak} requests at once, limit {limit}"
        );
        assert!(
            peak >= limit / 2,
            "only {peak} at once: the batch did not run in parallel"
        );
        assert_eq!(report.results.len(), 1000);
        for (i, r) in report.results.iter().enumerate() {
            assert_eq!(r.id, format!("t{i}"));
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(
                r.output.as_deref(),
                Some(format!("echo: question {i}").as_str())
            );
        }

        // The record: one batch, every agent ok with its own stored conversation.
        let batches = zocalo_agent::Batches::new(store.clone());
        let shown = batches.show(&report.batch_id).await.unwrap().unwrap();
        assert_eq!(shown.batch.state, BatchState::Finished);
        assert_eq!(
            (shown.batch.total, shown.batch.ok, shown.batch.error),
            (1000, 1000, 0)
        );
        assert_eq!(shown.batch.depth, 1);
        assert_eq!(shown.agents.len(), 1000);
        let sample = &shown.agents[617];
        assert_eq!(sample.id, "t617");
        assert_eq!(sample.output.as_deref(), Some("echo: question 617"));
        let conv = sample.conversation_id.as_deref().unwrap().parse().unwrap();
        let messages = store.messages(&conv).await.unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].message.content, "question 617");
        assert_eq!(messages[1].message.content, "echo: question 617");
        assert_eq!(batches.list(10).await.unwrap()[0].id, report.batch_id);
    }
);

zocalo_testkit::both_backends!(
    cancelling_stops_running_and_unstarted_agents,
    |store| async move {
        let server = FakeServer::start().await;
        echo(&server, Duration::from_millis(5));
        let cancel = zocalo_agent::CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            c.cancel();
        });
        // Two quick agents, then slow ones: 3 run at once, so 3 slow ones are running when the
        // cancel comes and the rest never start.
        let input = tasks(10, |i| {
            if i < 2 {
                format!("quick {i}")
            } else {
                format!("slow {i}")
            }
        });
        let t0 = Instant::now();
        let report = spawner(&store, &server)
            .spawn_all(
                input,
                SpawnOptions {
                    concurrency: 3,
                    cancel,
                    ..SpawnOptions::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t0.elapsed()
        );
        assert_eq!(report.stopped, Some(ErrorKind::Cancelled));
        let kinds: Vec<Option<ErrorKind>> = report.results.iter().map(|r| r.error_kind).collect();
        assert_eq!(&kinds[..2], &[None, None]);
        assert!(
            kinds[2..].iter().all(|k| *k == Some(ErrorKind::Cancelled)),
            "{kinds:?}"
        );
        // Agents 2..5 were running when the cancel came; 5.. never started.
        for r in &report.results[2..5] {
            assert!(r.elapsed_ms >= 150, "{r:?}");
        }
        for r in &report.results[5..] {
            assert_eq!(r.elapsed_ms, 0, "{r:?}");
        }
        assert_eq!(server.requests().len(), 5);
        // The stopped requests were closed, not left hanging on the server.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.in_flight(), 0);

        let shown = zocalo_agent::Batches::new(store.clone())
            .show(&report.batch_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shown.batch.state, BatchState::Cancelled);
        assert_eq!(
            (shown.batch.ok, shown.batch.error, shown.batch.pending),
            (2, 8, 0)
        );
        assert!(shown.agents[2..]
            .iter()
            .all(|a| a.status == "error" && a.error_kind.as_deref() == Some("cancelled")));
        // Only the two finished agents left conversations behind.
        assert_eq!(store.list_conversations(100).await.unwrap().len(), 2);
    }
);

zocalo_testkit::both_backends!(
    timeouts_and_failures_stay_with_their_agent,
    |store| async move {
        let server = FakeServer::start().await;
        echo(&server, Duration::from_millis(5));
        let input = vec![
            AgentTask::new("a", "first"),
            AgentTask::new("b", "slow second"),
            AgentTask::new("c", "fail third"),
            AgentTask::new("d", "fourth"),
        ];
        let report = spawner(&store, &server)
            .spawn_all(
                input,
                SpawnOptions {
                    concurrency: 4,
                    timeout: Some(Duration::from_millis(300)),
                    ..SpawnOptions::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(report.stopped, None);
        let r = &report.results;
        assert!(r[0].is_ok() && r[3].is_ok(), "{r:?}");
        assert_eq!(r[1].error_kind, Some(ErrorKind::Timeout));
        assert!(
            r[1].elapsed_ms >= 290 && r[1].elapsed_ms < 3000,
            "{:?}",
            r[1]
        );
        assert_eq!(r[2].error_kind, Some(ErrorKind::Failed));
        let reason = r[2].error.as_deref().unwrap();
        assert!(reason.contains("refused fail third"), "{reason}");
        assert_eq!(r[2].output, None);

        let shown = zocalo_agent::Batches::new(store.clone())
            .show(&report.batch_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shown.batch.state, BatchState::Finished);
        assert_eq!(shown.agents[1].error_kind.as_deref(), Some("timeout"));
        assert!(shown.agents[2]
            .error
            .as_deref()
            .unwrap()
            .contains("refused"));
    }
);

zocalo_testkit::both_backends!(the_deadline_ends_the_batch, |store| async move {
    let server = FakeServer::start().await;
    echo(&server, Duration::from_millis(250));
    let t0 = Instant::now();
    let report = spawner(&store, &server)
        .spawn_all(
            tasks(6, |i| format!("q{i}")),
            SpawnOptions {
                concurrency: 1,
                deadline: Some(Duration::from_millis(650)),
                ..SpawnOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(report.stopped, Some(ErrorKind::Deadline));
    let ok = report.results.iter().filter(|r| r.is_ok()).count();
    assert!((1..=2).contains(&ok), "{:?}", report.results);
    assert!(report.results[ok..]
        .iter()
        .all(|r| r.error_kind == Some(ErrorKind::Deadline)));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_stream_as_they_finish_and_the_report_keeps_input_order() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    // The later the task, the sooner it answers.
    server.respond_with(|r| {
        let prompt = prompt_of(r);
        let n: u64 = prompt.trim_start_matches('q').parse().unwrap_or(0);
        Reply::sse(openai_text_sse("gpt-test", &[&prompt]))
            .delay(Duration::from_millis(60 * (4 - n)))
    });
    let mut running = spawner(&db.store, &server)
        .start(tasks(5, |i| format!("q{i}")), SpawnOptions::default())
        .await
        .unwrap();
    let mut finish_order = Vec::new();
    while let Some(e) = running.events.recv().await {
        if let AgentEvent::Finished(r) = e {
            finish_order.push(r.id);
        }
    }
    assert_eq!(finish_order, ["t4", "t3", "t2", "t1", "t0"]);
    let report = running.report.await.unwrap().unwrap();
    assert_eq!(report.batch_id, running.batch_id);
    let ids: Vec<&str> = report.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1", "t2", "t3", "t4"]);
    db.cleanup().await;
}

#[tokio::test]
async fn bad_tasks_are_refused_before_anything_runs() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    let s = spawner(&db.store, &server);
    let dup = vec![AgentTask::new("x", "p"), AgentTask::new("x", "q")];
    let e = s
        .spawn_all(dup, SpawnOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(
        e.is_usage() && e.to_string().contains("duplicate id \"x\""),
        "{e}"
    );
    assert!(server.requests().is_empty());
    assert!(s.batches().unwrap().list(10).await.unwrap().is_empty());
    db.cleanup().await;
}

/// A server that answers 429 (Retry-After 0.2 s) to its first `limited` requests.
fn rate_limited_server(server: &FakeServer, limited: usize) {
    for _ in 0..limited {
        server.push(
            Reply::json(
                429,
                serde_json::json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
            )
            .header("retry-after", "0.2"),
        );
    }
    echo(server, Duration::from_millis(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_429_the_batch_slows_down_instead_of_failing() {
    let db = zocalo_testkit::db::sqlite().await;
    let options = || SpawnOptions {
        concurrency: 10,
        ..SpawnOptions::default()
    };

    // Without the gate (and with the provider's own retries off) the 429s fail agents.
    let server = FakeServer::start().await;
    rate_limited_server(&server, 10);
    let report = spawner(&db.store, &server)
        .spawn_all(tasks(30, |i| format!("q{i}")), options(), |_| {})
        .await
        .unwrap();
    let failed = report.results.iter().filter(|r| !r.is_ok()).count();
    assert_eq!(failed, 10, "{:?}", report.results);

    // Behind the provider's shared gate every agent waits out the 429 and succeeds.
    let server = FakeServer::start().await;
    rate_limited_server(&server, 10);
    let gate = Arc::new(zocalo_llm::Gate::new(None));
    let throttled = Arc::new(zocalo_llm::Throttled::new(provider(&server), gate));
    let asker = Asker::new(
        db.store.clone(),
        throttled,
        ToolRegistry::new(),
        AskSettings::default(),
    );
    let t0 = Instant::now();
    let report = Spawner::new(Arc::new(asker))
        .spawn_all(tasks(30, |i| format!("q{i}")), options(), |_| {})
        .await
        .unwrap();
    assert!(
        report.results.iter().all(|r| r.is_ok()),
        "{:?}",
        report.results
    );
    assert_eq!(report.ok_count(), 30);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(server.requests().len(), 40);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_spaces_the_requests() {
    let db = zocalo_testkit::db::sqlite().await;
    let server = FakeServer::start().await;
    echo(&server, Duration::ZERO);
    // 1200 per minute: one every 50 ms, whatever the concurrency.
    let gate = Arc::new(zocalo_llm::Gate::new(Some(1200)));
    let asker = Asker::new(
        db.store.clone(),
        Arc::new(zocalo_llm::Throttled::new(provider(&server), gate)),
        ToolRegistry::new(),
        AskSettings::default(),
    );
    let t0 = Instant::now();
    let report = Spawner::new(Arc::new(asker))
        .spawn_all(
            tasks(10, |i| format!("q{i}")),
            SpawnOptions {
                concurrency: 10,
                ..SpawnOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.ok_count(), 10);
    // Ten requests, 50 ms apart: at least 450 ms, although all ten could run at once.
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    db.cleanup().await;
}

/// Makes the database refuse (raise on) any message `content` equal to `poison`: a real
/// failure of the agent's conversation write, from the database itself.
async fn refuse_messages(store: &Store, poison: &str) {
    let statements: Vec<String> = match store.backend() {
        zocalo_store::Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.content = '{poison}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )],
        zocalo_store::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                 IF NEW.content = '{poison}' THEN \
                 RAISE EXCEPTION 'refused by the test trigger'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW \
             EXECUTE FUNCTION refuse()"
                .to_owned(),
        ],
    };
    for sql in statements {
        zocalo_store::with_pool!(store.pool(), |p| sqlx::query(&sql)
            .execute(p)
            .await
            .map(drop))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

zocalo_testkit::both_backends!(
    an_agent_whose_answer_cannot_be_stored_fails_alone,
    |store| async move {
        let server = FakeServer::start().await;
        echo(&server, Duration::from_millis(20));
        refuse_messages(&store, "echo: q3").await;
        // All six answer at once, so their conversations share the recorder's transactions;
        // the one the database refuses must not take the others down with it.
        let report = spawner(&store, &server)
            .spawn_all(
                tasks(6, |i| format!("q{i}")),
                SpawnOptions {
                    concurrency: 6,
                    ..SpawnOptions::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        let bad = &report.results[3];
        assert_eq!(bad.error_kind, Some(ErrorKind::Failed), "{bad:?}");
        assert_eq!(bad.conversation_id, None);
        let why = bad.error.as_deref().unwrap();
        assert!(
            why.contains("could not be stored") && why.contains("refused by the test trigger"),
            "{why}"
        );
        assert_eq!(report.ok_count(), 5);

        let shown = zocalo_agent::Batches::new(store.clone())
            .show(&report.batch_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((shown.batch.ok, shown.batch.error), (5, 1));
        for (i, a) in shown.agents.iter().enumerate() {
            if i == 3 {
                assert_eq!(a.status, "error");
                assert_eq!(a.conversation_id, None);
                assert!(a.error.as_deref().unwrap().contains("refused"), "{a:?}");
                continue;
            }
            assert_eq!(a.status, "ok", "{a:?}");
            let conv = a.conversation_id.as_deref().unwrap().parse().unwrap();
            let m = store.messages(&conv).await.unwrap();
            let contents: Vec<&str> = m.iter().map(|m| m.message.content.as_str()).collect();
            assert_eq!(contents, [format!("q{i}"), format!("echo: q{i}")]);
        }
        // Nothing half-written: the refused agent left no conversation, not even its question.
        assert_eq!(store.list_conversations(100).await.unwrap().len(), 5);
    }
);
