//! The OpenAI-compatible embedder against a local server speaking the embeddings wire
//! format: request shape, order by `index`, batching, retries, and the failures users see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use zocalo_core::embed::{EmbedError, Embedder};
use zocalo_llm::OpenAiEmbedder;
use zocalo_testkit::fake::{bag_of_words, embeddings_reply, FakeServer, Reply};

const DIM: usize = 32;

fn embedder(server: &FakeServer, batch: usize) -> Arc<OpenAiEmbedder> {
    Arc::new(
        OpenAiEmbedder::new(
            openai_endpoint(server),
            "text-embedding-3-small",
            batch,
            None,
        )
        .unwrap(),
    )
}

/// `embed` is sync: run it the way memory does, on a blocking thread.
async fn embed(e: &Arc<OpenAiEmbedder>, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let e = e.clone();
    let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        e.embed(&refs)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn vectors_come_back_in_input_order_in_batches_with_the_key() {
    let server = FakeServer::start().await;
    server.respond_with(|r| embeddings_reply(r, DIM));
    let e = embedder(&server, 2);
    assert_eq!(e.model_id(), "openai:text-embedding-3-small");
    assert_eq!(e.dim(), 0, "unknown until the first answer");
    let texts = [
        "the boiler is serviced in March",
        "cats sleep",
        "tax return due",
        "x",
    ];
    let got = embed(&e, &texts).await.unwrap();
    let want: Vec<Vec<f32>> = texts.iter().map(|t| bag_of_words(t, DIM)).collect();
    assert_eq!(got, want);
    assert_eq!(e.dim(), DIM);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "4 texts in batches of 2");
    for (r, chunk) in reqs.iter().zip(texts.chunks(2)) {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/embeddings")
        );
        assert_eq!(
            r.body,
            json!({"model": "text-embedding-3-small", "input": chunk})
        );
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_the_server_asks() {
    let server = FakeServer::start().await;
    server.push(
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        )
        .header("retry-after-ms", "300"),
    );
    server.push(Reply::json(
        503,
        json!({"error": {"message": "overloaded"}}),
    ));
    server.respond_with(|r| embeddings_reply(r, DIM));
    let mut ep = openai_endpoint(&server);
    ep.retry.max_delay = Duration::from_secs(2);
    let e = Arc::new(OpenAiEmbedder::new(ep, "text-embedding-3-small", 0, None).unwrap());
    let started = Instant::now();
    let got = embed(&e, &["hello world"]).await.unwrap();
    assert_eq!(got, vec![bag_of_words("hello world", DIM)]);
    assert_eq!(server.requests().len(), 3, "429, 503, then the answer");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rate_limit_that_does_not_end_fails_with_the_vendor_message() {
    let server = FakeServer::start().await;
    server.respond_with(|_| {
        Reply::json(
            429,
            json!({"error": {"message": "You exceeded your current quota"}}),
        )
        .header("retry-after", "0")
    });
    let e = embedder(&server, 0);
    let err = embed(&e, &["a"]).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::Failed(_)), "{msg}");
    assert!(
        msg.contains("openai:text-embedding-3-small")
            && msg.contains("exceeded your current quota"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 3, "fast_retry allows 3 attempts");
}

#[tokio::test]
async fn a_refused_key_is_unavailable_names_the_fix_and_is_not_retried() {
    let server = FakeServer::start().await;
    server.respond_with(|_| {
        Reply::json(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {OPENAI_KEY}"), "type": "invalid_request_error", "code": "invalid_api_key"}}),
        )
    });
    let e = embedder(&server, 0);
    let err = embed(&e, &["a"]).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::Unavailable(_)), "{msg}");
    assert!(
        msg.contains("OPENAI_API_KEY") && msg.contains("zocalo keys set openai"),
        "{msg}"
    );
    assert!(!msg.contains(OPENAI_KEY), "the key leaked: {msg}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_unknown_model_says_to_check_the_setting() {
    let server = FakeServer::start().await;
    server.respond_with(|_| {
        Reply::json(404, json!({"error": {"message": "model \"nomic-embed-txt\" not found, try pulling it first"}}))
    });
    let e = embedder(&server, 0);
    let msg = embed(&e, &["a"]).await.unwrap_err().to_string();
    assert!(
        msg.contains("404") && msg.contains("[memory] embedder") && msg.contains("not found"),
        "{msg}"
    );
}

#[tokio::test]
async fn malformed_answers_are_errors_not_vectors() {
    for (reply, why) in [
        (
            Reply::new(200)
                .header("content-type", "application/json")
                .body("{\"data\": [NaN]}"),
            "did not answer JSON",
        ),
        (
            Reply::json(
                200,
                json!({"data": [{"index": 0, "embedding": [1.0, "x"]}]}),
            ),
            "not a finite number",
        ),
        (
            Reply::json(200, json!({"data": []})),
            "0 embeddings for 1 inputs",
        ),
        (Reply::json(200, json!({"error": "busy"})), "no `data` list"),
    ] {
        let server = FakeServer::start().await;
        server.push(reply);
        let e = embedder(&server, 0);
        let msg = embed(&e, &["a"]).await.unwrap_err().to_string();
        assert!(msg.contains(why), "{why}: {msg}");
    }
}

#[tokio::test]
async fn a_changed_dimension_is_refused() {
    let server = FakeServer::start().await;
    server.respond_with(|r| embeddings_reply(r, DIM));
    let e = embedder(&server, 0);
    embed(&e, &["first"]).await.unwrap();
    server.respond_with(|r| embeddings_reply(r, DIM * 2));
    let msg = embed(&e, &["second"]).await.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{} dimensions, expected {DIM}", DIM * 2)),
        "{msg}"
    );
    // A dimension given up front is checked from the first answer.
    let e = Arc::new(OpenAiEmbedder::new(openai_endpoint(&server), "m", 0, Some(DIM)).unwrap());
    assert_eq!(e.dim(), DIM);
    assert!(embed(&e, &["third"]).await.is_err());
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let server = FakeServer::start().await;
    let mut ep = openai_endpoint(&server);
    drop(server);
    ep.retry = zocalo_llm::RetryPolicy::none();
    let e = Arc::new(OpenAiEmbedder::new(ep, "m", 0, None).unwrap());
    let err = embed(&e, &["a"]).await.unwrap_err();
    assert!(matches!(err, EmbedError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Called straight from async code, on either runtime flavour, or from a plain thread: it
/// neither panics nor deadlocks.
#[test]
fn embed_works_from_any_thread() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(FakeServer::start());
    server.respond_with(|r| embeddings_reply(r, DIM));
    let e = embedder(&server, 0);
    let want = vec![bag_of_words("plain thread", DIM)];
    // A plain thread.
    let e2 = e.clone();
    let got = std::thread::spawn(move || e2.embed(&["plain thread"]).unwrap())
        .join()
        .unwrap();
    assert_eq!(got, want);
    // An async worker of a multi-threaded runtime.
    let e2 = e.clone();
    let got = rt.block_on(async move {
        tokio::spawn(async move { e2.embed(&["plain thread"]) })
            .await
            .unwrap()
    });
    assert_eq!(got.unwrap(), want);
    // A current-thread runtime (the server runs on the other runtime).
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = current.block_on(async { e.embed(&["plain thread"]) });
    assert_eq!(got.unwrap(), want);
    // Dropped inside async code: no panic.
    current.block_on(async move { drop(e) });
}
