//! The HTTP part both providers share: one POST that should answer with an event stream,
//! timeouts, and the mapping of failures (transport errors, HTTP statuses and the vendors'
//! JSON error bodies) to [`LlmError`], and the key header every caller sends
//! ([`key_header`]: marked sensitive, and its error names the endpoint, never the key).
//! Provider messages are scrubbed of the key too, in case a server echoes it back.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;

use crate::registry::Endpoint;
use crate::retry::with_retry;
use crate::LlmError;

/// How much of an error body we read: enough for any JSON error, not a whole HTML page.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How much of a JSON answer to a GET we read.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;
/// How much of a non-JSON error body we show.
const MAX_SHOWN: usize = 300;

/// The endpoint's key as a header value (`prefix` + key, marked sensitive so it is never
/// logged), or None without a key. The error names the endpoint, never the key.
pub(crate) fn key_header(endpoint: &Endpoint, prefix: &str) -> Result<Option<HeaderValue>, String> {
    let Some(key) = &endpoint.api_key else {
        return Ok(None);
    };
    let mut v = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
        format!(
            "the API key for {} contains characters that cannot go in an HTTP header",
            endpoint.name
        )
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// A client configured for `endpoint`: connect timeout, no overall timeout (streams are long;
/// silence is bounded per read by the idle timeout instead).
pub(crate) fn client(endpoint: &Endpoint) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(endpoint.connect_timeout)
        .user_agent(concat!("zocalo/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// POST `body` to `url` with `headers`, retrying per the endpoint's policy until a 2xx
/// response whose headers have arrived. The body is left unread for the caller to stream.
pub(crate) async fn post_for_stream(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    url: &str,
    headers: HeaderMap,
    body: &serde_json::Value,
) -> Result<reqwest::Response, LlmError> {
    let body = Bytes::from(
        serde_json::to_vec(body)
            .map_err(|e| LlmError::Other(format!("cannot encode request: {e}")))?,
    );
    with_retry(&endpoint.retry, &endpoint.name, || {
        post_once(client, endpoint, url, headers.clone(), body.clone())
    })
    .await
}

/// POST `body` to `url` and read a JSON answer (embeddings), retrying per the endpoint's
/// policy (429 after its Retry-After, 5xx, connection failures) until a 2xx; a 2xx whose
/// body is not JSON is a [`LlmError::Protocol`], not retried.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    url: &str,
    headers: HeaderMap,
    body: &serde_json::Value,
) -> Result<serde_json::Value, LlmError> {
    let body = Bytes::from(
        serde_json::to_vec(body)
            .map_err(|e| LlmError::Other(format!("cannot encode request: {e}")))?,
    );
    let response = with_retry(&endpoint.retry, &endpoint.name, || {
        post_accepting(
            client,
            endpoint,
            url,
            headers.clone(),
            body.clone(),
            "application/json",
        )
    })
    .await?;
    let text = read_body_capped(response, endpoint.idle_timeout, MAX_JSON_BODY).await;
    serde_json::from_str(&text).map_err(|e| LlmError::Protocol {
        provider: endpoint.name.clone(),
        message: format!("POST {url} did not answer JSON: {e}"),
    })
}

async fn post_once(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<reqwest::Response, LlmError> {
    post_accepting(client, endpoint, url, headers, body, "text/event-stream").await
}

async fn post_accepting(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    url: &str,
    mut headers: HeaderMap,
    body: Bytes,
    accept: &'static str,
) -> Result<reqwest::Response, LlmError> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static("accept"),
        HeaderValue::from_static(accept),
    );
    let send = client.post(url).headers(headers).body(body).send();
    let response = match tokio::time::timeout(endpoint.idle_timeout, send).await {
        Err(_) => {
            return Err(LlmError::Timeout {
                provider: endpoint.name.clone(),
                after: endpoint.idle_timeout,
            })
        }
        Ok(Err(e)) => return Err(transport_error(endpoint, url, &e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let text = read_error_body(response, endpoint.idle_timeout).await;
    Err(status_error(endpoint, status, &headers, &text))
}

/// One GET that should answer with JSON (model lists, key checks): no retries, the idle
/// timeout bounds the whole exchange, failures mapped like a model call's.
pub(crate) async fn get_json(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    url: &str,
    headers: HeaderMap,
) -> Result<serde_json::Value, LlmError> {
    let send = client.get(url).headers(headers).send();
    let response = match tokio::time::timeout(endpoint.idle_timeout, send).await {
        Err(_) => {
            return Err(LlmError::Timeout {
                provider: endpoint.name.clone(),
                after: endpoint.idle_timeout,
            })
        }
        Ok(Err(e)) => return Err(transport_error(endpoint, url, &e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let headers = response.headers().clone();
    // Model lists run to hundreds of kilobytes (OpenRouter); error bodies stay small.
    let text = read_body_capped(response, endpoint.idle_timeout, MAX_JSON_BODY).await;
    if !status.is_success() {
        return Err(status_error(endpoint, status, &headers, &text));
    }
    serde_json::from_str(&text).map_err(|e| LlmError::Protocol {
        provider: endpoint.name.clone(),
        message: format!("GET {url} did not answer JSON: {e}"),
    })
}

/// Map a reqwest failure before any response arrived.
fn transport_error(endpoint: &Endpoint, url: &str, e: &reqwest::Error) -> LlmError {
    if e.is_timeout() {
        return LlmError::Timeout {
            provider: endpoint.name.clone(),
            after: endpoint.connect_timeout,
        };
    }
    // reqwest's own text is generic ("error sending request for url"); the root cause
    // ("Connection refused", "dns error: ...") is what helps the user.
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    LlmError::Connect {
        provider: endpoint.name.clone(),
        url: url.to_owned(),
        message: redact(&message, endpoint),
    }
}

async fn read_error_body(response: reqwest::Response, idle: Duration) -> String {
    read_body_capped(response, idle, MAX_ERROR_BODY).await
}

async fn read_body_capped(response: reqwest::Response, idle: Duration, cap: usize) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < cap {
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(cap);
    String::from_utf8_lossy(&body).into_owned()
}

/// Map a non-2xx status and its body to an error.
pub(crate) fn status_error(
    endpoint: &Endpoint,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> LlmError {
    let provider = endpoint.name.clone();
    let message = redact(&error_message(body, status), endpoint);
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Auth {
            provider,
            status: code,
            message,
            key_env: if endpoint.key_env.is_empty() {
                "its key variable".to_owned()
            } else {
                endpoint.key_env.clone()
            },
        },
        429 => LlmError::RateLimited {
            provider,
            retry_after: retry_after(headers, SystemTime::now()),
            message,
        },
        // 529 is Anthropic's "overloaded".
        500..=599 => LlmError::Server {
            provider,
            status: code,
            message,
        },
        _ => LlmError::BadRequest {
            provider,
            status: code,
            message,
        },
    }
}

/// The human part of a vendor's error body: `error.message` (OpenAI, Anthropic, most
/// compatible servers), `message`, or an `error` string; else the start of the raw text;
/// else the status's reason phrase.
pub(crate) fn error_message(body: &str, status: StatusCode) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = json_error_message(&v) {
            return m;
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_owned();
    }
    let mut shown: String = trimmed.chars().take(MAX_SHOWN).collect();
    if shown.len() < trimmed.len() {
        shown.push('…');
    }
    shown
}

/// `error.message`, `message` or an `error` string in a JSON value, if any.
pub(crate) fn json_error_message(v: &serde_json::Value) -> Option<String> {
    let candidates = [
        v.pointer("/error/message"),
        v.get("message"),
        v.get("error").filter(|e| e.is_string()),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|m| m.as_str())
        .map(str::to_owned)
}

/// Replace the endpoint's key wherever it appears in `text`.
pub(crate) fn redact(text: &str, endpoint: &Endpoint) -> String {
    match &endpoint.api_key {
        Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "[redacted]"),
        _ => text.to_owned(),
    }
}

/// The wait a 429 asks for: `retry-after-ms` (OpenAI), else `Retry-After` as seconds or as
/// an HTTP date (RFC 9110), relative to `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date format servers
/// may send (RFC 9110 §5.6.7).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (*h * 3600 + *m * 60 + *sec) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use zocalo_core::Secret;

    fn endpoint() -> Endpoint {
        Endpoint::new(
            "openai",
            "http://127.0.0.1:9/v1",
            Some(Secret::new("sk-test-SECRET-123")),
            "OPENAI_API_KEY",
            "m",
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_seconds_ms_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 08:49:37
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1")]), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:40 GMT")]),
                now
            ),
            Some(Duration::from_secs(3))
        );
        // A date in the past means "now".
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn http_date_matches_known_instants() {
        // 784111777 is the RFC's own example instant.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 12:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_582_977_600))
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let ep = endpoint();
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-test-SECRET-123","type":"invalid_request_error"}}"#;
        let e = status_error(&ep, StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
        let text = e.to_string();
        assert!(matches!(e, LlmError::Auth { status: 401, .. }), "{e:?}");
        assert!(
            text.contains("Incorrect API key provided") && !text.contains("SECRET"),
            "{text}"
        );
        assert!(!format!("{e:?}").contains("SECRET"));

        let e = status_error(
            &ep,
            StatusCode::from_u16(529).unwrap(),
            &HeaderMap::new(),
            "",
        );
        assert!(matches!(e, LlmError::Server { status: 529, .. }), "{e:?}");
        let e = status_error(
            &ep,
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
        );
        assert!(
            matches!(&e, LlmError::BadRequest { status: 400, message, .. } if message == "max_tokens: Field required"),
            "{e:?}"
        );
        let e = status_error(
            &ep,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2")]),
            "",
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn messages_from_various_bodies() {
        let s = StatusCode::NOT_FOUND;
        assert_eq!(error_message(r#"{"message":"nope"}"#, s), "nope");
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#, s),
            "model not found"
        );
        assert_eq!(error_message("", s), "Not Found");
        let long = "x".repeat(1000);
        assert_eq!(error_message(&long, s).chars().count(), MAX_SHOWN + 1);
    }
}
