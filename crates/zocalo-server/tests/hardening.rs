//! The server under attack, over real HTTP on loopback: token checks (constant time, never in
//! the URL, failures limited per client), no CORS unless configured, no cookies, and the
//! limits (body size, slow request heads, event streams at once, thousands of connections).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::stream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zocalo_server::{AuthLimits, ServeOptions, ServerBuilder, Token};

const TOKEN: &str = "hardening-token-0123456789abcdef";

/// A server on a loopback port, built by `configure` and served with `options`.
async fn start(
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    options: ServeOptions,
) -> SocketAddr {
    let router = configure(support::stub_builder(Token::new(TOKEN)).await).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(zocalo_server::serve_with(
        listener,
        router,
        std::future::pending(),
        options,
    ));
    addr
}

async fn start_default() -> SocketAddr {
    start(|b| b, ServeOptions::default()).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A client whose connections come from another loopback address (Linux routes all of
/// 127/8 to lo), so the server sees another client.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{status}: {ct}");
    (status, r.json().await.unwrap())
}

// --- authentication -------------------------------------------------------------------

#[tokio::test]
async fn only_the_exact_token_is_accepted() {
    let addr = start_default().await;
    let c = client();
    let url = format!("http://{addr}/v1/models");
    let ok = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let last = TOKEN.len() - 1;
    let flipped = format!(
        "{}{}",
        &TOKEN[..last],
        if TOKEN.ends_with('f') { 'e' } else { 'f' }
    );
    for wrong in [
        &TOKEN[..last],       // a prefix
        &format!("{TOKEN}0"), // longer
        flipped.as_str(),     // same length, last byte differs
        "x",                  // nothing alike
    ] {
        let r = c.get(&url).bearer_auth(wrong).send().await.unwrap();
        let (status, body) = error_of(r).await;
        assert_eq!(status, 401, "{wrong:?} was accepted");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
}

#[tokio::test]
async fn a_token_in_the_url_is_refused_even_when_right() {
    let addr = start_default().await;
    let c = client();
    for param in ["token", "access_token", "ACCESS_TOKEN", "api_key"] {
        let url = format!("http://{addr}/api/conversations?limit=1&{param}={TOKEN}");
        // Alone, and next to the right header: the token has leaked into a URL either way.
        for with_header in [false, true] {
            let mut req = c.get(&url);
            if with_header {
                req = req.bearer_auth(TOKEN);
            }
            let (status, body) = error_of(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{param} with_header={with_header}");
            assert_eq!(body["error"]["code"], "token_in_query");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains("Authorization"), "{msg}");
        }
    }
    // Another query parameter is fine.
    let r = c
        .get(format!("http://{addr}/api/conversations?limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client() {
    let addr = start(
        |b| {
            b.auth_limits(AuthLimits {
                max_failures: 10,
                window: Duration::from_secs(60),
                max_clients: 100,
            })
        },
        ServeOptions::default(),
    )
    .await;
    let c = client();
    let url = format!("http://{addr}/api/conversations");
    for i in 0..10 {
        let r = c.get(&url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401, "failure {i}");
    }
    // The 11th failure in the minute, with or without a token: 429 with Retry-After.
    for req in [c.get(&url).bearer_auth("wrong"), c.get(&url)] {
        let r = req.send().await.unwrap();
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "retry-after {retry}");
        let (status, body) = error_of(r).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], "too_many_auth_failures");
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }
    // The right token still works from the same client...
    let r = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // ...public routes are not limited...
    let r = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ...and another client has its own count.
    let other = client_from("127.0.0.2");
    let r = other.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_failure_window_ends() {
    let addr = start(
        |b| {
            b.auth_limits(AuthLimits {
                max_failures: 2,
                window: Duration::from_millis(800),
                max_clients: 100,
            })
        },
        ServeOptions::default(),
    )
    .await;
    let c = client();
    let url = format!("http://{addr}/v1/models");
    let statuses = async || {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(c.get(&url).send().await.unwrap().status().as_u16());
        }
        out
    };
    assert_eq!(statuses().await, [401, 401, 429]);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(statuses().await, [401, 401, 429]);
}

// --- browsers: CORS and cookies ---------------------------------------------------------

/// Every kind of answer the server gives: public, UI, authenticated, refused, not found.
async fn sample_responses(addr: SocketAddr, origin: &str) -> Vec<(String, reqwest::Response)> {
    let c = client();
    let mut out = Vec::new();
    for (path, auth) in [
        ("/", false),
        ("/healthz", false),
        ("/openapi.json", false),
        ("/v1/models", true),
        ("/v1/models", false),
        ("/api/conversations", true),
        ("/api/nope", true),
        ("/nope", false),
    ] {
        let mut req = c
            .get(format!("http://{addr}{path}"))
            .header("origin", origin);
        if auth {
            req = req.bearer_auth(TOKEN);
        }
        out.push((format!("GET {path} auth={auth}"), req.send().await.unwrap()));
    }
    let r = c
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("origin", origin)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"model": "stub/stub-1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    out.push(("POST /v1/chat/completions".into(), r));
    let preflight = c
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/v1/chat/completions"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    out.push(("OPTIONS /v1/chat/completions".into(), preflight));
    out
}

#[tokio::test]
async fn no_cors_headers_unless_configured() {
    let addr = start_default().await;
    let responses = sample_responses(addr, "https://evil.example").await;
    let statuses: Vec<u16> = responses.iter().map(|(_, r)| r.status().as_u16()).collect();
    // The sample covers successes and refusals alike.
    assert!(statuses.contains(&200) && statuses.contains(&401) && statuses.contains(&404));
    for (what, r) in responses {
        for (name, _) in r.headers() {
            assert!(
                !name.as_str().starts_with("access-control-"),
                "{what}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn configured_origins_get_cors_headers_and_others_do_not() {
    let addr = start(
        |b| b.cors_origins(vec!["https://app.example".into()]),
        ServeOptions::default(),
    )
    .await;
    for (what, r) in sample_responses(addr, "https://app.example").await {
        assert_eq!(
            r.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some("https://app.example"),
            "{what}"
        );
        if what.starts_with("OPTIONS") {
            assert_eq!(r.status(), 204);
            let allowed = r.headers()["access-control-allow-headers"]
                .to_str()
                .unwrap();
            assert!(allowed.contains("authorization"), "{allowed}");
        }
    }
    for (what, r) in sample_responses(addr, "https://evil.example").await {
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn no_response_sets_a_cookie() {
    let addr = start_default().await;
    let mut seen = 0;
    for (what, r) in sample_responses(addr, "https://app.example").await {
        assert!(!r.headers().contains_key("set-cookie"), "{what}");
        seen += 1;
    }
    assert!(seen >= 10);
}

// --- limits ---------------------------------------------------------------------------

#[tokio::test]
async fn bodies_past_the_limit_get_a_json_413() {
    let addr = start_default().await;
    let c = client();
    let url = format!("http://{addr}/v1/chat/completions");
    let big = 3 * 1024 * 1024;
    // Declared length.
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; big])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "body_too_large");
    // Chunked, no length declared: cut off once it passes the limit.
    let chunks = stream::iter((0..big / 65536).map(|_| Ok::<_, std::io::Error>(vec![b' '; 65536])));
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 413, "{body}");
    // A body under the limit is read as usual.
    let mut msg = String::from("x");
    msg.push_str(&"y".repeat(1024 * 1024));
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"model": "stub/stub-1", "messages": [{"role": "user", "content": msg}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads until the peer closes (Ok(true)) or `limit` passes (Ok(false)).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_slow_loris_is_cut_off_and_blocks_nobody() {
    let addr = start(
        |b| b,
        ServeOptions {
            header_timeout: Duration::from_secs(1),
        },
    )
    .await;
    // One client trickles a request head, a byte every 50 ms, for longer than the timeout.
    let mut loris = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let started = Instant::now();
        for b in head {
            if loris.write_all(&[*b]).await.is_err() {
                return (started.elapsed(), loris);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (started.elapsed(), loris)
    });
    // Another one that connects and sends nothing.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Meanwhile others are served at once.
    let c = client();
    for _ in 0..5 {
        let t = Instant::now();
        let r = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "the idle connection stayed open"
    );
    let (_, mut loris) = trickle.await.unwrap();
    assert!(
        closed_within(&mut loris, Duration::from_secs(3)).await,
        "the slow client's connection stayed open"
    );
}

fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    // None is "unlimited".
    if now.current.is_some_and(|soft| soft < want) {
        let current = now.maximum.map_or(want, |hard| want.min(hard));
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum: now.maximum,
            },
        )
        .unwrap();
    }
}

/// Sends a request head on a new connection and reads the response head.
async fn open_stream(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("no response head within 30 s")
            .unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_and_streams_leave_healthz_answering() {
    const IDLE: usize = 2000;
    const STREAMS: usize = 1000;
    // Each connection is two descriptors in this process (client and server end).
    raise_fd_limit(2 * (IDLE + STREAMS) as u64 + 1000);
    let addr = start(
        |b| b.max_streams(STREAMS),
        ServeOptions {
            header_timeout: Duration::from_secs(120),
        },
    )
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // The event stream polls the database at once, then every minute.
    let path = "/api/events?interval_ms=60000";
    let mut streams = Vec::with_capacity(STREAMS);
    for chunk in 0..STREAMS / 100 {
        let opened = futures::future::join_all((0..100).map(|_| open_stream(addr, path))).await;
        for (s, head) in opened {
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "stream in chunk {chunk}: {head}"
            );
            assert!(head.contains("text/event-stream"), "{head}");
            streams.push(s);
        }
    }
    // One more is refused, with a way out.
    let (_, head) = open_stream(addr, path).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    // The server still answers, quickly.
    let c = client();
    for _ in 0..3 {
        let t = Instant::now();
        let r = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // A stream that ends gives its place back.
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, head) = open_stream(addr, path).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place was not given back: {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(idle);
}

#[tokio::test]
async fn healthz_counts_the_streams_open() {
    let addr = start(|b| b.max_streams(3), ServeOptions::default()).await;
    let c = client();
    let health = async || -> Value {
        c.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let h = health().await;
    assert_eq!(
        (h["streams_open"].as_u64(), h["streams_max"].as_u64()),
        (Some(0), Some(3)),
        "{h}"
    );
    let path = "/api/events?interval_ms=60000";
    let mut open = Vec::new();
    for n in 1..=3 {
        let (s, head) = open_stream(addr, path).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(s);
        assert_eq!(health().await["streams_open"], n, "after opening {n}");
    }
    // A refused stream is not counted.
    let (_, head) = open_stream(addr, path).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(health().await["streams_open"], 3);
    // Each client that goes gives its place back (the server sees the connection close).
    for left in (0..3).rev() {
        drop(open.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = health().await["streams_open"].as_u64().unwrap();
            if now == left {
                break;
            }
            assert!(Instant::now() < deadline, "still {now} open, not {left}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
