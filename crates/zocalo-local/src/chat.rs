//! [`LocalChat`]: SmolLM2-135M-Instruct as a [`Provider`], in process.
//!
//! Loading reads and checks the GGUF once; each request renders the chat template from the
//! GGUF metadata, fits the prompt to the context window, and generates on a blocking thread,
//! streaming text as it is decoded. The KV cache of the previous request is reused for the
//! prompt prefix the next one shares with it (a conversation re-sends its history).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use futures::StreamExt;
use zocalo_core::{CompletionRequest, Role, StopReason, StreamEvent, Usage};
use zocalo_llm::{EventStream, LlmError, Provider};

use crate::fetch::{ensure_verified, SMOLLM2};
use crate::llama::{argmax, Llama, WeightDtype};
use crate::tokenizer::{GgufTokenizer, Utf8Stream};
use crate::LocalError;

pub const PROVIDER_NAME: &str = "local";
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The chat template used when a GGUF carries none (ChatML, as SmolLM2's).
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Sampling settings for non-greedy requests (the request carries only a temperature).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingOptions {
    pub top_p: f64,
    /// Fixed seed for reproducible sampling; `None` draws one per request.
    pub seed: Option<u64>,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            top_p: 0.95,
            seed: None,
        }
    }
}

/// Load-time facts, for `doctor` and benchmarks.
#[derive(Clone, Debug)]
pub struct LoadInfo {
    pub load_ms: u128,
    pub context_length: usize,
    pub weights: WeightDtype,
}

struct Inner {
    model: Mutex<Llama>,
    tokenizer: GgufTokenizer,
    template: minijinja::Environment<'static>,
    stop_ids: Vec<u32>,
}

/// Per-handle settings; clones share the loaded model but may differ in these.
#[derive(Clone, Copy, Debug)]
struct Settings {
    context_limit: usize,
    sampling: SamplingOptions,
}

/// The embedded chat model. Cheap to clone (the weights are shared); requests are served one
/// at a time.
#[derive(Clone)]
pub struct LocalChat {
    inner: Arc<Inner>,
    info: LoadInfo,
    settings: Settings,
}

impl std::fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChat")
            .field("info", &self.info)
            .finish()
    }
}

impl LocalChat {
    /// Load SmolLM2 from the models dir (`DataHome::models_dir()`), after checking its
    /// checksum. Missing weights: an error that says to run `zocalo models fetch`.
    pub fn load(models_dir: &Path) -> Result<Self, LocalError> {
        Self::load_with(models_dir, WeightDtype::Quantized)
    }

    pub fn load_with(models_dir: &Path, weights: WeightDtype) -> Result<Self, LocalError> {
        let started = Instant::now();
        ensure_verified(&SMOLLM2, models_dir)?;
        let path = SMOLLM2.file_path(models_dir, SMOLLM2.files[0].name);
        let mut reader = BufReader::new(File::open(&path).map_err(LocalError::io(&path))?);
        let ct = gguf_file::Content::read(&mut reader).map_err(|e| LocalError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tokenizer = GgufTokenizer::from_gguf(&ct)?;
        let model = Llama::from_gguf(&ct, &mut reader, weights)?;
        let mut template = minijinja::Environment::new();
        let source = tokenizer
            .chat_template
            .clone()
            .unwrap_or_else(|| CHATML.to_string());
        template
            .add_template_owned("chat", source)
            .map_err(|e| LocalError::Template(e.to_string()))?;
        let mut stop_ids = vec![tokenizer.eos];
        stop_ids.extend(tokenizer.token_id("<|im_end|>"));
        stop_ids.extend(tokenizer.token_id("<|endoftext|>"));
        let context_length = model.context_length();
        Ok(Self {
            inner: Arc::new(Inner {
                model: Mutex::new(model),
                tokenizer,
                template,
                stop_ids,
            }),
            info: LoadInfo {
                load_ms: started.elapsed().as_millis(),
                context_length,
                weights,
            },
            settings: Settings {
                context_limit: context_length,
                sampling: SamplingOptions::default(),
            },
        })
    }

    pub fn info(&self) -> &LoadInfo {
        &self.info
    }

    /// Use at most `tokens` of the model's context window (prompt + answer); a smaller
    /// window bounds memory and prompt time. Clamped to 16..=the model's window.
    pub fn with_context_limit(mut self, tokens: usize) -> Self {
        self.settings.context_limit = tokens.clamp(16, self.info.context_length);
        self
    }

    /// Top-p and seed for requests with a temperature above 0.
    pub fn with_sampling(mut self, sampling: SamplingOptions) -> Self {
        self.settings.sampling = sampling;
        self
    }

    pub fn context_limit(&self) -> usize {
        self.settings.context_limit
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.inner.tokenizer
    }

    /// The prompt token ids for a request, fitted to the context (see [`Inner::fit_prompt`]).
    pub fn prompt_tokens(&self, request: &CompletionRequest) -> Result<Vec<u32>, LocalError> {
        let limit = self.settings.context_limit;
        self.inner
            .fit_prompt(request, limit - reserve(limit, request.max_tokens))
    }

    /// Run a request to completion on the calling thread, passing each event to `emit`
    /// (which returns `false` to stop early). Blocking: use [`Provider::stream`] from async.
    pub fn generate_blocking(
        &self,
        request: &CompletionRequest,
        emit: impl FnMut(StreamEvent) -> bool,
    ) -> Result<(), LocalError> {
        self.inner.generate(request, self.settings, emit)
    }
}

/// Tokens kept free for the answer: the requested maximum, but never more than half the
/// window, so a long history still gets room.
fn reserve(context_limit: usize, max_tokens: u32) -> usize {
    (max_tokens as usize).clamp(1, context_limit / 2)
}

impl Inner {
    fn render(
        &self,
        system: Option<&str>,
        turns: &[(&'static str, String)],
    ) -> Result<String, LocalError> {
        let mut messages = Vec::with_capacity(turns.len() + 1);
        if let Some(s) = system {
            messages.push(serde_json::json!({"role": "system", "content": s}));
        }
        for (role, content) in turns {
            messages.push(serde_json::json!({"role": role, "content": content}));
        }
        let tpl = self
            .template
            .get_template("chat")
            .map_err(|e| LocalError::Template(e.to_string()))?;
        tpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => "<|im_start|>",
            eos_token => "<|im_end|>",
        })
        .map_err(|e| LocalError::Template(e.to_string()))
    }

