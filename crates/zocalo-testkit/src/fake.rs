//! A scripted HTTP server on loopback, for testing model providers over real HTTP.
//!
//! Tests queue [`Reply`]s; every request, whatever its method and path, is recorded and
//! answered with the next reply in order. With the queue empty the server answers 500 with a
//! JSON error, so a test that makes more calls than it scripted fails loudly (unless the test
//! set a [`FakeServer::respond_with`] function for that). It counts the requests in flight
//! ([`FakeServer::peak_in_flight`]), so tests can check a client's concurrency bound. Replies can
//! split their body into chunks at chosen byte offsets, pause between chunks, stall, or cut
//! the connection mid-body: the ways real streams arrive and break.
//!
//! The `*_sse` helpers build bodies in exactly the shape of the recorded fixtures in
//! `fixtures/` (see its README): same events, same fields, same key order.
//!
//! ```ignore
//! let server = FakeServer::start().await;
//! server.push(Reply::sse(openai_text_sse("gpt-test", &["Hel", "lo"])));
//! // ... point a provider at format!("{}/v1", server.url()) ...
//! assert_eq!(server.requests()[0].path, "/v1/chat/completions");
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

/// One request the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names lowercased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; a non-JSON body as a JSON string; no body as `null`.
    pub body: serde_json::Value,
}

/// A scripted response.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Bytes>,
    /// Wait before sending the status and headers.
    delay: Duration,
    /// Wait between body chunks.
    chunk_delay: Duration,
    /// Send this many body bytes, then break the connection.
    cut_after: Option<usize>,
    /// Send this many body bytes, then go silent without closing.
    stall_after: Option<usize>,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            chunks: Vec::new(),
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            cut_after: None,
            stall_after: None,
        }
    }

    /// 200 with `content-type: text/event-stream` and `body` as one chunk.
    pub fn sse(body: impl Into<Bytes>) -> Self {
        Self::new(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(body)
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Add a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replace the body with one chunk.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.chunks = vec![body.into()];
        self
    }

    /// Replace the body with these chunks, sent one by one.
    pub fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.chunks = chunks;
        self
    }

    /// Re-split the body into chunks at these byte offsets (any order; duplicates and
    /// offsets at or past the end are ignored). Offsets may fall inside a UTF-8 character:
    /// that is how real streams arrive.
    pub fn split_at(mut self, offsets: &[usize]) -> Self {
        let whole = self.whole_body();
        let mut cuts: Vec<usize> = offsets
            .iter()
            .copied()
            .filter(|&o| o > 0 && o < whole.len())
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::with_capacity(cuts.len() + 1);
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(whole.len())) {
            chunks.push(whole.slice(start..cut));
            start = cut;
        }
        self.chunks = chunks;
        self
    }

    /// Wait this long before answering at all (status and headers included).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Wait this long between body chunks.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Send only the first `n` body bytes, then break the connection (no terminal event, no
    /// proper end of the chunked body).
    pub fn cut_after(mut self, n: usize) -> Self {
        self.cut_after = Some(n);
        self
    }

    /// Send only the first `n` body bytes, then hang with the connection open.
    pub fn stall_after(mut self, n: usize) -> Self {
        self.stall_after = Some(n);
        self
    }

    /// The whole scripted body as one buffer.
    pub fn whole_body(&self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks[0].clone();
        }
        let mut all = Vec::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        for c in &self.chunks {
            all.extend_from_slice(c);
        }
        Bytes::from(all)
    }

    fn build_response(self) -> Response {
        let limit = match (self.cut_after, self.stall_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // What to do once `limit` bytes are out.
        enum End {
            Normal,
            Cut,
            Stall,
        }
        let end = match (self.cut_after, self.stall_after) {
            (Some(c), Some(s)) if s < c => End::Stall,
            (Some(_), _) => End::Cut,
            (None, Some(_)) => End::Stall,
            (None, None) => End::Normal,
        };
        let mut chunks = Vec::new();
        let mut sent = 0usize;
        for c in self.chunks {
            let take = match limit {
                Some(l) => c.len().min(l.saturating_sub(sent)),
                None => c.len(),
            };
            if take > 0 {
                chunks.push(c.slice(..take));
            }
            sent += take;
        }
        let delay = self.chunk_delay;
        let body: BoxStream<'static, Result<Bytes, std::io::Error>> =
            stream::iter(chunks.into_iter().enumerate())
                .then(move |(i, c)| async move {
                    if i > 0 && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok(c)
                })
                .boxed();
        let tail: BoxStream<'static, Result<Bytes, std::io::Error>> = match end {
            End::Normal => stream::empty().boxed(),
            End::Cut => stream::once(async {
                // Let the server flush the headers and the bytes before the cut, so the
                // client sees a response that breaks mid-body, not a failed request.
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "FakeServer: cut_after",
                ))
            })
            .boxed(),
            End::Stall => stream::once(async {
                std::future::pending::<()>().await;
                Ok(Bytes::new())
            })
            .boxed(),
        };
        let mut response = Response::new(Body::from_stream(body.chain(tail)));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                response.headers_mut().append(k, v);
            }
        }
        response
    }
}

