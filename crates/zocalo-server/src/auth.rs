//! The bearer token that guards `/v1` and `/api`.
//!
//! `ZOCALO_SERVER_TOKEN` when set, else `$ZOCALO_HOME/server.token`, created on first use with
//! 32 random bytes (hex) and mode 0600. A bind beyond loopback needs a token the user chose
//! on purpose (the variable), at least [`MIN_TOKEN_LEN`] characters long.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The variable that sets the token.
pub const TOKEN_ENV: &str = "ZOCALO_SERVER_TOKEN";
/// Shortest token accepted for a non-loopback bind.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where the token came from (the CLI prints the path of a token file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File { path: PathBuf, created: bool },
}

/// The server's token. Debug never prints it.
#[derive(Clone)]
pub struct Token {
    value: Arc<str>,
    pub source: TokenSource,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "refusing to listen on {addr} without a token: set {TOKEN_ENV} to a secret of at least \
         {MIN_TOKEN_LEN} characters (or bind 127.0.0.1)"
    )]
    NonLoopbackWithoutToken { addr: SocketAddr },
    #[error(
        "{TOKEN_ENV} is too short for a non-loopback bind: use at least {MIN_TOKEN_LEN} characters"
    )]
    TooShort,
    #[error("{TOKEN_ENV} is empty or has whitespace or control characters")]
    Malformed,
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TokenError {
    /// Bad input from the user (exit 2) rather than a failing environment.
    pub fn is_usage(&self) -> bool {
        !matches!(self, TokenError::Io { .. })
    }
}

impl Token {
    /// A token with this value (tests and embedders).
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: Arc::from(value.into()),
            source: TokenSource::Env,
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The token for a server bound to `addr`: `env_value` (from [`TOKEN_ENV`]) when given,
    /// else the token file in `home` (created when missing). Non-loopback binds need
    /// `env_value`.
    pub fn resolve(
        addr: SocketAddr,
        env_value: Option<String>,
        home: &Path,
    ) -> Result<Token, TokenError> {
        let loopback = addr.ip().is_loopback();
        match env_value {
            Some(v) => {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(TokenError::Malformed);
                }
                if !loopback && v.chars().count() < MIN_TOKEN_LEN {
                    return Err(TokenError::TooShort);
                }
                Ok(Token::new(v))
            }
            None if !loopback => Err(TokenError::NonLoopbackWithoutToken { addr }),
            None => Self::from_file(&home.join("server.token")),
        }
    }

    /// Read the token file, or create it (0600) with a fresh random token.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => {
                return Ok(Token {
                    value: Arc::from(s.trim()),
                    source: TokenSource::File {
                        path: path.to_owned(),
                        created: false,
                    },
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, &value).map_err(io)?;
        Ok(Token {
            value: Arc::from(value),
            source: TokenSource::File {
                path: path.to_owned(),
                created: true,
            },
        })
    }

    /// Constant-time comparison, so the answer time says nothing about how much of the token
    /// a guess got right, nor about its length: both sides are hashed to 32 bytes first and
    /// the digests compared with `subtle` (whose comparison the optimiser cannot shortcut).
    pub fn matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.value.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        bool::from(a.as_slice().ct_eq(b.as_slice()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{value}\n"))
}

/// Query parameters that carry a token in other APIs. Never accepted here: a URL ends up in
/// proxy logs, shell history and the browser's history, so a token sent in one is refused
/// even when it is right.
pub const QUERY_TOKEN_PARAMS: &[&str] = &["token", "access_token", "api_key", "apikey"];

/// Limits on failed authentications per client address (an IPv6 client is its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failures allowed per client in a window; the next ones get 429.
    pub max_failures: u32,
    pub window: Duration,
    /// Clients remembered at once: the table never grows past it (the oldest window goes).
    pub max_clients: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            max_clients: 10_000,
        }
    }
}

/// The token plus the table of recent failures: the state of [`require_token`].
#[derive(Clone)]
pub struct Guard {
    token: Token,
    failures: Arc<Failures>,
}

impl Guard {
    pub fn new(token: Token, limits: AuthLimits) -> Self {
        Self {
            token,
            failures: Arc::new(Failures::new(limits)),
        }
    }
}