    /// Render the conversation and tokenize it within `budget` tokens: drop the oldest turns
    /// first (keeping the system prompt and the last turn), then cut the start of the last
    /// turn's text, and as a last resort keep only the prompt's tail.
    fn fit_prompt(
        &self,
        request: &CompletionRequest,
        budget: usize,
    ) -> Result<Vec<u32>, LocalError> {
        let tok = &self.tokenizer;
        let system = request.system.as_deref().filter(|s| !s.is_empty());
        let mut turns: Vec<(&'static str, String)> = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::User => ("user", m.content.clone()),
                Role::Assistant => ("assistant", m.content.clone()),
                // This model makes no tool calls; show any tool output as user-side text.
                Role::Tool => ("user", format!("Tool result:\n{}", m.content)),
            })
            .collect();
        loop {
            let ids = tok.encode(&self.render(system, &turns)?)?;
            if ids.len() <= budget {
                return Ok(ids);
            }
            if turns.len() > 1 {
                turns.remove(0);
                continue;
            }
            // One turn left and still too long: keep the end of its text.
            if let Some((role, content)) = turns.first().cloned() {
                let overhead = tok.encode(&self.render(system, &[(role, String::new())])?)?;
                if overhead.len() < budget {
                    let allowed = budget - overhead.len();
                    let content_ids = tok.encode(&content)?;
                    let kept = &content_ids[content_ids.len().saturating_sub(allowed)..];
                    let text = tok.decode(kept);
                    let ids = tok.encode(&self.render(system, &[(role, text)])?)?;
                    if ids.len() <= budget {
                        return Ok(ids);
                    }
                }
            }
            return Ok(ids[ids.len() - budget..].to_vec());
        }
    }

    fn generate(
        &self,
        request: &CompletionRequest,
        settings: Settings,
        mut emit: impl FnMut(StreamEvent) -> bool,
    ) -> Result<(), LocalError> {
        let limit = settings.context_limit;
        let prompt = self.fit_prompt(request, limit - reserve(limit, request.max_tokens))?;
        let max_new = (request.max_tokens.max(1) as usize).min(limit - prompt.len());
        let mut sampler = match request.temperature {
            Some(t) if t > 0.0 => Some(LogitsProcessor::from_sampling(
                settings.sampling.seed.unwrap_or_else(rand::random),
                Sampling::TopP {
                    p: settings.sampling.top_p,
                    temperature: t as f64,
                },
            )),
            _ => None,
        };
        let mut model = self
            .model
            .lock()
            .map_err(|_| LocalError::Model("the model lock was poisoned by a panic".into()))?;
        let mut logits = model.prefill(&prompt)?;
        let mut text = Utf8Stream::default();
        let mut generated = 0usize;
        let mut stop = StopReason::MaxTokens;
        while generated < max_new {
            let next = match &mut sampler {
                None => argmax(&logits),
                Some(s) => s.sample(&Tensor::new(logits.as_slice(), &Device::Cpu)?)?,
            };
            if self.stop_ids.contains(&next) || self.tokenizer.is_control(next) {
                stop = StopReason::EndTurn;
                break;
            }
            generated += 1;
            if let Some(piece) = text.push(self.tokenizer.bytes_of(next)) {
                if !emit(StreamEvent::TextDelta(piece)) {
                    return Ok(());
                }
            }
            if generated == max_new {
                break;
            }
            logits = model.step(next)?;
        }
        drop(model);
        if let Some(piece) = text.finish() {
            emit(StreamEvent::TextDelta(piece));
        }
        emit(StreamEvent::Usage(Usage {
            input_tokens: prompt.len() as u64,
            output_tokens: generated as u64,
        }));
        emit(StreamEvent::Done {
            stop_reason: stop,
            model: DEFAULT_MODEL.to_string(),
        });
        Ok(())
    }
}

#[async_trait]
impl Provider for LocalChat {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn default_model(&self) -> &str {
        DEFAULT_MODEL
    }

    /// SmolLM2-135M was not trained for tool calls; the ask loop runs it without tools.
    fn supports_tools(&self) -> bool {
        false
    }

    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError> {
        if !request.model.is_empty() && request.model != DEFAULT_MODEL {
            return Err(LlmError::BadRequest {
                provider: PROVIDER_NAME.to_string(),
                status: 400,
                message: format!(
                    "the local provider has only the model `{DEFAULT_MODEL}`, not `{}`",
                    request.model
                ),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<StreamEvent, LlmError>>(64);
        let (inner, settings) = (self.inner.clone(), self.settings);
        tokio::task::spawn_blocking(move || {
            let result = inner.generate(&request, settings, |ev| tx.blocking_send(Ok(ev)).is_ok());
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Ok(tokio_stream_from(rx))
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<StreamEvent, LlmError>>,
) -> EventStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
