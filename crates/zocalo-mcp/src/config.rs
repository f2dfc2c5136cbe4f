//! What `[mcp.servers.NAME]` in config.toml may say, checked when the runtime loads the
//! config (a bad table is a config error, exit 2, before any server is started): the name, a
//! stdio `command` or a streamable-HTTP `url` (not both), what goes with each, and timeouts.

use zocalo_core::config::{McpConfig, McpServerConfig};

/// Checks every configured server; the message names the offending key.
pub fn check(config: &McpConfig) -> Result<(), String> {
    for (name, server) in &config.servers {
        check_server(name, server)?;
    }
    Ok(())
}

/// Checks one `[mcp.servers.NAME]` table; the message names the offending key.
pub fn check_server(name: &str, this: &McpServerConfig) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "mcp server name {name:?} may use only letters, digits, '-' and '_'"
        ));
    }
    if name.contains("__") {
        return Err(format!(
            "mcp server name {name:?} may not contain \"__\" (it separates server and tool \
             in NAME__TOOL)"
        ));
    }
    let at = |key: &str| format!("mcp.servers.{name}.{key}");
    match (&this.command, &this.url) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "mcp.servers.{name}: give either `command` (stdio) or `url` (HTTP), not both"
            ))
        }
        (None, None) => {
            return Err(format!(
                "mcp.servers.{name}: give `command` (+ `args`, `env`) for a stdio server or \
                 `url` for a streamable-HTTP one"
            ))
        }
        (Some(c), None) => {
            if c.trim().is_empty() {
                return Err(format!("{} is empty", at("command")));
            }
            if !this.headers.is_empty() || this.bearer_token_env.is_some() {
                return Err(format!(
                    "mcp.servers.{name}: `headers` and `bearer_token_env` apply to `url` \
                     servers only"
                ));
            }
            // The OS cannot pass these on: caught here, not when the server first starts.
            if c.contains('\0') || this.args.iter().any(|a| a.contains('\0')) {
                return Err(format!(
                    "mcp.servers.{name}: `command` and `args` may not contain NUL characters"
                ));
            }
            for (k, v) in &this.env {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(format!(
                        "{}: {k:?} is not an environment variable name (empty, or with '=' \
                         or NUL)",
                        at("env")
                    ));
                }
                if v.contains('\0') {
                    return Err(format!(
                        "{} may not contain NUL characters",
                        at(&format!("env.{k}"))
                    ));
                }
            }
        }
        (None, Some(u)) => {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "{} must start with http:// or https://, got {u:?}",
                    at("url")
                ));
            }
            check_url(u).map_err(|why| format!("{} {why}, got {u:?}", at("url")))?;
            if !this.args.is_empty() || !this.env.is_empty() || this.cwd.is_some() {
                return Err(format!(
                    "mcp.servers.{name}: `args`, `env` and `cwd` apply to `command` servers \
                     only"
                ));
            }
            for (k, v) in &this.headers {
                if k.is_empty() || !k.bytes().all(is_header_name_byte) {
                    return Err(format!(
                        "{}: {k:?} is not an HTTP header name",
                        at("headers")
                    ));
                }
                if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                    return Err(format!(
                        "{} may hold only printable ASCII characters",
                        at(&format!("headers.{k}"))
                    ));
                }
            }
            if let Some(var) = &this.bearer_token_env {
                if var.is_empty() || var.contains('=') || var.contains('\0') {
                    return Err(format!(
                        "{}: {var:?} is not an environment variable name",
                        at("bearer_token_env")
                    ));
                }
            }
        }
    }
    for (key, secs) in [
        ("timeout_secs", this.timeout_secs),
        ("startup_timeout_secs", this.startup_timeout_secs),
    ] {
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(format!(
                "{} must be a number of seconds above 0 and at most 86400, got {secs}",
                at(key)
            ));
        }
    }
    Ok(())
}

