//! `[mcp.servers.NAME]` parsing under generated input: any text parses or fails without a
//! panic; a table whose fields have the right types and agree with each other is accepted,
//! every other one is refused with an error that names the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;
use toml::Value;
use zocalo_core::Config;

/// config.toml as the runtime loads it: parsed by zocalo-core, `[mcp]` checked here.
fn parse(text: &str) -> Result<Config, String> {
    let path = Path::new("config.toml");
    let cfg = Config::parse(text, path).map_err(|e| e.to_string())?;
    zocalo_mcp::config::check(&cfg.mcp).map_err(|message| {
        zocalo_core::CoreError::Config {
            path: path.to_owned(),
            message,
        }
        .to_string()
    })?;
    Ok(cfg)
}

/// One generated field: left out, a good value, a value of the right type that the checks
/// must refuse, or a value of the wrong type. `nonempty`: an empty list/table counts as not
/// given for the "applies to ... only" rules.
#[derive(Clone, Debug)]
enum F {
    Absent,
    Good { v: Value, nonempty: bool },
    Bad(Value),
    WrongType(Value),
}

impl F {
    fn value(&self) -> Option<&Value> {
        match self {
            F::Absent => None,
            F::Good { v, .. } | F::Bad(v) | F::WrongType(v) => Some(v),
        }
    }
    fn given(&self) -> bool {
        match self {
            F::Absent => false,
            F::Good { nonempty, .. } => *nonempty,
            F::Bad(_) | F::WrongType(_) => true,
        }
    }
    fn wrong_type(&self) -> bool {
        matches!(self, F::WrongType(_))
    }
    fn bad(&self) -> bool {
        matches!(self, F::Bad(_))
    }
}

fn good(v: Value) -> F {
    F::Good { v, nonempty: true }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn table(pairs: Vec<(String, Value)>) -> Value {
    Value::Table(pairs.into_iter().collect())
}

fn wrong_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(|i| Value::Integer(i.into())),
        any::<bool>().prop_map(Value::Boolean),
        Just(Value::Array(vec![Value::Integer(1)])),
        Just(table(vec![("k".into(), s("v"))])),
    ]
}

fn command() -> impl Strategy<Value = F> {
    prop_oneof![
        2 => Just(F::Absent),
        3 => "[a-z/][a-z0-9/._-]{0,12}".prop_map(|c| good(s(&c))),
        1 => prop_oneof![Just(""), Just("  "), Just("run\0me")].prop_map(|c| F::Bad(s(c))),
        1 => wrong_scalar().prop_filter("not a string", |v| !v.is_str()).prop_map(F::WrongType),
    ]
}

fn args() -> impl Strategy<Value = F> {
    prop_oneof![
        2 => Just(F::Absent),
        2 => prop::collection::vec("[ -~]{0,8}", 0..3).prop_map(|a| F::Good {
            nonempty: !a.is_empty(),
            v: Value::Array(a.iter().map(|x| s(x)).collect()),
        }),
        1 => Just(F::Bad(Value::Array(vec![s("ok"), s("n\0ul")]))),
        1 => prop_oneof![Just(s("-v")), Just(Value::Array(vec![Value::Integer(3)]))]
            .prop_map(F::WrongType),
    ]
}

fn env() -> impl Strategy<Value = F> {
    prop_oneof![
        2 => Just(F::Absent),
        2 => prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,6}", "[ -~]{0,8}", 0..3).prop_map(|m| {
            F::Good {
                nonempty: !m.is_empty(),
                v: table(m.into_iter().map(|(k, v)| (k, s(&v))).collect()),
            }
        }),
        1 => prop_oneof![
            Just(table(vec![("A=B".into(), s("x"))])),
            Just(table(vec![(String::new(), s("x"))])),
            Just(table(vec![("K".into(), s("nul\0"))])),
        ]
        .prop_map(F::Bad),
        1 => prop_oneof![
            Just(table(vec![("K".into(), Value::Integer(1))])),
            Just(table(vec![("K".into(), Value::Boolean(true))])),
            Just(s("K=1")),
        ]
        .prop_map(F::WrongType),
    ]
}

fn cwd() -> impl Strategy<Value = F> {
    prop_oneof![
        3 => Just(F::Absent),
        1 => Just(good(s("/tmp"))),
        1 => Just(F::WrongType(Value::Integer(7))),
    ]
}

