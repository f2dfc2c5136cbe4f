//! The local chat model on the real SmolLM2 weights.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use futures::StreamExt;
use zocalo_core::{CompletionRequest, Message, StopReason, StreamEvent};
use zocalo_llm::{collect_stream, Provider};
use zocalo_local::{LocalChat, LocalError};

/// One loaded model per test binary (loading takes ~0.5 s and ~300 MB).
async fn chat() -> Option<LocalChat> {
    static CHAT: OnceLock<LocalChat> = OnceLock::new();
    let dir = common::ensure_models().await?;
    if let Some(c) = CHAT.get() {
        return Some(c.clone());
    }
    let loaded = tokio::task::spawn_blocking(move || LocalChat::load(&dir))
        .await
        .unwrap()
        .unwrap();
    Some(CHAT.get_or_init(|| loaded).clone())
}

fn ask(q: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        model: String::new(),
        system: None,
        messages: vec![Message::user(q)],
        tools: vec![],
        max_tokens,
        temperature: None,
    }
}

#[tokio::test]
async fn greedy_answers_the_capital_of_france_streaming() {
    let Some(chat) = chat().await else { return };
    assert_eq!(chat.name(), "local");
    assert_eq!(chat.default_model(), "smollm2-135m-instruct");
    let mut deltas = 0;
    let stream = chat
        .stream(ask("What is the capital of France?", 48))
        .await
        .unwrap();
    let r = collect_stream(stream, |_| deltas += 1).await.unwrap();
    assert!(
        r.message.content.contains("Paris"),
        "{:?}",
        r.message.content
    );
    assert!(deltas > 1, "text must stream in pieces");
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert!(
        r.usage.input_tokens > 10 && r.usage.output_tokens > 0,
        "{:?}",
        r.usage
    );
    assert!(!r.message.content.contains("<|im_end|>"));
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_and_is_reported() {
    let Some(chat) = chat().await else { return };
    let stream = chat
        .stream(ask("Write a long story about a dragon.", 5))
        .await
        .unwrap();
    let r = collect_stream(stream, |_| {}).await.unwrap();
    assert_eq!(r.stop_reason, StopReason::MaxTokens);
    assert_eq!(r.usage.output_tokens, 5);
}

#[tokio::test]
async fn sampling_with_a_seed_is_reproducible() {
    let Some(chat) = chat().await else { return };
    let (a, b) = tokio::task::spawn_blocking(move || {
        let c = chat.with_sampling(zocalo_local::SamplingOptions {
            top_p: 0.9,
            seed: Some(42),
        });
        let mut req = ask("Name a colour.", 12);
        req.temperature = Some(0.8);
        let run = || {
            let mut out = String::new();
            c.generate_blocking(&req, |ev| {
                if let StreamEvent::TextDelta(t) = ev {
                    out.push_str(&t);
                }
                true
            })
            .unwrap();
            out
        };
        (run(), run())
    })
    .await
    .unwrap();
    assert_eq!(a, b);
    assert!(!a.is_empty());
}

#[tokio::test]
async fn tokenizer_round_trips_text_and_keeps_control_tokens_whole() {
    let Some(chat) = chat().await else { return };
    let tok = chat.tokenizer();
    for s in [
        "Hello world",
        "  leading spaces and\ttabs\nnewlines",
        "numbers 1234567 and 3.14",
        "unicode: café, naïve, Ærøskøbing, 東京, Привет, emoji 🦀🎉",
        "code: fn main() { println!(\"hi\"); }",
    ] {
        let ids = tok.encode(s).unwrap();
        assert_eq!(tok.decode(&ids), s, "ids {ids:?}");
    }
    // Digits are split one per token by the smollm pre-tokenizer.
    let ids = tok.encode("2024").unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(tok.decode(&ids), "user\nhi");
}

/// Ids from llama.cpp's tokenizer on the same GGUF (fixtures/make_smollm_tokens.py).
#[tokio::test]
async fn tokenizer_ids_match_llama_cpp() {
    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ids: Vec<u32>,
    }
    let Some(chat) = chat().await else { return };
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("fixtures/smollm_tokens.json")).unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        assert_eq!(
            chat.tokenizer().encode(&c.text).unwrap(),
            c.ids,
            "{:?}",
            c.text
        );
    }
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_truncated_not_a_panic() {
    let Some(chat) = chat().await else { return };
    let chat = chat.with_context_limit(96);
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let mut req = ask(&long, 16);
    req.system = Some("You are terse.".into());
    req.messages.insert(0, Message::assistant("earlier answer"));
    req.messages.insert(0, Message::user("earlier question"));
    let prompt = chat.prompt_tokens(&req).unwrap();
    assert!(prompt.len() <= 96 - 16, "{}", prompt.len());
    let r = collect_stream(chat.stream(req).await.unwrap(), |_| {})
        .await
        .unwrap();
    assert!(
        r.usage.input_tokens + r.usage.output_tokens <= 96,
        "{:?}",
        r.usage
    );

    // max_tokens larger than the whole window still fits.
    let r = collect_stream(chat.stream(ask(&long, 10_000)).await.unwrap(), |_| {})
        .await
        .unwrap();
    assert!(
        r.usage.input_tokens + r.usage.output_tokens <= 96,
        "{:?}",
        r.usage
    );
}

