use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use zocalo_core::{CompletionRequest, CompletionResponse, Message, Role, StreamEvent, Usage};

use crate::LlmError;

/// A stream of events ending with [`StreamEvent::Done`]; an `Err` item ends it early.
pub type EventStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// An event stream together with the name of the provider that produces it.
pub struct NamedStream {
    /// The provider actually answering: for a [`crate::FallbackProvider`], the member of the
    /// chain that accepted the request, not the chain's first choice.
    pub provider: String,
    pub stream: EventStream,
}

/// A language model endpoint.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Provider name as the user types it (`openai`, `anthropic`, `groq`, ...).
    fn name(&self) -> &str;

    /// Model used when the request names none.
    fn default_model(&self) -> &str;

    /// Whether the model can call tools. The ask loop offers no tools to one that cannot
    /// (a small local model), rather than sending specs it would ignore or garble.
    fn supports_tools(&self) -> bool {
        true
    }

    /// Start a streamed completion. Errors before the first byte (HTTP status, connect) come
    /// back here; errors after it come as stream items. A stream that stops without
    /// [`StreamEvent::Done`] yields [`LlmError::StreamCut`] as its last item.
    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, LlmError>;

    /// [`Provider::stream`], also naming the provider that answers, so callers can record
    /// it. Providers that delegate (a fallback chain) override this; the default is `name()`.
    async fn stream_named(&self, request: CompletionRequest) -> Result<NamedStream, LlmError> {
        let stream = self.stream(request).await?;
        Ok(NamedStream {
            provider: self.name().to_owned(),
            stream,
        })
    }

    /// A whole completion. The default collects [`Provider::stream`].
    async fn complete(&self, request: CompletionRequest) -> Result<CompletionResponse, LlmError> {
        let stream = self.stream(request).await?;
        collect_stream(stream, |_| {}).await
    }
}

/// Drive a stream to its end, calling `on_text` for each text delta, and assemble the
/// assistant message. Fails with [`LlmError::StreamCut`] if the stream ends without `Done`.
pub async fn collect_stream(
    mut stream: EventStream,
    mut on_text: impl FnMut(&str),
) -> Result<CompletionResponse, LlmError> {
    let mut message = Message::assistant("");
    let mut usage = Usage::default();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::TextDelta(t) => {
                on_text(&t);
                message.content.push_str(&t);
            }
            StreamEvent::ToolCall(call) => message.tool_calls.push(call),
            StreamEvent::Usage(u) => {
                if u.input_tokens > 0 {
                    usage.input_tokens = u.input_tokens;
                }
                if u.output_tokens > 0 {
                    usage.output_tokens = u.output_tokens;
                }
            }
            StreamEvent::Done { stop_reason, model } => {
                debug_assert_eq!(message.role, Role::Assistant);
                return Ok(CompletionResponse {
                    message,
                    usage,
                    stop_reason,
                    model,
                });
            }
        }
    }
    Err(LlmError::StreamCut {
        received: message.content.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zocalo_core::{StopReason, ToolCall};

    fn stream_of(events: Vec<Result<StreamEvent, LlmError>>) -> EventStream {
        futures::stream::iter(events).boxed()
    }

    #[tokio::test]
    async fn collects_text_calls_and_usage() {
        let call = ToolCall {
            id: "c1".into(),
            name: "t".into(),
            arguments: serde_json::json!({}),
        };
        let s = stream_of(vec![
            Ok(StreamEvent::TextDelta("Hel".into())),
            Ok(StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 0,
            })),
            Ok(StreamEvent::TextDelta("lo".into())),
            Ok(StreamEvent::ToolCall(call.clone())),
            Ok(StreamEvent::Usage(Usage {
                input_tokens: 0,
                output_tokens: 2,
            })),
            Ok(StreamEvent::Done {
                stop_reason: StopReason::ToolUse,
                model: "m".into(),
            }),
        ]);
        let mut seen = String::new();
        let r = collect_stream(s, |t| seen.push_str(t)).await.unwrap();
        assert_eq!(seen, "Hello");
        assert_eq!(r.message.content, "Hello");
        assert_eq!(r.message.tool_calls, vec![call]);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2
            }
        );
        assert_eq!(r.stop_reason, StopReason::ToolUse);
    }

    #[tokio::test]
    async fn missing_done_is_a_cut() {
        let s = stream_of(vec![Ok(StreamEvent::TextDelta("partial".into()))]);
        let e = collect_stream(s, |_| {}).await.unwrap_err();
        assert!(matches!(e, LlmError::StreamCut { received: 7 }), "{e:?}");
    }
}