fn good_url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("http"), Just("https")],
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4})?".prop_map(|h| h),
            Just("127.0.0.1".to_owned()),
            Just("[::1]".to_owned()),
            Just("user:pw@h.example".to_owned()),
        ],
        prop::option::of(0u16..=65535),
        "(/[a-zA-Z0-9._~-]{0,6}){0,3}",
    )
        .prop_map(|(scheme, host, port, path)| match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        })
}

fn url() -> impl Strategy<Value = F> {
    prop_oneof![
        2 => Just(F::Absent),
        3 => good_url().prop_map(|u| good(s(&u))),
        2 => prop_oneof![
            Just("ws://h/mcp"),
            Just("h.example/mcp"),
            Just(""),
            Just("http://"),
            Just("https:///mcp"),
            Just("http:// h/mcp"),
            Just("http://h ost/mcp"),
            Just("http://h/m cp"),
            Just("http://h:99999/mcp"),
            Just("http://h:/mcp"),
            Just("http://h:8o/mcp"),
            Just("http://a@b@c/mcp"),
            Just("http://[::1/mcp"),
            Just("http://[::1]x/mcp"),
            Just("http://h\u{e9}.example/mcp"),
            Just("http://<h>/mcp"),
        ]
        .prop_map(|u| F::Bad(s(u))),
        1 => wrong_scalar().prop_filter("not a string", |v| !v.is_str()).prop_map(F::WrongType),
    ]
}

fn headers() -> impl Strategy<Value = F> {
    prop_oneof![
        3 => Just(F::Absent),
        2 => prop::collection::btree_map("[A-Za-z][A-Za-z0-9!#$&'*+.^_`|~-]{0,8}", "[ -~]{0,10}", 0..3)
            .prop_map(|m| F::Good {
                nonempty: !m.is_empty(),
                v: table(m.into_iter().map(|(k, v)| (k, s(&v))).collect()),
            }),
        1 => prop_oneof![
            Just(table(vec![("Bad Name".into(), s("v"))])),
            Just(table(vec![("X-A".into(), s("line\nbreak"))])),
            Just(table(vec![("X-A".into(), s("caf\u{e9}"))])),
            Just(table(vec![(String::new(), s("v"))])),
        ]
        .prop_map(F::Bad),
        1 => prop_oneof![Just(s("X-A: b")), Just(table(vec![("X-A".into(), Value::Integer(2))]))]
            .prop_map(F::WrongType),
    ]
}

fn bearer() -> impl Strategy<Value = F> {
    prop_oneof![
        3 => Just(F::Absent),
        1 => Just(good(s("TRACKER_TOKEN"))),
        1 => prop_oneof![Just(""), Just("A=B")].prop_map(|v| F::Bad(s(v))),
        1 => Just(F::WrongType(Value::Boolean(true))),
    ]
}

fn seconds() -> impl Strategy<Value = F> {
    prop_oneof![
        3 => Just(F::Absent),
        2 => prop_oneof![
            (1i64..=86_400).prop_map(Value::Integer),
            (0.001f64..86_400.0).prop_map(Value::Float),
        ]
        .prop_map(good),
        2 => prop_oneof![
            Just(Value::Integer(0)),
            Just(Value::Integer(-1)),
            Just(Value::Integer(86_401)),
            Just(Value::Float(-0.5)),
            Just(Value::Float(1e12)),
            Just(Value::Float(f64::NAN)),
            Just(Value::Float(f64::INFINITY)),
            Just(Value::Float(f64::NEG_INFINITY)),
        ]
        .prop_map(F::Bad),
        1 => prop_oneof![Just(s("10")), Just(Value::Boolean(false))].prop_map(F::WrongType),
    ]
}

fn enabled() -> impl Strategy<Value = F> {
    prop_oneof![
        3 => Just(F::Absent),
        1 => any::<bool>().prop_map(|b| good(Value::Boolean(b))),
        1 => Just(F::WrongType(s("yes"))),
    ]
}

#[derive(Clone, Debug)]
struct Server {
    command: F,
    args: F,
    env: F,
    cwd: F,
    url: F,
    headers: F,
    bearer_token_env: F,
    timeout_secs: F,
    startup_timeout_secs: F,
    enabled: F,
    unknown: Option<&'static str>,
}