/// A reply can answer any axum route directly (its `delay` is ignored there).
impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        self.build_response()
    }
}

/// Builds the reply to a request when no scripted reply is queued.
pub type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    responder: Mutex<Option<Responder>>,
    /// Requests received whose response body has not ended yet.
    in_flight: AtomicUsize,
    /// The most `in_flight` ever was.
    peak_in_flight: AtomicUsize,
    /// Requests are not kept (see [`FakeServer::stop_recording`]).
    forget: AtomicBool,
}

/// Counts one request as in flight until dropped (with the response body, or with the
/// handler if the client goes away first).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the recording from the others.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scripted HTTP server on `127.0.0.1` with a free port. Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Bind `127.0.0.1:0` and serve in the background on the current Tokio runtime.
    pub async fn start() -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("FakeServer: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("FakeServer: no local address: {e}"));
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("FakeServer stopped: {e}");
            }
        });
        FakeServer { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a reply; requests are answered in the order replies were pushed.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Replies queued but not used yet.
    pub fn pending_replies(&self) -> usize {
        lock(&self.shared.replies).len()
    }

    /// Answer every request that finds the queue empty with `f(request)` (instead of a 500),
    /// e.g. to echo the prompt back or to serve any number of identical replies.
    pub fn respond_with(&self, f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        *lock(&self.shared.responder) = Some(Arc::new(f));
    }

    /// Stop keeping the requests received (from now on [`FakeServer::requests`] stays as it
    /// is): a load test sending requests for minutes must not grow its own memory with them.
    pub fn stop_recording(&self) {
        self.shared.forget.store(true, Ordering::SeqCst);
    }

    /// Requests being answered right now: received, and their response body not yet ended
    /// (a reply's `delay` counts; a client that hangs up ends it).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The largest [`FakeServer::in_flight`] seen since the start.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let guard = InFlight::enter(&shared);
    let (parts, body) = request.into_parts();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_ascii_lowercase())
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body,
    };
    let reply = lock(&shared.replies).pop_front();
    let responder = lock(&shared.responder).clone();
    let reply = reply.or_else(|| responder.map(|f| f(&recorded)));
    if !shared.forget.load(Ordering::SeqCst) {
        lock(&shared.requests).push(recorded);
    }
    let reply = reply.unwrap_or_else(|| {
        Reply::json(
            500,
            serde_json::json!({"error": {
                "message": format!("FakeServer: no reply scripted for {} {path}", parts.method),
                "type": "fake_server_error",
            }}),
        )
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let (parts, body) = reply.build_response().into_parts();
    // The request stays in flight until its body has been sent (or dropped).
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// The directory of recorded fixtures (`crates/zocalo-testkit/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A recorded fixture's text, by path under [`fixtures_dir`] (e.g. `openai/text.sse`).
pub fn fixture(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Token counts the builders below report: input is fixed, output is the number of pieces.
pub const FAKE_INPUT_TOKENS: u64 = 10;

fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Split `s` into pieces of about `size` characters (never inside a character), the way
/// the vendors stream tool arguments.
fn fragments(s: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

const OPENAI_ID: &str = "chatcmpl-zocalofake0000000000000001";
const OPENAI_CREATED: u64 = 1_727_346_168;
const OPENAI_FINGERPRINT: &str = "fp_zocalofake";

fn openai_chunk(model: &str, delta: &str, finish: Option<&str>) -> String {
    let finish = finish.map(js).unwrap_or_else(|| "null".to_owned());
    format!(
        "data: {{\"id\":\"{OPENAI_ID}\",\"object\":\"chat.completion.chunk\",\"created\":{OPENAI_CREATED},\"model\":{},\"system_fingerprint\":\"{OPENAI_FINGERPRINT}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n",
        js(model)
    )
}

fn openai_tail(model: &str, finish: &str, output_tokens: usize) -> String {
    let mut s = openai_chunk(model, "{}", Some(finish));
    s.push_str(&format!(
        "data: {{\"id\":\"{OPENAI_ID}\",\"object\":\"chat.completion.chunk\",\"created\":{OPENAI_CREATED},\"model\":{},\"system_fingerprint\":\"{OPENAI_FINGERPRINT}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{FAKE_INPUT_TOKENS},\"completion_tokens\":{output_tokens},\"total_tokens\":{},\"completion_tokens_details\":{{\"reasoning_tokens\":0}}}}}}\n\n",
        js(model),
        FAKE_INPUT_TOKENS + output_tokens as u64
    ));
    s.push_str("data: [DONE]\n\n");
    s
}

/// An OpenAI Chat Completions stream answering `pieces` as text, shaped like
/// `fixtures/openai/text.sse`: a role chunk, one chunk per piece, `finish_reason: "stop"`,
/// the usage chunk (`prompt_tokens` = [`FAKE_INPUT_TOKENS`], `completion_tokens` = number of
/// pieces) and `data: [DONE]`.
pub fn openai_text_sse(model: &str, pieces: &[&str]) -> String {
    let mut s = openai_chunk(
        model,
        "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
        None,
    );
    for p in pieces {
        s.push_str(&openai_chunk(
            model,
            &format!("{{\"content\":{}}}", js(p)),
            None,
        ));
    }
    s.push_str(&openai_tail(model, "stop", pieces.len()));
    s
}

/// An OpenAI stream calling one tool, shaped like `fixtures/openai/tool_call.sse`: the first
/// chunk carries the call id and name with empty arguments, then the arguments text arrives
/// in fragments of a few characters, then `finish_reason: "tool_calls"`, usage, `[DONE]`.
pub fn openai_tool_call_sse(model: &str, call_id: &str, name: &str, args_json: &str) -> String {
    let mut s = openai_chunk(
        model,
        &format!(
            "{{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{{\"index\":0,\"id\":{},\"type\":\"function\",\"function\":{{\"name\":{},\"arguments\":\"\"}}}}],\"refusal\":null}}",
            js(call_id),
            js(name)
        ),
        None,
    );
    let parts = fragments(args_json, 4);
    for part in &parts {
        s.push_str(&openai_chunk(
            model,
            &format!(
                "{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":{}}}}}]}}",
                js(part)
            ),
            None,
        ));
    }
    s.push_str(&openai_tail(model, "tool_calls", parts.len()));
    s
}

