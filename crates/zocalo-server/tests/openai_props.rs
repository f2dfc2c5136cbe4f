//! Property tests of `POST /v1/chat/completions` on a real server on loopback: whatever the
//! body (random bytes, random JSON, requests that are almost right), the answer is a 2xx of
//! the OpenAI shape or a 4xx with the OpenAI error body; never a 5xx, never a panic (which the
//! server would turn into a 500). The model behind it is an in-process stub that always says
//! "ok", so every request the parser accepts has a well-defined answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};
use zocalo_server::Token;

const TOKEN: &str = "props-token-0123456789abcdef";

struct Harness {
    rt: tokio::runtime::Runtime,
    url: String,
    client: reqwest::Client,
}

/// One server for every case (started on first use).
fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let url = rt.block_on(async {
            let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
            let token = Token::resolve(
                addr,
                Some(TOKEN.into()),
                std::path::Path::new("/nonexistent"),
            )
            .unwrap();
            let router = support::stub_builder(token).await.build();
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let url = format!(
                "http://{}/v1/chat/completions",
                listener.local_addr().unwrap()
            );
            tokio::spawn(zocalo_server::serve(
                listener,
                router,
                std::future::pending(),
            ));
            url
        });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        Harness { rt, url, client }
    })
}

/// Sends `body` and checks the answer's shape; Err says what was wrong.
fn check(body: Vec<u8>) -> Result<(), String> {
    let h = harness();
    h.rt.block_on(async {
        let r = h
            .client
            .post(&h.url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = r.text().await.map_err(|e| format!("body: {e}"))?;
        if status.is_success() {
            if ct.starts_with("text/event-stream") {
                if !text.ends_with("data: [DONE]\n\n") {
                    return Err(format!("a stream that does not end in [DONE]: {text}"));
                }
                for block in text.split("\n\n").filter(|b| !b.is_empty()) {
                    let data = block
                        .strip_prefix("data: ")
                        .ok_or(format!("not SSE data: {block}"))?;
                    if data == "[DONE]" {
                        continue;
                    }
                    let v: Value =
                        serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
                    if v["object"] != "chat.completion.chunk" {
                        return Err(format!("not a chunk: {v}"));
                    }
                }
                return Ok(());
            }
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{status}: {e}: {text}"))?;
            if v["object"] != "chat.completion" || v["choices"][0]["message"]["content"] != "ok" {
                return Err(format!("not a completion: {v}"));
            }
            return Ok(());
        }
        if !status.is_client_error() {
            return Err(format!("{status}: {text}"));
        }
        if !ct.starts_with("application/json") {
            return Err(format!("{status} with content-type {ct:?}: {text}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}: {text}"))?;
        if !(v["error"]["message"].is_string() && v["error"]["type"].is_string()) {
            return Err(format!("{status}: not the OpenAI error shape: {v}"));
        }
        Ok(())
    })
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("zocalo"),
            Just("stub/x"),
            Just("user"),
            Just("text"),
            Just("model"),
            Just("messages")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("model".to_owned()),
                    Just("messages".to_owned()),
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("stream".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Requests close to valid ones: each field mostly right, sometimes wrong or missing, so
/// that both accepted requests and every kind of refusal come up.
fn near_request() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        8 => Just(json!("user")),
        1 => Just(json!("system")),
        1 => Just(json!("developer")),
        1 => Just(json!("assistant")),
        1 => Just(json!("tool")),
        1 => Just(json!("wizard")),
        1 => Just(json!(7)),
    ];
    let content = prop_oneof![
        6 => "\\PC{1,20}".prop_map(Value::from),
        1 => Just(json!("   ")),
        1 => Just(Value::Null),
        2 => Just(json!([{"type": "text", "text": "hi"}])),
        1 => Just(json!([{"type": "image_url", "image_url": {"url": "x"}}])),
        1 => Just(json!([{"type": "text"}])),
        1 => Just(json!(3)),
    ];
    let extra = prop_oneof![
        8 => Just(json!({})),
        1 => Just(json!({"tool_call_id": "c1"})),
        1 => Just(json!({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]})),
        1 => Just(json!({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "not json"}}]})),
        1 => Just(json!({"tool_calls": "x"})),
    ];
    let message = (role, content, extra).prop_map(|(role, content, extra)| {
        let mut m = json!({"role": role, "content": content});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    });
    let model = prop_oneof![
        4 => Just(json!("zocalo")),
        4 => Just(json!("stub/stub-1")),
        1 => Just(json!("stub/")),
        1 => Just(json!("/x")),
        1 => Just(json!("nope/x")),
        1 => Just(json!("nope")),
        1 => Just(json!(null)),
        1 => "\\PC{0,10}".prop_map(Value::from),
    ];
    // Mostly absent, often valid, sometimes wrong.
    let opt = |good: BoxedStrategy<Value>, bad: BoxedStrategy<Value>| prop_oneof![5 => Just(None), 4 => good.prop_map(Some), 1 => bad.prop_map(Some)];
    (
        model,
        proptest::collection::vec(message, 0..4),
        opt(
            prop_oneof![Just(json!(true)), Just(json!(false))].boxed(),
            Just(json!("yes")).boxed(),
        ),
        opt(Just(json!(1)).boxed(), prop_oneof![Just(json!(2)), Just(json!(-1)), Just(json!(1e12))].boxed()),
        opt(
            prop_oneof![Just(json!(0.0)), Just(json!(0.7)), Just(json!(2.0))].boxed(),
            prop_oneof![Just(json!(3.0)), Just(json!(-0.1)), Just(json!(1e300))].boxed(),
        ),
        opt(
            prop_oneof![Just(json!(16)), Just(json!(1))].boxed(),
            prop_oneof![Just(json!(0)), Just(json!(-5)), Just(json!(1e20))].boxed(),
        ),
        opt(
            Just(json!({"include_usage": true})).boxed(),
            prop_oneof![Just(json!({"include_usage": "x"})), Just(json!([]))].boxed(),
        ),
        opt(
            Just(json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])).boxed(),
            prop_oneof![
                Just(json!([{"type": "retrieval", "function": {"name": "f"}}])),
                Just(json!([{"type": "function"}])),
            ]
            .boxed(),
        ),
        opt(
            Just(json!("conv_0192f0000000000000000000000")).boxed(),
            prop_oneof![Just(json!("")), Just(json!(5))].boxed(),
        ),
    )
        .prop_map(|(model, messages, stream, n, temperature, max_tokens, so, tools, conv)| {
            let mut r = json!({"model": model, "messages": messages});
            for (k, v) in [
                ("stream", stream),
                ("n", n),
                ("temperature", temperature),
                ("max_tokens", max_tokens),
                ("stream_options", so),
                ("tools", tools),
                ("conversation", conv),
            ] {
                if let Some(v) = v {
                    r[k] = v;
                }
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_answered_with_a_json_4xx(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(body).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_json_is_answered_with_a_json_4xx(v in any_json()) {
        check(serde_json::to_vec(&v).unwrap()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn near_valid_requests_get_an_answer_or_a_json_4xx(v in near_request()) {
        check(serde_json::to_vec(&v).unwrap()).map_err(TestCaseError::fail)?;
    }
}

/// Both sides of `check` are reachable: valid requests (ask loop, pass-through streamed) get
/// the stub's completion, a broken body a 4xx.
#[test]
fn check_sees_both_outcomes() {
    check(
        serde_json::to_vec(
            &json!({"model": "zocalo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap(),
    )
    .unwrap();
    check(serde_json::to_vec(&json!({"model": "stub/stub-1", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).unwrap())
        .unwrap();
    check(b"{".to_vec()).unwrap();
}