/// Checks the part of an `http(s)://` URL after the scheme: a host, then an optional port and
/// path, all printable ASCII without spaces (what an HTTP client accepts as a URI).
fn check_url(url: &str) -> Result<(), &'static str> {
    if !url.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err("may hold only printable ASCII characters, no spaces");
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let path_and_query = rest[authority.len()..]
        .split('#')
        .next()
        .unwrap_or_default();
    if path_and_query.contains(['<', '>', '"', '`']) {
        return Err("has a character that must be percent-encoded (< > \" `)");
    }
    if authority.contains(['\\', '{', '}', '|', '^', '`', '<', '>', '"']) {
        return Err("has a malformed host");
    }
    let host_port = match authority.split_once('@') {
        Some((_, hp)) if hp.contains('@') => return Err("has more than one '@' before its host"),
        Some((user, _))
            if !user
                .bytes()
                .all(|b| is_host_byte(b) || b == b':' || b == b'%') =>
        {
            return Err("has a malformed user name or password")
        }
        Some((_, hp)) => hp,
        None => authority,
    };
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => match v6.split_once(']') {
            Some((h, _))
                if !h
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                return Err("has a malformed IPv6 host")
            }
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err("has a malformed IPv6 host"),
            },
            None => return Err("has an unclosed '[' in its host"),
        },
        None => match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host
        .bytes()
        .all(|b| is_host_byte(b) || b == b':' || b == b'.')
    {
        return Err("has a malformed host");
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err("has a port that is not a number from 0 to 65535");
        }
    }
    Ok(())
}

/// A character allowed unencoded in a URL's host or user name (RFC 3986 unreserved and
/// sub-delims).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// A character allowed in an HTTP header name (an RFC 9110 token).
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn bad_server_tables_name_the_problem() {
        let cases = [
            ("[mcp.servers.a]\nargs = [\"x\"]", "command"),
            (
                "[mcp.servers.a]\ncommand = \"x\"\nurl = \"http://h\"",
                "not both",
            ),
            ("[mcp.servers.a]\ncommand = \" \"", "command"),
            ("[mcp.servers.a]\ncommand = \"x\\u0000\"", "NUL"),
            (
                "[mcp.servers.a]\ncommand = \"x\"\nenv = { \"A=B\" = \"1\" }",
                "env",
            ),
            ("[mcp.servers.a]\nurl = \"ws://h\"", "url"),
            ("[mcp.servers.a]\nurl = \"http://\"", "no host"),
            ("[mcp.servers.a]\nurl = \"http://h:99999/mcp\"", "port"),
            (
                "[mcp.servers.a]\nurl = \"http://h\"\nargs = [\"x\"]",
                "args",
            ),
            (
                "[mcp.servers.a]\nurl = \"http://h\"\nheaders = { \"a b\" = \"1\" }",
                "header name",
            ),
            (
                "[mcp.servers.a]\nurl = \"http://h\"\nbearer_token_env = \"A=B\"",
                "bearer_token_env",
            ),
            (
                "[mcp.servers.a]\ncommand = \"x\"\nheaders = { A = \"b\" }",
                "headers",
            ),
            ("[mcp.servers.a__b]\ncommand = \"x\"", "__"),
            ("[mcp.servers.\"a b\"]\ncommand = \"x\"", "a b"),
            (
                "[mcp.servers.a]\ncommand = \"x\"\ntimeout_secs = 0",
                "timeout_secs",
            ),
            (
                "[mcp.servers.a]\ncommand = \"x\"\ntimeout_secs = nan",
                "timeout_secs",
            ),
            (
                "[mcp.servers.a]\nurl = \"http://h\"\nstartup_timeout_secs = -2",
                "startup_timeout_secs",
            ),
        ];
        for (text, needle) in cases {
            let cfg = zocalo_core::Config::parse(text, Path::new("config.toml"))
                .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
            let e = super::check(&cfg.mcp).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn good_server_tables_pass() {
        let text = r#"
            [mcp.servers.files]
            command = "npx"
            args = ["-y", "server-filesystem", "/tmp"]
            env = { LOG = "1" }
            [mcp.servers.remote]
            url = "https://user@mcp.example:8443/mcp?x=1"
            headers = { X-Team = "a" }
            bearer_token_env = "REMOTE_TOKEN"
            [mcp.servers.v6]
            url = "http://[::1]:9/mcp"
        "#;
        let cfg = zocalo_core::Config::parse(text, Path::new("config.toml")).unwrap();
        assert_eq!(super::check(&cfg.mcp), Ok(()));
    }
}