const ANTHROPIC_MSG_ID: &str = "msg_01ZocaloFake000000000001";

fn anthropic_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_start(model: &str) -> String {
    anthropic_event(
        "message_start",
        &format!(
            "{{\"type\":\"message_start\",\"message\":{{\"id\":\"{ANTHROPIC_MSG_ID}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":{},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{FAKE_INPUT_TOKENS},\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1,\"service_tier\":\"standard\"}}}}}}",
            js(model)
        ),
    )
}

fn anthropic_end(stop_reason: &str, output_tokens: usize) -> String {
    let mut s = anthropic_event(
        "message_delta",
        &format!(
            "{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop_reason}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output_tokens}}}}}"
        ),
    );
    s.push_str(&anthropic_event(
        "message_stop",
        "{\"type\":\"message_stop\"}",
    ));
    s
}

/// An Anthropic Messages stream answering `pieces` as text, shaped like
/// `fixtures/anthropic/text.sse`: `message_start` (input tokens [`FAKE_INPUT_TOKENS`]), a
/// text block with a `ping` after its start, one `text_delta` per piece, `message_delta`
/// (`end_turn`, output tokens = number of pieces) and `message_stop`.
pub fn anthropic_text_sse(model: &str, pieces: &[&str]) -> String {
    let mut s = anthropic_start(model);
    s.push_str(&anthropic_event(
        "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    ));
    s.push_str(&anthropic_event("ping", "{\"type\": \"ping\"}"));
    for p in pieces {
        s.push_str(&anthropic_event(
            "content_block_delta",
            &format!(
                "{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
                js(p)
            ),
        ));
    }
    s.push_str(&anthropic_event(
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":0}",
    ));
    s.push_str(&anthropic_end("end_turn", pieces.len()));
    s
}

/// An Anthropic stream calling one tool, shaped like `fixtures/anthropic/tool_use.sse`
/// (without its leading text block): a `tool_use` block start with `input: {}`, a `ping`, an
/// empty `input_json_delta` then the input JSON in fragments of a few characters, the block
/// stop, `message_delta` (`tool_use`) and `message_stop`.
pub fn anthropic_tool_use_sse(
    model: &str,
    tool_use_id: &str,
    name: &str,
    input_json: &str,
) -> String {
    let mut s = anthropic_start(model);
    s.push_str(&anthropic_event(
        "content_block_start",
        &format!(
            "{{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"tool_use\",\"id\":{},\"name\":{},\"input\":{{}}}}}}",
            js(tool_use_id),
            js(name)
        ),
    ));
    s.push_str(&anthropic_event("ping", "{\"type\": \"ping\"}"));
    let mut parts = vec![String::new()];
    parts.extend(fragments(input_json, 5));
    for part in &parts {
        s.push_str(&anthropic_event(
            "content_block_delta",
            &format!(
                "{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}",
                js(part)
            ),
        ));
    }
    s.push_str(&anthropic_event(
        "content_block_stop",
        "{\"type\":\"content_block_stop\",\"index\":0}",
    ));
    s.push_str(&anthropic_end("tool_use", parts.len()));
    s
}

/// A deterministic stand-in for an embeddings model: a hashed bag of words (lower-cased
/// alphanumeric words, FNV-1a into `dim` buckets), not normalised. Texts sharing words get
/// close vectors, so a search over them has a checkable answer.
pub fn bag_of_words(text: &str, dim: usize) -> Vec<f32> {
    let dim = dim.max(1);
    let mut v = vec![0.0f32; dim];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        v[(h % dim as u64) as usize] += 1.0;
    }
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0;
    }
    v
}

