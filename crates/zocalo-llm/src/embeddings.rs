//! [`OpenAiEmbedder`]: any provider speaking the OpenAI `/embeddings` API (OpenAI, Ollama at
//! its `/v1` base, LM Studio, vLLM, Together, Mistral, ...) behind the core
//! [`Embedder`] seam.
//!
//! The seam is synchronous (memory calls it on a blocking thread), the HTTP client is async:
//! the embedder owns one thread running a small Tokio runtime that makes the requests, and
//! `embed` waits for its answer. So it never starts or blocks a runtime from inside one: it
//! works from `spawn_blocking` (memory's way), from plain threads, and even from an async
//! worker of a multi-threaded runtime (where it steps aside with `block_in_place`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;

use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use zocalo_core::embed::{EmbedError, Embedder};

use crate::registry::Endpoint;
use crate::{http, LlmError};

/// Texts per request: well under every vendor's limit (OpenAI: 2048 inputs), small enough
/// that one failed request does not cost much to retry.
pub const DEFAULT_BATCH: usize = 128;

type Answer = Result<Vec<Vec<f32>>, EmbedError>;

struct Job {
    texts: Vec<String>,
    reply: std_mpsc::SyncSender<Answer>,
}

/// Embeddings from `POST {base_url}/embeddings` (`{"model", "input": [...]}`, bearer key).
/// [`Embedder::model_id`] is `PROVIDER:MODEL`; [`Embedder::dim`] is 0 until the first
/// answer (or the dimension given to [`OpenAiEmbedder::new`]), then every answer must match.
pub struct OpenAiEmbedder {
    id: String,
    dim: std::sync::Arc<AtomicUsize>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("id", &self.id)
            .field("dim", &self.dim.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Worker {
    endpoint: Endpoint,
    model: String,
    batch: usize,
    dim: std::sync::Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl OpenAiEmbedder {
    /// An embedder for `model` at `endpoint` (from [`crate::Registry::endpoint_with_vault`]),
    /// `batch` texts per request (0: [`DEFAULT_BATCH`]), `dim` if known in advance.
    pub fn new(
        endpoint: Endpoint,
        model: &str,
        batch: usize,
        dim: Option<usize>,
    ) -> Result<Self, EmbedError> {
        let id = format!("{}:{model}", endpoint.name);
        let dim = std::sync::Arc::new(AtomicUsize::new(dim.unwrap_or(0)));
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let worker = std::sync::Arc::new(Worker {
            client: http::client(&endpoint),
            endpoint,
            model: model.to_owned(),
            batch: if batch == 0 { DEFAULT_BATCH } else { batch },
            dim: dim.clone(),
        });
        std::thread::Builder::new()
            .name("zocalo-embed".into())
            .spawn(move || {
                // Built (and dropped) on this thread: never inside the caller's runtime.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "embeddings: cannot start the HTTP runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Jobs run concurrently (several memory handles may embed at once);
                    // the loop ends when the embedder is dropped.
                    while let Some(job) = rx.recv().await {
                        let w = worker.clone();
                        tokio::spawn(async move {
                            let answer = w.embed(job.texts).await;
                            let _ = job.reply.send(answer);
                        });
                    }
                });
            })
            .map_err(|e| EmbedError::Unavailable(format!("cannot start the HTTP thread: {e}")))?;
        Ok(Self { id, dim, jobs })
    }
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim.load(Ordering::Relaxed)
    }

