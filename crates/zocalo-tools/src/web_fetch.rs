//! `web_fetch`: GET an http(s) URL and return its text, HTML turned into Markdown.
//!
//! Every hop (the first request and each redirect, followed here, never by the HTTP client)
//! goes through the same steps:
//! 1. only `http` and `https` URLs;
//! 2. the host name is resolved here, and every address it resolves to must pass the
//!    [`AddressPolicy`] (an IP-literal host is checked as is, before any connection);
//! 3. the request goes out on a client that may connect only to those checked addresses
//!    (reqwest's `resolve_to_addrs` for the name), so a DNS answer that changes between the
//!    check and the connection (DNS rebinding) is never used, and the peer address of the
//!    response is checked once more.
//!
//! System proxy variables are ignored: a proxy would resolve names itself, out of the guard's
//! sight. Time (whole fetch), redirects and bytes read are capped, and so is the text returned.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use url::{Host, Url};
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::args::{model_err, parse, short, spec_for};
use crate::files::cut;
use crate::net_guard::AddressPolicy;

/// Limits and policy of `web_fetch`.
#[derive(Clone, Debug)]
pub struct WebFetchConfig {
    pub policy: AddressPolicy,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// The whole fetch, redirects and body included.
    pub timeout: Duration,
    /// Bytes of the body read at most; the rest is not downloaded.
    pub max_body_bytes: usize,
    /// Bytes of text (after HTML conversion) returned at most.
    pub max_text_bytes: usize,
    pub user_agent: String,
}

impl Default for WebFetchConfig {
    fn default() -> Self {
        Self {
            policy: AddressPolicy::public_only(),
            max_redirects: 5,
            timeout: Duration::from_secs(20),
            max_body_bytes: 2 * 1024 * 1024,
            max_text_bytes: 128 * 1024,
            user_agent: concat!("zocalo/", env!("CARGO_PKG_VERSION"), " (web_fetch)").into(),
        }
    }
}

/// Name resolution for `web_fetch`; the system resolver unless a test gives another.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Fetch a web page as text.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The http:// or https:// URL to GET.
    pub url: String,
}

/// The `web_fetch` tool.
pub struct WebFetch {
    config: WebFetchConfig,
    resolver: Arc<dyn Resolver>,
}

/// A fetched page, before it is rendered for the model.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The URL finally answered (after redirects).
    pub url: Url,
    pub redirects: usize,
    pub status: reqwest::StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The body was longer than the cap and was cut.
    pub body_truncated: bool,
}

impl WebFetch {
    pub fn new(config: WebFetchConfig) -> Self {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// With names resolved by `resolver` instead of the system's (tests use this).
    pub fn with_resolver(config: WebFetchConfig, resolver: Arc<dyn Resolver>) -> Self {
        Self { config, resolver }
    }

    /// GET `url` (following redirects under the policy) and read its body up to the cap.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, ToolError> {
        let url = Url::parse(url.trim())
            .map_err(|e| model_err(format!("invalid URL {}: {e}", short(url))))?;
        let limit = self.config.timeout;
        tokio::time::timeout(limit, self.fetch_inner(url.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(model_err(format!(
                    "fetching {url} timed out after {} s",
                    limit.as_secs()
                )))
            })
    }