fn server() -> impl Strategy<Value = Server> {
    (
        (command(), args(), env(), cwd()),
        (url(), headers(), bearer()),
        (seconds(), seconds(), enabled()),
        prop::option::weighted(0.1, prop_oneof![Just("cmd"), Just("URL"), Just("arg")]),
    )
        .prop_map(
            |(
                (command, args, env, cwd),
                (url, headers, bearer_token_env),
                (timeout_secs, startup_timeout_secs, enabled),
                unknown,
            )| Server {
                command,
                args,
                env,
                cwd,
                url,
                headers,
                bearer_token_env,
                timeout_secs,
                startup_timeout_secs,
                enabled,
                unknown,
            },
        )
}

impl Server {
    fn fields(&self) -> [(&'static str, &F); 10] {
        [
            ("command", &self.command),
            ("args", &self.args),
            ("env", &self.env),
            ("cwd", &self.cwd),
            ("url", &self.url),
            ("headers", &self.headers),
            ("bearer_token_env", &self.bearer_token_env),
            ("timeout_secs", &self.timeout_secs),
            ("startup_timeout_secs", &self.startup_timeout_secs),
            ("enabled", &self.enabled),
        ]
    }

    fn toml(&self) -> Value {
        let mut t = toml::Table::new();
        for (k, f) in self.fields() {
            if let Some(v) = f.value() {
                t.insert(k.into(), v.clone());
            }
        }
        if let Some(k) = self.unknown {
            t.insert(k.into(), Value::Integer(1));
        }
        Value::Table(t)
    }

    /// What the documented rules say, restated independently of the checks under test.
    fn should_be_valid(&self) -> bool {
        if self.unknown.is_some() || self.fields().iter().any(|(_, f)| f.wrong_type()) {
            return false;
        }
        if self.timeout_secs.bad() || self.startup_timeout_secs.bad() {
            return false;
        }
        let has_command = !matches!(self.command, F::Absent);
        let has_url = !matches!(self.url, F::Absent);
        match (has_command, has_url) {
            (true, false) => {
                !self.command.bad()
                    && !self.args.bad()
                    && !self.env.bad()
                    && !self.headers.given()
                    && matches!(self.bearer_token_env, F::Absent)
            }
            (false, true) => {
                !self.url.bad()
                    && !self.headers.bad()
                    && !self.bearer_token_env.bad()
                    && !self.args.given()
                    && !self.env.given()
                    && matches!(self.cwd, F::Absent)
            }
            _ => false,
        }
    }
}

fn document(servers: &[(String, Value)]) -> String {
    let mut doc = toml::Table::new();
    let mut mcp = toml::Table::new();
    mcp.insert("servers".into(), table(servers.to_vec()));
    doc.insert("mcp".into(), Value::Table(mcp));
    toml::to_string(&doc).expect("serializable")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_server_table_is_accepted_exactly_when_the_rules_allow(
        name in "[a-z][a-z0-9-]{0,6}(_[a-z0-9]{1,4})?",
        srv in server(),
    ) {
        let text = document(&[(name.clone(), srv.toml())]);
        let expected = srv.should_be_valid();
        match parse(&text) {
            Ok(cfg) => {
                prop_assert!(expected, "accepted but the rules refuse it:\n{text}");
                let c = &cfg.mcp.servers[&name];
                // What the client relies on for an accepted table.
                prop_assert!(c.command.is_some() != c.url.is_some());
                prop_assert!(c.timeout_secs.is_finite() && c.timeout_secs > 0.0);
                prop_assert!(c.startup_timeout_secs.is_finite() && c.startup_timeout_secs > 0.0);
                if let Some(u) = &c.url {
                    prop_assert!(u.starts_with("http://") || u.starts_with("https://"));
                }
            }
            Err(e) => {
                prop_assert!(!expected, "refused but the rules allow it:\n{text}\n{e}");
                prop_assert!(
                    e.contains(&format!("mcp.servers.{name}")),
                    "the error does not name the server:\n{text}\n{e}"
                );
                prop_assert!(e.contains("config.toml"), "{e}");
            }
        }
    }

    #[test]
    fn with_several_servers_the_error_names_a_bad_one(
        servers in prop::collection::btree_map("[a-z]{1,6}", server(), 1..4),
    ) {
        let entries: Vec<(String, Value)> =
            servers.iter().map(|(n, s)| (n.clone(), s.toml())).collect();
        let text = document(&entries);
        let bad: Vec<&String> = servers
            .iter()
            .filter(|(_, s)| !s.should_be_valid())
            .map(|(n, _)| n)
            .collect();
        match parse(&text) {
            Ok(_) => prop_assert!(bad.is_empty(), "accepted with bad {bad:?}:\n{text}"),
            Err(e) => {
                prop_assert!(!bad.is_empty(), "refused a good config:\n{text}\n{e}");
                prop_assert!(
                    bad.iter().any(|n| e.contains(&format!("mcp.servers.{n}"))),
                    "names none of {bad:?}:\n{text}\n{e}"
                );
            }
        }
    }

    #[test]
    fn a_bad_server_name_is_refused_by_name(
        name in prop_oneof![
            "[a-z]{1,4}__[a-z]{0,4}",
            "[a-z]{0,3}[ .!/:\u{e9}@+][a-z]{0,3}",
            Just(String::new()),
        ],
    ) {
        let text = document(&[(name.clone(), table(vec![("command".into(), s("x"))]))]);
        let e = parse(&text).expect_err(&text);
        prop_assert!(e.contains(&format!("{name:?}")), "{text}\n{e}");
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn toml_like_text_under_mcp_never_panics_and_accepted_means_usable(
        body in "[a-z_=\"\\[\\]{}., \n0-9:/\\\\]{0,120}",
    ) {
        let text = format!("[mcp.servers.x]\n{body}");
        if let Ok(cfg) = parse(&text) {
            for c in cfg.mcp.servers.values() {
                prop_assert!(c.command.is_some() != c.url.is_some(), "{text}");
            }
        }
    }
}

#[test]
fn malformed_server_tables_name_the_server_and_the_key() {
    let cases = [
        // Wrong types: where they are is part of the message.
        (
            "[mcp.servers.files]\ncommand = \"x\"\nenv = { LOG = 1 }",
            "mcp.servers.files.env.LOG",
        ),
        (
            "[mcp.servers.files]\ncommand = 3",
            "mcp.servers.files.command",
        ),
        (
            "[mcp.servers.files]\ncommand = \"x\"\nargs = [1]",
            "mcp.servers.files.args",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h\"\nheaders = \"X: y\"",
            "mcp.servers.web.headers",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h\"\nenabled = \"yes\"",
            "mcp.servers.web.enabled",
        ),
        ("[mcp.servers]\nweb = 3", "mcp.servers.web"),
        // Values the client could not use.
        (
            "[mcp.servers.web]\nurl = \"http://\"",
            "mcp.servers.web.url has no host",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h:99999/mcp\"",
            "mcp.servers.web.url has a port",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h /mcp\"",
            "mcp.servers.web.url",
        ),
        // Found by zocalo-mcp's config_props: what no HTTP client would take as a URI.
        (
            "[mcp.servers.web]\nurl = \"http://A?<\"",
            "mcp.servers.web.url has a character that must be percent-encoded",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://]@&!\"",
            "mcp.servers.web.url has a malformed user name",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h\"\nheaders = { \"Bad Name\" = \"v\" }",
            "mcp.servers.web.headers",
        ),
        (
            "[mcp.servers.web]\nurl = \"http://h\"\nheaders = { X-A = \"a\\nb\" }",
            "mcp.servers.web.headers.X-A",
        ),
        (
            "[mcp.servers.files]\ncommand = \"x\"\nenv = { \"A=B\" = \"v\" }",
            "mcp.servers.files.env",
        ),
        (
            "[mcp.servers.files]\ncommand = \"x\\u0000\"",
            "mcp.servers.files: `command` and `args` may not contain NUL",
        ),
    ];
    for (text, needle) in cases {
        let e = parse(text).expect_err(text);
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    // And the ones that are fine stay fine.
    for text in [
        "[mcp.servers.web]\nurl = \"http://[::1]:8000/mcp\"",
        "[mcp.servers.web]\nurl = \"https://user:pw@h.example/a/b?x=1\"",
        "[mcp.servers.web]\nurl = \"http://h\"\nheaders = { X-Team = \"a b\", Authorization = \"Bearer t\" }",
        "[mcp.servers.files]\ncommand = \"x\"\nargs = []\nenv = {}\nheaders = {}",
    ] {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}
