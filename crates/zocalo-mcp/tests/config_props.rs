//! What `[mcp.servers.NAME]` accepts, the client can use: a URL and headers that pass the
//! config checks also parse as the HTTP URI and header values the client sends, so a
//! configured server never fails later on its own config. And a typed tool's arguments,
//! whatever JSON arrives, are a result or a recoverable error naming the tool, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use zocalo_core::{Config, ToolError};
use zocalo_mcp::schemars::JsonSchema;

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-z]{1,3}"],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Test arguments: a required integer and an optional list of strings.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Args {
    a: i64,
    #[serde(default)]
    b: Option<Vec<String>>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn an_accepted_url_is_a_valid_http_uri(
        scheme in prop_oneof![Just("http://"), Just("https://")],
        rest in "[ -~]{0,30}",
    ) {
        let url = format!("{scheme}{rest}");
        let text = format!("[mcp.servers.s]\nurl = {}\n", toml_str(&url));
        if Config::parse(&text, Path::new("config.toml"))
            .is_ok_and(|c| zocalo_mcp::config::check(&c.mcp).is_ok())
        {
            let uri = url.parse::<http::Uri>();
            prop_assert!(uri.is_ok(), "accepted {url:?}, but it is no URI: {uri:?}");
            let uri = uri.unwrap();
            prop_assert!(uri.host().is_some_and(|h| !h.is_empty()), "{url:?}");
        }
    }

    #[test]
    fn accepted_headers_are_valid_http_headers(
        name in "[ -~]{0,10}",
        value in "[\t -~\u{80}-\u{ff}\n]{0,12}",
    ) {
        let text = format!(
            "[mcp.servers.s]\nurl = \"http://h/mcp\"\nheaders = {{ {} = {} }}\n",
            toml_str(&name),
            toml_str(&value)
        );
        if Config::parse(&text, Path::new("config.toml"))
            .is_ok_and(|c| zocalo_mcp::config::check(&c.mcp).is_ok())
        {
            prop_assert!(name.parse::<http::HeaderName>().is_ok(), "{name:?}");
            prop_assert!(value.parse::<http::HeaderValue>().is_ok(), "{value:?}");
        }
    }

    #[test]
    fn typed_tool_arguments_never_panic(args in json_value()) {
        let tool = zocalo_mcp::typed_tool("adder", "Adds.", |a: Args| async move {
            Ok(format!("{}:{}", a.a, a.b.map_or(0, |b| b.len())))
        });
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        match rt.block_on(tool.call(args.clone())) {
            Ok(out) => {
                // Only an object with an integer `a` (and at most a string list `b`) gets here.
                prop_assert!(args["a"].is_i64(), "{args} -> {out}");
                prop_assert!(out.starts_with(&args["a"].to_string()), "{args} -> {out}");
            }
            Err(ToolError::Recoverable(m)) => prop_assert!(m.contains("adder"), "{args}: {m}"),
            Err(other) => prop_assert!(false, "{args}: {other:?}"),
        }
    }
}