/// Failed authentications per client in fixed windows.
pub struct Failures {
    limits: AuthLimits,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Failures {
    pub fn new(limits: AuthLimits) -> Self {
        Self {
            limits,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must wait when it has used up its failures, else None.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = client_key(ip);
        let clients = self.clients();
        let w = clients.get(&key)?;
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed >= self.limits.window || w.failures < self.limits.max_failures {
            return None;
        }
        Some(self.limits.window - elapsed)
    }

    /// Counts one failure of `ip`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        let window = self.limits.window;
        let mut clients = self.clients();
        if !clients.contains_key(&key) && clients.len() >= self.limits.max_clients.max(1) {
            clients.retain(|_, w| now.saturating_duration_since(w.start) < window);
            if clients.len() >= self.limits.max_clients.max(1) {
                // Still full of live windows (many addresses failing at once): forget the
                // oldest, so memory stays bounded whatever the attacker's address space.
                if let Some(oldest) = clients.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
                    clients.remove(&oldest);
                }
            }
        }
        let w = clients.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Clients remembered (tests: the table is bounded).
    pub fn len(&self) -> usize {
        self.clients().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An IPv4 address, or an IPv6 address's /64 (one host usually has a whole /64 to pick from).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware: `Authorization: Bearer TOKEN` or 401 with a JSON body. A token in the URL's
/// query is refused (401). A client past [`AuthLimits::max_failures`] failures in the window
/// gets 429 with `Retry-After` instead of 401; a request with the right token is always
/// served, so a misconfigured script does not lock the owner out of the web UI (the token's
/// length, at least 16 characters beyond loopback and 64 hex digits when generated, is what
/// makes guessing hopeless; the limit keeps guessing slow and the logs quiet).
pub async fn require_token(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let in_query = req.uri().query().and_then(token_in_query);
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let refusal = match (in_query, presented) {
        (Some(param), _) => ApiError::unauthorized(format!(
            "a token in the URL (`?{param}=`) is never accepted, since URLs are logged: send \
             it in the `Authorization: Bearer TOKEN` header"
        ))
        .code("token_in_query"),
        (None, Some(p)) if guard.token.matches(p) => return next.run(req).await,
        (None, Some(_)) => ApiError::unauthorized("invalid token"),
        (None, None) => ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer TOKEN` (the token is in \
             $ZOCALO_HOME/server.token or ZOCALO_SERVER_TOKEN)",
        ),
    };
    let now = Instant::now();
    if let Some(wait) = guard.failures.blocked(client, now) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed authentications from {client}: try again in {secs} s with \
                 the right token"
            ),
        )
        .code("too_many_auth_failures")
        .into_response();
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    guard.failures.record(client, now);
    refusal.into_response()
}

/// The name of a token-carrying parameter in a raw query, if there is one.
fn token_in_query(query: &str) -> Option<&'static str> {
    query.split('&').find_map(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        QUERY_TOKEN_PARAMS
            .iter()
            .find(|p| p.eq_ignore_ascii_case(name))
            .copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Token::resolve(addr("127.0.0.1:0"), None, dir.path()).unwrap();
        let path = dir.path().join("server.token");
        assert_eq!(
            t.source,
            TokenSource::File {
                path: path.clone(),
                created: true
            }
        );
        assert_eq!(t.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Token::resolve(addr("[::1]:0"), None, dir.path()).unwrap();
        assert_eq!(again.expose(), t.expose());
        assert!(matches!(
            again.source,
            TokenSource::File { created: false, .. }
        ));
    }

    #[test]
    fn non_loopback_needs_a_long_env_token() {
        let dir = tempfile::tempdir().unwrap();
        let e = Token::resolve(addr("0.0.0.0:7878"), None, dir.path()).unwrap_err();
        assert!(matches!(e, TokenError::NonLoopbackWithoutToken { .. }));
        assert!(!dir.path().join("server.token").exists());
        let e = Token::resolve(addr("0.0.0.0:7878"), Some("short".into()), dir.path());
        assert!(matches!(e, Err(TokenError::TooShort)));
        let ok = Token::resolve(
            addr("0.0.0.0:7878"),
            Some("a-long-enough-secret".into()),
            dir.path(),
        )
        .unwrap();
        assert!(ok.matches("a-long-enough-secret"));
        assert!(matches!(
            Token::resolve(addr("127.0.0.1:1"), Some("has space".into()), dir.path()),
            Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn matching_is_exact() {
        let t = Token::new("secret-token");
        assert!(t.matches("secret-token"));
        assert!(!t.matches("secret-toke"));
        assert!(!t.matches("secret-tokenx"));
        assert!(!t.matches(""));
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let f = Failures::new(AuthLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
            max_clients: 100,
        });
        let now = Instant::now();
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            f.record(ip, now);
        }
        assert_eq!(f.len(), 100);
        // The newest clients are the ones remembered.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 4999));
        f.record(last, now);
        f.record(last, now);
        assert!(f.blocked(last, now).is_some());
        assert!(f.blocked(last, now + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let f = Failures::new(AuthLimits {
            max_failures: 2,
            window: Duration::from_secs(60),
            max_clients: 10,
        });
        let now = Instant::now();
        f.record("2001:db8:1:2::1".parse().unwrap(), now);
        f.record("2001:db8:1:2:ffff::9".parse().unwrap(), now);
        assert!(f
            .blocked("2001:db8:1:2::77".parse().unwrap(), now)
            .is_some());
        assert!(f.blocked("2001:db8:1:3::1".parse().unwrap(), now).is_none());
        // An IPv4 client seen over IPv6 (a dual-stack socket) is the same client.
        f.record("10.0.0.1".parse().unwrap(), now);
        f.record("::ffff:10.0.0.1".parse().unwrap(), now);
        assert!(f.blocked("10.0.0.1".parse().unwrap(), now).is_some());
    }

    #[test]
    fn tokens_in_a_query_are_found_by_name_only() {
        assert_eq!(token_in_query("token=x"), Some("token"));
        assert_eq!(
            token_in_query("limit=1&Access_Token=x"),
            Some("access_token")
        );
        assert_eq!(token_in_query("api_key"), Some("api_key"));
        assert_eq!(token_in_query("limit=1&q=token"), None);
        assert_eq!(token_in_query("tokens=1"), None);
        assert_eq!(token_in_query(""), None);
    }
}
