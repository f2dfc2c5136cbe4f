//! The embedded default: with no provider configured and no key anywhere, `zocalo ask`
//! answers with the in-process local model (weights fetched by `zocalo models fetch`).

mod common;

use common::zocalo;

/// Weights are shared by every test run on this machine (and fetched once if missing).
fn models_dir() -> String {
    std::env::var("ZOCALO_TEST_MODELS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
        format!("{home}/.cache/zocalo-models-test")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_defaults_to_the_local_model_offline() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let env = [("ZOCALO_MODELS_DIR", models.as_str())];

    let fetch = zocalo(home.path(), &env, &["models", "fetch", "--json"]).await;
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    let fetched = fetch.json();
    assert!(
        fetched
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["verified"] == true),
        "{fetched}"
    );

    let run = zocalo(
        home.path(),
        &env,
        &["ask", "--json", "What is the capital of France?"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["provider"], "local");
    assert_eq!(j["model"], "smollm2-135m-instruct");
    assert!(j["text"].as_str().unwrap().contains("Paris"), "{j}");
    assert_eq!(j["steps"], 1, "the local model runs without tools");
    assert!(j["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // The answer is persisted like any other, and streams on stdout without --json.
    let conv = j["conversation_id"].as_str().unwrap();
    let more = zocalo(home.path(), &env, &["ask", "--conv", conv, "Say it again."]).await;
    assert_eq!(more.code, 0, "{}", more.stderr);
    assert!(!more.stdout.trim().is_empty());

    let list = zocalo(
        home.path(),
        &env,
        &["models", "list", "--provider", "local", "--json"],
    )
    .await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let local: Vec<_> = list.json().as_array().unwrap().clone();
    assert_eq!(local.len(), 2);
    assert!(
        local
            .iter()
            .all(|m| m["present"] == true && m["verified"] == true),
        "{local:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_weights_say_how_to_fetch() {
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let env = [("ZOCALO_MODELS_DIR", empty.path().to_str().unwrap())];
    let run = zocalo(home.path(), &env, &["ask", "hello"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("zocalo models fetch"), "{}", run.stderr);

    let doctor = zocalo(home.path(), &env, &["doctor", "--json"]).await;
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let model = checks
        .iter()
        .find(|c| c["name"] == "model:smollm2-135m-instruct")
        .unwrap();
    assert_eq!(model["ok"], false);
    assert_eq!(model["fix"], "zocalo models fetch");
}