    fn remote(&self) -> bool {
        true
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = std_mpsc::sync_channel(1);
        let job = Job {
            texts: texts.iter().map(|t| (*t).to_owned()).collect(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| EmbedError::Failed("the embeddings HTTP thread is gone".into()))?;
        let wait = || {
            answer
                .recv()
                .map_err(|_| EmbedError::Failed("the embeddings HTTP thread is gone".into()))?
        };
        // On an async worker thread, let the runtime move its other tasks elsewhere while
        // this one waits (block_in_place panics on a current-thread runtime: there, and on
        // plain or blocking threads, waiting directly is right).
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

impl Worker {
    fn id(&self) -> String {
        format!("{}:{}", self.endpoint.name, self.model)
    }

    async fn embed(&self, texts: Vec<String>) -> Answer {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }

    async fn embed_batch(&self, texts: &[String]) -> Answer {
        let url = format!("{}/embeddings", self.endpoint.base_url);
        let mut headers = HeaderMap::new();
        let key = http::key_header(&self.endpoint, "Bearer ").map_err(EmbedError::Unavailable)?;
        if let Some(v) = key {
            headers.insert(AUTHORIZATION, v);
        }
        let body = json!({ "model": self.model, "input": texts });
        let answer = http::post_json(&self.client, &self.endpoint, &url, headers, &body)
            .await
            .map_err(|e| self.request_error(e, &url))?;
        let vectors = parse_answer(&answer, texts.len()).map_err(|why| {
            EmbedError::Failed(format!(
                "embedder {}: POST {url} answered something that is not an embeddings list: {why}",
                self.id()
            ))
        })?;
        let got = vectors.first().map_or(0, Vec::len);
        let want = match self
            .dim
            .compare_exchange(0, got, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => got,
            Err(known) => known,
        };
        if let Some(bad) = vectors.iter().find(|v| v.len() != want) {
            return Err(EmbedError::Failed(format!(
                "embedder {} answered a vector of {} dimensions, expected {want}; \
                 a model whose dimension changed needs `zocalo memory reindex`",
                self.id(),
                bad.len()
            )));
        }
        Ok(vectors)
    }

    /// A failed request as the seam's error: unusable setups (key refused, no such model,
    /// nothing listening) are `Unavailable` with the fix; the rest `Failed`.
    fn request_error(&self, e: LlmError, url: &str) -> EmbedError {
        let id = self.id();
        match e {
            LlmError::Auth { .. } | LlmError::MissingKey { .. } | LlmError::Connect { .. } => {
                EmbedError::Unavailable(format!("embedder {id}: {e}"))
            }
            LlmError::BadRequest { status: 404, .. } => EmbedError::Unavailable(format!(
                "embedder {id}: POST {url} answered 404 ({e}); check the model name in \
                 `[memory] embedder` and that the server offers /embeddings"
            )),
            other => EmbedError::Failed(format!("embedder {id}: {other}")),
        }
    }
}

/// The vectors of `{"data": [{"embedding": [...], "index": i}, ...]}` in input order.
fn parse_answer(answer: &Value, want: usize) -> Result<Vec<Vec<f32>>, String> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no `data` list")?;
    if data.len() != want {
        return Err(format!("{} embeddings for {want} inputs", data.len()));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; want];
    for (pos, item) in data.iter().enumerate() {
        // `index` says which input a vector belongs to; servers that omit it answer in order.
        let i = match item.get("index") {
            None => pos,
            Some(v) => v
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < want)
                .ok_or_else(|| format!("bad index {v}"))?,
        };
        let values = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("item {pos} has no `embedding` list of numbers"))?;
        if values.is_empty() {
            return Err(format!("item {pos} is an empty vector"));
        }
        let mut v = Vec::with_capacity(values.len());
        for x in values {
            let x = x
                .as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("item {pos} holds {x}, not a finite number"))?;
            v.push(x);
        }
        if v.iter().all(|x| *x == 0.0) {
            return Err(format!("item {pos} is all zeros"));
        }
        if out[i].replace(v).is_some() {
            return Err(format!("index {i} answered twice"));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("no embedding for input {i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_put_in_input_order_and_checked() {
        let a = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.5]},
        ]});
        assert_eq!(
            parse_answer(&a, 2).unwrap(),
            vec![vec![1.0, 0.5], vec![0.0, 1.0]]
        );
        for (bad, why) in [
            (json!({"object": "list"}), "no `data`"),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}]}),
                "1 embeddings for 2",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
                "answered twice",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 7, "embedding": [1.0]}]}),
                "bad index 7",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [null]}]}),
                "not a finite number",
            ),
            (
                json!({"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [1.0]}]}),
                "no `embedding` list",
            ),
            (
                json!({"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": [1.0]}]}),
                "empty vector",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [0.0]}, {"index": 1, "embedding": [1.0]}]}),
                "all zeros",
            ),
        ] {
            let e = parse_answer(&bad, 2).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // 1e39 overflows f32: not finite.
        let e = parse_answer(&json!({"data": [{"embedding": [1e39]}]}), 1).unwrap_err();
        assert!(e.contains("not a finite number"), "{e}");
    }
}