/// The answer of an OpenAI-compatible `POST /v1/embeddings` to `request`, in the documented
/// shape (`{"object":"list","data":[{"object":"embedding","embedding":[...],"index":i}],
/// "model","usage"}`), with [`bag_of_words`] vectors of `dim`, listed in reverse input order
/// (the `index` field is what ties a vector to its input). A request without a string list
/// `input` gets OpenAI's 400 error body.
pub fn embeddings_reply(request: &RecordedRequest, dim: usize) -> Reply {
    let inputs: Option<Vec<&str>> = match request.body.get("input") {
        Some(serde_json::Value::String(s)) => Some(vec![s.as_str()]),
        Some(serde_json::Value::Array(a)) => a.iter().map(|v| v.as_str()).collect(),
        _ => None,
    };
    let Some(inputs) = inputs else {
        return Reply::json(
            400,
            serde_json::json!({"error": {"message": "'input' is a required property", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| {
            serde_json::json!({"object": "embedding", "index": i, "embedding": bag_of_words(t, dim)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Reply::json(
        200,
        serde_json::json!({
            "object": "list",
            "data": data,
            "model": request.body.get("model").cloned().unwrap_or(serde_json::Value::Null),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_keeps_bytes_and_orders_offsets() {
        let r = Reply::sse("abcdefgh").split_at(&[5, 2, 2, 0, 99, 8]);
        let parts: Vec<&[u8]> = r.chunks.iter().map(|c| c.as_ref()).collect();
        assert_eq!(parts, vec![&b"ab"[..], b"cde", b"fgh"]);
        assert_eq!(r.whole_body(), Bytes::from_static(b"abcdefgh"));
    }

    #[test]
    fn builders_produce_valid_json_lines() {
        for body in [
            openai_text_sse("m", &["a \"quoted\"", "\u{e9}\n"]),
            openai_tool_call_sse("m", "call_1", "f", r#"{"k":"v \"x\""}"#),
            anthropic_text_sse("m", &["a", "b"]),
            anthropic_tool_use_sse("m", "toolu_1", "f", r#"{"k":"v"}"#),
        ] {
            for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if line != "[DONE]" {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|e| panic!("{e}: {line}"));
                }
            }
        }
        // The argument fragments reassemble into the JSON given.
        let body = openai_tool_call_sse("m", "c", "f", r#"{"timezone":"Europe/Paris"}"#);
        let args: String = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                v.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                    .and_then(|a| a.as_str().map(str::to_owned))
            })
            .collect();
        assert_eq!(args, r#"{"timezone":"Europe/Paris"}"#);
    }

    #[tokio::test]
    async fn empty_queue_answers_500_and_records() {
        let server = FakeServer::start().await;
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}")
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 500"), "{out}");
        assert!(out.contains("no reply scripted"), "{out}");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/x");
        assert_eq!(reqs[0].headers["x-thing"], "1");
        assert_eq!(reqs[0].body, serde_json::json!({"a": 1}));
    }

    #[tokio::test]
    async fn stop_recording_keeps_answering_but_forgets_requests() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = FakeServer::start().await;
        server.respond_with(|r| Reply::json(200, serde_json::json!({"path": r.path})));
        let get = |path: &'static str| {
            let addr = server.addr();
            async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                out
            }
        };
        assert!(get("/one").await.contains(r#"{"path":"/one"}"#));
        server.stop_recording();
        let out = get("/two").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains(r#"{"path":"/two"}"#), "{out}");
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, vec!["/one".to_owned()]);
    }
}
