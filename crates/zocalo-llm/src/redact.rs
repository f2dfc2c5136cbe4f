//! Keeping secrets out of logs.
//!
//! [`Secret`] already refuses to print itself, but a key can still reach a log line by other
//! roads: a server echoing it in an error body, a debug dump of a request, a library's own
//! logging. So every secret value the process learns (API keys from the environment or the
//! vault, the vault passphrase) is [`register`]ed here, and the log output goes through
//! [`RedactingWriter`], which replaces each registered value with `[redacted]` in every line
//! before it is written anywhere.

use std::io::{self, Write};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;
use zocalo_core::Secret;

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not registered: redacting `abc` everywhere would mangle
/// ordinary text, and a key that short is not a real key.
const MIN_LEN: usize = 8;

static KNOWN: RwLock<Vec<Vec<u8>>> = RwLock::new(Vec::new());

/// Remember `secret` so that [`scrub`] removes it from every later log line.
pub fn register(secret: &Secret) {
    register_str(secret.expose());
}

fn register_str(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == value.as_bytes()) {
        known.push(value.as_bytes().to_vec());
        // Longest first, so a secret that contains another is masked whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// Whether an environment variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "API_KEY",
        "_TOKEN",
        "_SECRET",
        "PASSPHRASE",
        "PASSWORD",
        "_KEY",
    ]
    .iter()
    .any(|s| n.ends_with(s))
}

/// Register the value of every environment variable whose name looks like a secret
/// (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_KEY`, `*PASSPHRASE`, `*PASSWORD`).
pub fn register_env() {
    for (k, v) in std::env::vars_os() {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            if is_secret_name(k) {
                register_str(v);
            }
        }
    }
}

/// `bytes` with every registered secret replaced by [`MASK`].
pub fn scrub(bytes: &[u8]) -> Vec<u8> {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    let mut out = bytes.to_vec();
    for secret in known.iter() {
        if out.len() >= secret.len() && contains(&out, secret) {
            out = replace(&out, secret, MASK.as_bytes());
        }
    }
    out
}

/// [`scrub`] for text.
pub fn scrub_str(text: &str) -> String {
    String::from_utf8_lossy(&scrub(text.as_bytes())).into_owned()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt` that scrubs each formatted event before
/// handing it to the inner writer. The fmt layer writes one event per writer, so each event
/// is buffered whole and a secret cannot straddle two writes.
#[derive(Clone, Debug)]
pub struct RedactingWriter<M> {
    inner: M,
}

impl<M> RedactingWriter<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = EventBuffer<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer {
            buf: Vec::new(),
            inner: self.inner.make_writer(),
        }
    }
}

/// One event's output, scrubbed and written when dropped (or flushed).
pub struct EventBuffer<W: Write> {
    buf: Vec<u8>,
    inner: W,
}

impl<W: Write> EventBuffer<W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let clean = scrub(&self.buf);
        self.buf.clear();
        self.inner.write_all(&clean)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for EventBuffer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-event would split a secret across two scrubs; the event is written
        // whole when the fmt layer drops the writer.
        Ok(())
    }
}

impl<W: Write> Drop for EventBuffer<W> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn registered_values_are_masked_and_short_ones_ignored() {
        register(&Secret::new("sk-unit-test-secret-0001"));
        register(&Secret::new("short"));
        let out = scrub_str("key=sk-unit-test-secret-0001; again sk-unit-test-secret-0001 short");
        assert_eq!(out, "key=[redacted]; again [redacted] short");
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        register(&Secret::new("abcdefgh-inner"));
        register(&Secret::new("xx-abcdefgh-inner-yy"));
        assert_eq!(scrub_str("[xx-abcdefgh-inner-yy]"), "[[redacted]]");
    }

    #[test]
    fn writer_scrubs_each_event_even_when_written_in_pieces() {
        register(&Secret::new("sk-piecewise-9999"));
        let sink = Sink::default();
        let make = RedactingWriter::new({
            let s = sink.clone();
            move || s.clone()
        });
        {
            let mut w = make.make_writer();
            w.write_all(b"header sk-piece").unwrap();
            w.flush().unwrap();
            w.write_all(b"wise-9999 tail\n").unwrap();
        }
        let got = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(got, "header [redacted] tail\n");
    }

    #[test]
    fn secret_names() {
        for n in [
            "OPENAI_API_KEY",
            "ZOCALO_VAULT_PASSPHRASE",
            "GH_TOKEN",
            "x_key",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["HOME", "OPENAI_BASE_URL", "KEYBOARD"] {
            assert!(!is_secret_name(n), "{n}");
        }
    }
}
