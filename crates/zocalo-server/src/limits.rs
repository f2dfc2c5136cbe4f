//! What keeps one client from taking the server down, and the connection loop that applies
//! the limits below the router.
//!
//! - Request bodies: at most [`DEFAULT_BODY_LIMIT`] bytes. A declared `Content-Length` past
//!   it is answered 413 before a byte of the body is read; a chunked body is cut off when it
//!   passes the limit (413 from the JSON extractors).
//! - Request heads: a connection that has not sent a whole request head within
//!   [`DEFAULT_HEADER_TIMEOUT`] (a slow-loris client trickling header bytes, or an idle
//!   keep-alive connection) is closed. Each connection is its own task, so a slow one never
//!   holds up another.
//! - Event streams (every `text/event-stream` response: `/api/events`, streamed answers,
//!   MCP): at most [`DEFAULT_MAX_STREAMS`] open at once; the next gets 503 with `Retry-After`
//!   and the connection is closed.
//! - Browsers: no CORS header unless origins are configured, and no cookie, ever.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, RETRY_AFTER,
    SET_COOKIE, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::error::ApiError;

/// Largest request body accepted (JSON bodies; uploads are not a thing here).
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Event streams open at once.
pub const DEFAULT_MAX_STREAMS: usize = 1000;
/// Longest a client may take to send a request head (and longest a keep-alive connection may
/// stay idle between requests).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware: a declared body past `limit` is refused at once; any other body is wrapped so
/// reading past `limit` fails (the extractors answer that with 413), whatever route reads it.
pub async fn limit_body(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut r = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
        .code("body_too_large")
        .into_response();
        // The unread body would otherwise have to be drained before the next request.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, limit)));
    next.run(req).await
}

/// Middleware: an event-stream response holds a permit of `streams` for as long as its body
/// flows; when none is left the client gets 503.
pub async fn cap_streams(streams: Arc<Semaphore>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let is_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        return response;
    }
    match streams.try_acquire_owned() {
        Ok(permit) => {
            let (parts, body) = response.into_parts();
            let body = body.into_data_stream().map(move |chunk| {
                let _held = &permit;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(body))
        }
        Err(_) => {
            // Dropping the response ends its stream (and what feeds it) here.
            drop(response);
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many event streams open on this server: try again shortly",
            )
            .code("too_many_streams")
            .into_response();
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// Middleware: CORS headers only for the configured origins (none by default, so browsers
/// keep other sites' pages from reading answers), and never a cookie: the API is
/// authenticated by the bearer header alone, so there is no ambient credential to steal.
pub async fn browser_policy(origins: Arc<[String]>, req: Request, next: Next) -> Response {
    let allowed = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| origins.iter().any(|a| a == o || a == "*"))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    let mut response = match (&allowed, preflight) {
        (Some(_), true) => StatusCode::NO_CONTENT.into_response(),
        _ => next.run(req).await,
    };
    let h = response.headers_mut();
    h.remove(SET_COOKIE);
    if let Some(origin) = allowed {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(VARY, HeaderValue::from_static("origin"));
        if preflight {
            h.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            h.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
    response
}

/// How connections are served (below the router).
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (open streams end when their producers do). Each request carries its peer's
/// address as `ConnectInfo<SocketAddr>` (the auth failure limit is per client).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a clone; `closed()` resolves when the last one is gone.
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Infallible>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before accept): wait
                    // for connections to close instead of spinning or giving up.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let timeout = options.header_timeout;
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req)
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .max_headers(100);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_conn_end(peer, r),
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    log_conn_end(peer, conn.await);
                }
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    let mut done_rx = done_rx;
    let _ = done_rx.recv().await;
    Ok(())
}

fn log_conn_end(peer: SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
