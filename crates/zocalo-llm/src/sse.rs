//! From a streaming HTTP body to [`StreamEvent`]s, shared by the providers.
//!
//! The layers, bottom up: body chunks, each awaited under the idle timeout; SSE framing
//! (`eventsource-stream`, which copes with events and UTF-8 characters split across chunks);
//! a per-vendor [`Decoder`] that turns SSE events into stream events. The driver owns the
//! rules every provider must follow: stop reading at the terminal event, and turn a body that
//! ends (or breaks) before it into [`LlmError::StreamCut`], never a short answer.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::stream::{self, BoxStream, StreamExt};
use zocalo_core::StreamEvent;

use crate::{EventStream, LlmError};

/// A failure while reading the body, below SSE framing.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// No chunk arrived within the idle timeout.
    Idle,
    /// The connection broke (reset, closed mid-chunk, ...).
    Transport(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Idle => f.write_str("idle timeout"),
            BodyError::Transport(m) => f.write_str(m),
        }
    }
}

/// Body chunks of `response`, failing with [`BodyError::Idle`] when the server stays silent
/// longer than `idle`.
pub(crate) fn body_chunks(
    response: reqwest::Response,
    idle: Duration,
) -> BoxStream<'static, Result<Bytes, BodyError>> {
    idle_chunks(response.bytes_stream().boxed(), idle)
}

fn idle_chunks(
    inner: BoxStream<'static, reqwest::Result<Bytes>>,
    idle: Duration,
) -> BoxStream<'static, Result<Bytes, BodyError>> {
    stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(idle, inner.next()).await {
            Err(_) => Some((Err(BodyError::Idle), None)),
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
            Ok(Some(Err(e))) => Some((Err(BodyError::Transport(e.to_string())), None)),
        }
    })
    .boxed()
}

/// A vendor's wire format: SSE events in, stream events out.
pub(crate) trait Decoder: Send + 'static {
    /// Decode one SSE event (`event` is its `event:` name, `message` when it had none) and
    /// push what it means onto `out`. Pushing [`StreamEvent::Done`] ends the stream.
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), LlmError>;
}

struct Driver<D> {
    events: BoxStream<'static, Result<Event, EventStreamError<BodyError>>>,
    decoder: D,
    queue: VecDeque<Result<StreamEvent, LlmError>>,
    /// Bytes of answer text handed out so far, for the `StreamCut` message.
    received: usize,
    finished: bool,
    provider: String,
    idle: Duration,
}

/// Drive `decoder` over the SSE events in `body` and produce the provider's event stream.
pub(crate) fn decode_stream<D: Decoder>(
    body: BoxStream<'static, Result<Bytes, BodyError>>,
    decoder: D,
    provider: &str,
    idle: Duration,
) -> EventStream {
    let driver = Driver {
        events: body.eventsource().boxed(),
        decoder,
        queue: VecDeque::new(),
        received: 0,
        finished: false,
        provider: provider.to_owned(),
        idle,
    };
    stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(item) = d.queue.pop_front() {
                return Some((item, d));
            }
            if d.finished {
                return None;
            }
            d.pull().await;
        }
    })
    .boxed()
}

impl<D: Decoder> Driver<D> {
    /// Read one SSE event and queue what it yields; on the end of the body or an error,
    /// queue the final error and finish.
    async fn pull(&mut self) {
        let event = match self.events.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => return self.fail(self.body_error(e)),
            None => {
                return self.fail(LlmError::StreamCut {
                    received: self.received,
                })
            }
        };
        let mut out = Vec::new();
        let result = self.decoder.decode(&event.event, &event.data, &mut out);
        for ev in out {
            match &ev {
                StreamEvent::TextDelta(t) => self.received += t.len(),
                StreamEvent::Done { .. } => self.finished = true,
                _ => {}
            }
            self.queue.push_back(Ok(ev));
            if self.finished {
                return;
            }
        }
        if let Err(e) = result {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: LlmError) {
        self.queue.push_back(Err(e));
        self.finished = true;
    }

    fn body_error(&self, e: EventStreamError<BodyError>) -> LlmError {
        match e {
            EventStreamError::Transport(BodyError::Idle) => LlmError::Timeout {
                provider: self.provider.clone(),
                after: self.idle,
            },
            // A connection that breaks mid-answer is a cut stream: the answer is incomplete.
            EventStreamError::Transport(BodyError::Transport(_)) => LlmError::StreamCut {
                received: self.received,
            },
            EventStreamError::Utf8(e) => LlmError::Protocol {
                provider: self.provider.clone(),
                message: format!("the event stream is not UTF-8: {e}"),
            },
            EventStreamError::Parser(e) => LlmError::Protocol {
                provider: self.provider.clone(),
                message: format!("malformed event stream: {e}"),
            },
        }
    }
}

