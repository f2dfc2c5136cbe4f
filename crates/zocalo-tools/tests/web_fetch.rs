//! web_fetch against real HTTP servers on loopback: HTML comes back as Markdown; the address
//! guard refuses loopback, private, link-local and look-alike hosts before connecting, on the
//! first request and on every redirect; names are pinned to the addresses checked; limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use zocalo_core::{Tool, ToolError};
use zocalo_tools::web_fetch::Resolver;
use zocalo_tools::{AddressPolicy, WebFetch, WebFetchConfig};

const PAGE: &str = r#"<!doctype html>
<html><head><title>Test &amp; Page</title>
<style>body { color: red; }</style>
<script>alert("tracking");</script></head>
<body>
<h1>Hello reader</h1>
<p>Some <b>paragraph</b> words with a <a href="/next">link</a>.</p>
<ul><li>first item</li><li>second item</li></ul>
<noscript>enable javascript</noscript>
</body></html>"#;

/// A server on 127.0.0.1 that counts the requests it gets.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Server {
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", get(|| async { html(PAGE) }))
            .route("/page", get(|| async { html(PAGE) }))
            .route(
                "/text",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "just text\n") }),
            )
            .route(
                "/json",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"a":1}"#) }),
            )
            .route(
                "/png",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "image/png")],
                        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
                    )
                }),
            )
            .route(
                "/big",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/plain")],
                        "0123456789abcdef".repeat(3 * 1024 * 1024 / 16),
                    )
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/to/{*target}", get(redirect_to))
            .route(
                "/loop/{n}",
                get(|Path(n): Path<u32>| async move { redirect(&format!("/loop/{}", n + 1)) }),
            )
            .route(
                "/chain/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        redirect("/page")
                    } else {
                        redirect(&format!("/chain/{}", n - 1))
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                hits.clone(),
                |State(hits): State<Arc<AtomicUsize>>,
                 req: axum::extract::Request,
                 next: axum::middleware::Next| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                },
            ));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

/// `/to/http://host:port/path` redirects to that URL.
async fn redirect_to(Path(target): Path<String>) -> Response {
    redirect(&target)
}

fn fetcher(policy: AddressPolicy) -> WebFetch {
    WebFetch::new(WebFetchConfig {
        policy,
        ..WebFetchConfig::default()
    })
}

async fn fetch_ok(tool: &WebFetch, url: &str) -> String {
    match tool.call(json!({ "url": url })).await {
        Ok(s) => s,
        Err(e) => panic!("{url}: {e:?}"),
    }
}

async fn fetch_err(tool: &WebFetch, url: &str) -> String {
    match tool.call(json!({ "url": url })).await {
        Err(ToolError::Recoverable(m)) => m,
        other => panic!("{url}: expected a recoverable error, got {other:?}"),
    }
}

#[tokio::test]
async fn html_comes_back_as_markdown() {
    let s = Server::start().await;
    let tool = fetcher(AddressPolicy::allow_all());
    let out = fetch_ok(&tool, &s.url("/page")).await;
    assert!(
        out.starts_with(&format!("URL: {}\nStatus: 200 OK\n", s.url("/page"))),
        "{out}"
    );
    assert!(out.contains("Content-Type: text/html\n"), "{out}");
    assert!(out.contains("Title: Test & Page"), "{out}");
    assert!(out.contains("# Hello reader"), "{out}");
    assert!(out.contains("**paragraph** words"), "{out}");
    assert!(out.contains("[link](/next)"), "{out}");
    assert!(
        out.contains("first item") && out.contains("second item"),
        "{out}"
    );
    for gone in ["<", "alert", "color: red", "tracking", "enable javascript"] {
        assert!(!out.contains(gone), "{gone:?} left in: {out}");
    }

    let out = fetch_ok(&tool, &s.url("/text")).await;
    assert!(out.ends_with("\n\njust text\n"), "{out}");
    let out = fetch_ok(&tool, &s.url("/json")).await;
    assert!(out.ends_with(r#"{"a":1}"#), "{out}");
    let e = fetch_err(&tool, &s.url("/png")).await;
    assert!(e.contains("binary") && e.contains("image/png"), "{e}");
    let out = fetch_ok(&tool, &s.url("/missing")).await;
    assert!(out.contains("Status: 404 Not Found"), "{out}");
}

#[tokio::test]
async fn internal_addresses_are_refused_before_connecting() {
    let s = Server::start().await;
    let port = s.addr.port();
    let tool = fetcher(AddressPolicy::public_only());
    for (url, why) in [
        (format!("http://127.0.0.1:{port}/"), "loopback"),
        (format!("http://localhost:{port}/"), "loopback"),
        (format!("http://[::1]:{port}/"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), "IPv6 form"),
        (format!("http://0x7f000001:{port}/"), "loopback"),
        (format!("http://2130706433:{port}/"), "loopback"),
        (format!("http://127.1:{port}/"), "loopback"),
        (format!("http://0.0.0.0:{port}/"), "unspecified"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "link-local",
        ),
        ("http://10.0.0.1/".to_owned(), "private"),
        ("http://192.168.1.1/".to_owned(), "private"),
        ("http://100.64.0.1/".to_owned(), "carrier-grade NAT"),
        ("http://[fd00::1]/".to_owned(), "unique local"),
        ("http://[fe80::1]/".to_owned(), "link-local"),
    ] {
        let started = Instant::now();
        let e = fetch_err(&tool, &url).await;
        assert!(
            e.contains("refusing to fetch") && e.contains(why),
            "{url}: {e}"
        );
        assert!(e.contains("allow_private"), "{url}: {e}");
        // Refused without trying: no connection timeout was waited for.
        assert!(started.elapsed() < Duration::from_secs(2), "{url}");
    }
    assert_eq!(s.hits(), 0, "the guard let a request through");
}

#[test]
fn the_url_crate_normalises_numeric_hosts() {
    for odd in [
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://0177.0.0.1/",
    ] {
        let u = url::Url::parse(odd).unwrap();
        assert_eq!(u.host_str(), Some("127.0.0.1"), "{odd}");
        assert!(matches!(u.host(), Some(url::Host::Ipv4(_))), "{odd}");
    }
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let tool = fetcher(AddressPolicy::allow_all());
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
    ] {
        let e = fetch_err(&tool, url).await;
        assert!(e.contains("only fetches http and https"), "{url}: {e}");
    }
    let e = fetch_err(&tool, "not a url").await;
    assert!(e.contains("invalid URL"), "{e}");
}

#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    let public = Server::start().await;
    let internal = Server::start().await;
    // `public` stands in for a public server: exactly its address is allowed.
    let tool = fetcher(AddressPolicy {
        allow_private: false,
        also_allow: vec![public.addr],
    });
    let out = fetch_ok(&tool, &public.url("/chain/2")).await;
    assert!(
        out.contains("(after 3 redirects)") && out.contains("# Hello reader"),
        "{out}"
    );

    for target in [
        internal.url("/page"),
        format!("http://localhost:{}/page", internal.addr.port()),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let e = fetch_err(&tool, &public.url(&format!("/to/{target}"))).await;
        assert!(
            e.contains("refusing"),
            "a redirect to {target} was not refused: {e}"
        );
    }
    assert_eq!(internal.hits(), 0, "a redirect reached the internal server");
}