    async fn fetch_inner(&self, mut url: Url) -> Result<Fetched, ToolError> {
        let started = Instant::now();
        let mut redirects = 0usize;
        loop {
            let addrs = self.vetted_addrs(&url).await?;
            let remaining = self.config.timeout.saturating_sub(started.elapsed());
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(&self.config.user_agent)
                .timeout(remaining.max(Duration::from_millis(1)))
                .connect_timeout(
                    remaining.clamp(Duration::from_millis(1), Duration::from_secs(10)),
                );
            if let Some(Host::Domain(name)) = url.host() {
                builder = builder.resolve_to_addrs(name, &addrs);
            }
            let client = builder.build().map_err(|e| {
                ToolError::Fatal(format!("web_fetch: cannot build the HTTP client: {e}"))
            })?;
            let mut resp = client
                .get(url.clone())
                .header(
                    ACCEPT,
                    HeaderValue::from_static(
                        "text/html,application/xhtml+xml,text/plain;q=0.9,text/*;q=0.8,application/json;q=0.8,*/*;q=0.1",
                    ),
                )
                .send()
                .await
                .map_err(|e| self.http_err("fetching", &url, &e))?;
            // Belt and braces: the peer must be one of the addresses checked.
            if let Some(peer) = resp.remote_addr() {
                if !addrs.iter().any(|a| a.ip() == peer.ip()) {
                    return Err(ToolError::Fatal(format!(
                        "web_fetch: connected to {peer}, which is not an address that was checked for {url}"
                    )));
                }
            }
            let status = resp.status();
            if status.is_redirection() {
                if let Some(location) = resp.headers().get(LOCATION) {
                    let location = location.to_str().map_err(|_| {
                        model_err(format!(
                            "{url} redirected to a location that is not valid text"
                        ))
                    })?;
                    let next = url.join(location).map_err(|e| {
                        model_err(format!(
                            "{url} redirected to an invalid URL {}: {e}",
                            short(location)
                        ))
                    })?;
                    if redirects >= self.config.max_redirects {
                        return Err(model_err(format!(
                            "too many redirects: more than {} (the last one, from {url}, went to {next})",
                            self.config.max_redirects
                        )));
                    }
                    redirects += 1;
                    url = next;
                    continue;
                }
            }
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            let mut body_truncated = false;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| self.http_err("reading", &url, &e))?
            {
                let room = self.config.max_body_bytes - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    body_truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url,
                redirects,
                status,
                content_type,
                body,
                body_truncated,
            });
        }
    }

    fn http_err(&self, doing: &str, url: &Url, e: &reqwest::Error) -> ToolError {
        if e.is_timeout() {
            model_err(format!(
                "{doing} {url} timed out after {} s",
                self.config.timeout.as_secs()
            ))
        } else {
            model_err(format!("{doing} {url} failed: {}", error_chain(e)))
        }
    }

    /// The addresses `url` may be fetched from: all its host's addresses, each allowed by the
    /// policy. Refuses the URL if one is not (a name that also resolves to an internal
    /// address is not to be trusted).
    async fn vetted_addrs(&self, url: &Url) -> Result<Vec<SocketAddr>, ToolError> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(model_err(format!(
                    "refusing {}: web_fetch only fetches http and https URLs, not {other}:",
                    short(url.as_str())
                )))
            }
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| model_err(format!("{url} has no port")))?;
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(Host::Domain(name)) => {
                let found = self.resolver.lookup(name, port).await.map_err(|e| {
                    model_err(format!("cannot resolve the host {name} of {url}: {e}"))
                })?;
                if found.is_empty() {
                    return Err(model_err(format!(
                        "the host {name} of {url} has no address"
                    )));
                }
                found
            }
            None => return Err(model_err(format!("{url} has no host"))),
        };
        for addr in &addrs {
            if let Some(why) = self.config.policy.refusal(*addr) {
                return Err(model_err(format!(
                    "refusing to fetch {url}: {why}; web_fetch only connects to public addresses \
                     (the owner can set [tools.web_fetch] allow_private = true)"
                )));
            }
        }
        Ok(addrs)
    }

    /// The text the model sees for a fetched page.
    pub fn render(&self, page: &Fetched) -> Result<String, ToolError> {
        render(&self.config, page)
    }
}

/// HTML to Markdown, without what a reader does not see (scripts, styles, the head).
fn converter() -> htmd::HtmlToMarkdown {
    htmd::HtmlToMarkdown::builder()
        .skip_tags(vec![
            "head", "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object",
            "embed",
        ])
        .build()
}

