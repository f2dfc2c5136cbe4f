//! The bearer token that guards `/v1` and `/api`.
//!
//! `ZOCALO_SERVER_TOKEN` when set, else `$ZOCALO_HOME/server.token`, created on first use with
//! 32 random bytes (hex) and mode 0600. A bind beyond loopback needs a token the user chose
//! on purpose (the variable), at least [`MIN_TOKEN_LEN`] characters long.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

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

    /// Constant-time comparison, so the answer time says nothing about the prefix matched.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.value.as_bytes();
        let b = presented.as_bytes();
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
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

/// Middleware: `Authorization: Bearer TOKEN` or 401 with a JSON body.
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(p) if token.matches(p) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid token").into_response(),
        None => ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer TOKEN` (the token is in \
             $ZOCALO_HOME/server.token or ZOCALO_SERVER_TOKEN)",
        )
        .into_response(),
    }
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
}