/// Parse an event's JSON data, or say which event was not JSON.
pub(crate) fn parse_json(provider: &str, data: &str) -> Result<serde_json::Value, LlmError> {
    serde_json::from_str(data).map_err(|e| LlmError::Protocol {
        provider: provider.to_owned(),
        message: format!("an event's data is not JSON ({e}): {}", preview(data)),
    })
}

/// Parse a tool call's accumulated argument text; an empty text means no arguments.
pub(crate) fn parse_arguments(
    provider: &str,
    tool: &str,
    text: &str,
) -> Result<serde_json::Value, LlmError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| LlmError::Protocol {
        provider: provider.to_owned(),
        message: format!(
            "the arguments of the call to {tool} are not valid JSON ({e}): {}",
            preview(text)
        ),
    })
}

fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(200).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes each event's data as text; `stop` is the terminal event.
    struct Echo;
    impl Decoder for Echo {
        fn decode(
            &mut self,
            event: &str,
            data: &str,
            out: &mut Vec<StreamEvent>,
        ) -> Result<(), LlmError> {
            match event {
                "stop" => out.push(StreamEvent::Done {
                    stop_reason: zocalo_core::StopReason::EndTurn,
                    model: "m".into(),
                }),
                "bad" => {
                    return Err(LlmError::Protocol {
                        provider: "p".into(),
                        message: data.into(),
                    })
                }
                _ => out.push(StreamEvent::TextDelta(data.to_owned())),
            }
            Ok(())
        }
    }

    fn body(
        chunks: Vec<Result<&'static str, BodyError>>,
    ) -> BoxStream<'static, Result<Bytes, BodyError>> {
        stream::iter(
            chunks
                .into_iter()
                .map(|c| c.map(|s| Bytes::from_static(s.as_bytes()))),
        )
        .boxed()
    }

    async fn run(
        chunks: Vec<Result<&'static str, BodyError>>,
    ) -> Vec<Result<StreamEvent, LlmError>> {
        decode_stream(body(chunks), Echo, "p", Duration::from_secs(1))
            .collect()
            .await
    }

    #[tokio::test]
    async fn events_split_anywhere_and_done_ends_reading() {
        let out = run(vec![
            Ok("data: Hel"),
            Ok("lo\n"),
            Ok("\ndata: \u{e9}"),
            Ok("\n\nevent: stop\ndata: x\n\ndata: after-done\n\n"),
        ])
        .await;
        let texts: Vec<_> = out
            .iter()
            .map(|r| format!("{:?}", r.as_ref().unwrap()))
            .collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(matches!(&out[0], Ok(StreamEvent::TextDelta(t)) if t == "Hello"));
        assert!(matches!(&out[1], Ok(StreamEvent::TextDelta(t)) if t == "é"));
        assert!(matches!(&out[2], Ok(StreamEvent::Done { .. })));
    }

    #[tokio::test]
    async fn end_without_terminal_event_is_a_cut() {
        // The last event lacks its blank line: it was never completed, so it is dropped.
        let out = run(vec![Ok("data: abc\n\ndata: partial")]).await;
        assert!(matches!(&out[0], Ok(StreamEvent::TextDelta(t)) if t == "abc"));
        assert!(
            matches!(out[1], Err(LlmError::StreamCut { received: 3 })),
            "{out:?}"
        );
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn broken_connection_is_a_cut_and_silence_a_timeout() {
        let out = run(vec![
            Ok("data: ab\n\n"),
            Err(BodyError::Transport("reset".into())),
        ])
        .await;
        assert!(
            matches!(out[1], Err(LlmError::StreamCut { received: 2 })),
            "{out:?}"
        );
        let out = run(vec![Err(BodyError::Idle)]).await;
        assert!(matches!(out[0], Err(LlmError::Timeout { .. })), "{out:?}");
    }

    #[tokio::test]
    async fn decoder_errors_end_the_stream() {
        let out = run(vec![Ok("event: bad\ndata: nope\n\ndata: more\n\n")]).await;
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], Err(LlmError::Protocol { .. })));
    }

    #[tokio::test]
    async fn idle_timeout_applies_per_chunk() {
        let slow = stream::unfold(0u8, |n| async move {
            if n == 0 {
                Some((Ok(Bytes::from_static(b"x")), 1))
            } else {
                futures::future::pending::<()>().await;
                None
            }
        })
        .boxed();
        let mut s = idle_chunks(slow, Duration::from_millis(50));
        assert!(matches!(s.next().await, Some(Ok(_))));
        assert!(matches!(s.next().await, Some(Err(BodyError::Idle))));
        assert!(s.next().await.is_none());
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_arguments("p", "t", "").unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            parse_arguments("p", "t", "{\"a\":1}").unwrap(),
            serde_json::json!({"a":1})
        );
        let e = parse_arguments("p", "t", "{\"a\":").unwrap_err();
        assert!(matches!(e, LlmError::Protocol { .. }) && e.to_string().contains("t"));
    }
}