fn render(config: &WebFetchConfig, page: &Fetched) -> Result<String, ToolError> {
    let mime = page
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let kind = classify(&mime, &page.body);
    let text = match kind {
        Kind::Html => {
            let html = String::from_utf8_lossy(&page.body);
            let conv = converter();
            let title = title_of(&html).and_then(|t| conv.convert(&t).ok());
            let md = conv
                .convert(&html)
                .map_err(|e| model_err(format!("cannot convert the HTML of {}: {e}", page.url)))?;
            match title.filter(|t| !t.trim().is_empty()) {
                Some(t) => format!("Title: {}\n\n{}", t.trim(), md.trim()),
                None => md.trim().to_owned(),
            }
        }
        Kind::Text => String::from_utf8_lossy(&page.body).into_owned(),
        Kind::Binary => {
            return Err(model_err(format!(
                "{} is binary content ({}, {}{} bytes), not text; web_fetch only returns text",
                page.url,
                if mime.is_empty() {
                    "no content type"
                } else {
                    &mime
                },
                page.body.len(),
                if page.body_truncated { "+" } else { "" }
            )))
        }
    };
    let mut out = format!("URL: {}", page.url);
    if page.redirects > 0 {
        out.push_str(&format!(
            " (after {} redirect{})",
            page.redirects,
            if page.redirects == 1 { "" } else { "s" }
        ));
    }
    out.push_str(&format!("\nStatus: {}\n", page.status));
    if !mime.is_empty() {
        out.push_str(&format!("Content-Type: {mime}\n"));
    }
    if page.body_truncated {
        out.push_str(&format!(
            "Note: the page is larger than {} KiB; only its beginning was read.\n",
            config.max_body_bytes / 1024
        ));
    }
    out.push('\n');
    let kept = cut(&text, config.max_text_bytes);
    out.push_str(kept);
    if kept.len() < text.len() {
        out.push_str(&format!(
            "\n[... text truncated: the first {} of {} bytes are shown ...]",
            kept.len(),
            text.len()
        ));
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    Binary,
}

/// What to do with a body of content type `mime` (lowercase, no parameters).
fn classify(mime: &str, body: &[u8]) -> Kind {
    match mime {
        "text/html" | "application/xhtml+xml" => return Kind::Html,
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/ecmascript"
        | "application/x-ndjson"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml"
        | "application/x-sh"
        | "application/sql"
        | "application/graphql"
        | "application/x-www-form-urlencoded" => return Kind::Text,
        m if m.starts_with("text/") || m.ends_with("+json") || m.ends_with("+xml") => {
            return Kind::Text
        }
        "" | "application/octet-stream" | "binary/octet-stream" => {}
        _ => return Kind::Binary,
    }
    // No useful type: look at the bytes.
    let head = &body[..body.len().min(8192)];
    let text_like = !head.contains(&0)
        && match std::str::from_utf8(head) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
    if !text_like {
        return Kind::Binary;
    }
    let start = String::from_utf8_lossy(&head[..head.len().min(512)])
        .trim_start()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        Kind::Html
    } else {
        Kind::Text
    }
}

/// The raw content of the first `<title>` in `html`.
fn title_of(html: &str) -> Option<String> {
    let head = cut(html, 64 * 1024);
    let lower = head.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(head[start..end].to_owned())
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[async_trait]
impl Tool for WebFetch {
    fn spec(&self) -> ToolSpec {
        let c = &self.config;
        spec_for::<FetchArgs>(
            "web_fetch",
            &format!(
                "Fetch a web page or text file by URL (http or https, GET) and return its \
                 text; HTML pages come back as Markdown. {}At most {} redirects, {} s and {} \
                 KiB.",
                if c.policy.allow_private {
                    ""
                } else {
                    "Public internet addresses only. "
                },
                c.max_redirects,
                c.timeout.as_secs(),
                c.max_body_bytes / 1024
            ),
        )
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: FetchArgs = parse("web_fetch", arguments)?;
        let page = self.fetch(&args.url).await?;
        // HTML conversion is CPU work on up to a few MiB: keep it off the async threads.
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || render(&config, &page))
            .await
            .map_err(|e| ToolError::Fatal(format!("web_fetch task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classify_types() {
        assert_eq!(classify("text/html", b""), Kind::Html);
        assert_eq!(classify("text/plain", b""), Kind::Text);
        assert_eq!(classify("application/ld+json", b""), Kind::Text);
        assert_eq!(classify("image/png", b"abc"), Kind::Binary);
        assert_eq!(classify("", b"\x89PNG\r\n\x1a\n\0\0"), Kind::Binary);
        assert_eq!(classify("", b"  <!DOCTYPE html><p>x"), Kind::Html);
        assert_eq!(
            classify("application/octet-stream", b"plain words"),
            Kind::Text
        );
    }

    #[test]
    fn titles() {
        assert_eq!(
            title_of("<html><HEAD><Title lang=en>A &amp; B</title>").as_deref(),
            Some("A &amp; B")
        );
        assert_eq!(title_of("<p>none</p>"), None);
    }
}