#[tokio::test]
async fn an_unknown_model_name_is_a_bad_request() {
    let Some(chat) = chat().await else { return };
    let mut req = ask("hi", 4);
    req.model = "gpt-4o".into();
    let e = chat.stream(req).await.err().unwrap();
    assert!(e.to_string().contains("smollm2-135m-instruct"), "{e}");
}

#[test]
fn loading_without_weights_says_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let e = LocalChat::load(tmp.path()).unwrap_err();
    assert!(matches!(e, LocalError::Missing { .. }));
    assert!(e.to_string().contains("run `zocalo models fetch`"), "{e}");
    let llm: zocalo_llm::LlmError = e.into();
    assert!(llm.to_string().contains("zocalo models fetch"));
}

#[test]
fn loading_a_truncated_gguf_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("smollm2-135m-instruct");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"GGUF\x03\0\0\0").unwrap();
    let e = LocalChat::load(tmp.path()).unwrap_err();
    assert!(matches!(e, LocalError::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("SmolLM2-135M-Instruct.Q4_1.gguf") && msg.contains("truncated"),
        "{msg}"
    );
}

#[tokio::test]
async fn dropping_the_stream_stops_generation() {
    let Some(chat) = chat().await else { return };
    let mut s = chat
        .stream(ask("Count from one to one hundred.", 200))
        .await
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::TextDelta(_)));
    drop(s);
    // The model is free again for the next request.
    let r = collect_stream(
        chat.stream(ask("What is the capital of France?", 24))
            .await
            .unwrap(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(r.message.content.contains("Paris"), "{}", r.message.content);
}

/// The 4-bit kernel in the model: the same forward pass on weights expanded to f32 at load
/// gives the same logits and the same greedy continuation.
#[tokio::test]
async fn quantized_kernel_logits_match_weights_expanded_to_f32() {
    use candle_core::quantized::gguf_file;
    use zocalo_local::llama::{argmax, Llama};
    use zocalo_local::WeightDtype;
    let Some(dir) = common::ensure_models().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let path = dir.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        let mut f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let tok = zocalo_local::tokenizer::GgufTokenizer::from_gguf(&ct).unwrap();
        let prompt = tok
            .encode("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let mut q = Llama::from_gguf(&ct, &mut f, WeightDtype::Quantized).unwrap();
        let mut e = Llama::from_gguf(&ct, &mut f, WeightDtype::F32).unwrap();
        let (mut lq, mut le) = (q.prefill(&prompt).unwrap(), e.prefill(&prompt).unwrap());
        for step in 0..8 {
            let scale = le.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = lq
                .iter()
                .zip(&le)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-3 * scale,
                "step {step}: max |Δlogit| {worst} of {scale}"
            );
            let next = argmax(&le);
            assert_eq!(argmax(&lq), next, "step {step}");
            lq = q.step(next).unwrap();
            le = e.step(next).unwrap();
        }
    })
    .await
    .unwrap();
}