#[tokio::test]
async fn too_many_redirects_are_reported() {
    let s = Server::start().await;
    let tool = fetcher(AddressPolicy::allow_all());
    let e = fetch_err(&tool, &s.url("/loop/0")).await;
    assert!(e.contains("too many redirects: more than 5"), "{e}");
    assert_eq!(s.hits(), 6, "the first request and five redirects");
    let out = fetch_ok(&tool, &s.url("/chain/3")).await;
    assert!(out.contains("after 4 redirects"), "{out}");
}

#[tokio::test]
async fn size_and_time_are_capped() {
    let s = Server::start().await;
    let tool = fetcher(AddressPolicy::allow_all());
    let out = fetch_ok(&tool, &s.url("/big")).await;
    assert!(out.contains("larger than 2048 KiB"), "{}", &out[..300]);
    assert!(
        out.ends_with("[... text truncated: the first 131072 of 2097152 bytes are shown ...]"),
        "{}",
        &out[out.len() - 200..]
    );
    assert!(out.len() < 132 * 1024);

    let quick = WebFetch::new(WebFetchConfig {
        policy: AddressPolicy::allow_all(),
        timeout: Duration::from_secs(1),
        ..WebFetchConfig::default()
    });
    let started = Instant::now();
    let e = fetch_err(&quick, &s.url("/slow")).await;
    assert!(e.contains("timed out after 1 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A resolver with fixed answers.
struct Fixed(Vec<(&'static str, Vec<SocketAddr>)>);

#[async_trait]
impl Resolver for Fixed {
    async fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self.0
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

#[tokio::test]
async fn names_are_pinned_to_the_checked_addresses() {
    let s = Server::start().await;
    let policy = AddressPolicy {
        allow_private: false,
        also_allow: vec![s.addr],
    };
    let public: SocketAddr = "93.184.215.14:80".parse().unwrap();
    let resolver = Arc::new(Fixed(vec![
        ("pinned.test", vec![s.addr]),
        ("rebind.test", vec![public, "127.0.0.1:80".parse().unwrap()]),
        ("metadata.test", vec!["169.254.169.254:80".parse().unwrap()]),
    ]));
    let tool = WebFetch::with_resolver(
        WebFetchConfig {
            policy,
            ..WebFetchConfig::default()
        },
        resolver,
    );
    // `.test` names exist in no DNS: this can only succeed by connecting to the address the
    // guard checked, never by a second lookup.
    let out = fetch_ok(&tool, &format!("http://pinned.test:{}/page", s.addr.port())).await;
    assert!(out.contains("# Hello reader"), "{out}");
    assert_eq!(s.hits(), 1);

    // One internal address among the answers is enough to refuse the name.
    let e = fetch_err(&tool, "http://rebind.test/").await;
    assert!(e.contains("127.0.0.1 is a loopback address"), "{e}");
    let e = fetch_err(&tool, "http://metadata.test/latest/meta-data").await;
    assert!(e.contains("169.254.169.254 is a link-local address"), "{e}");
    let e = fetch_err(&tool, "http://unknown.test/").await;
    assert!(e.contains("cannot resolve"), "{e}");
}
