//! Ask the local model one question and report load time and tokens/s.
//!
//! `cargo run --release -p zocalo-local --example local_chat -- [--f32] [--max N] "question"`
//! Models are read from `$ZOCALO_MODELS` or `$HOME/.cache/zocalo-models-test` and fetched there
//! when absent.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use zocalo_core::{CompletionRequest, Message, StreamEvent};
use zocalo_local::{LocalChat, WeightDtype};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut weights = WeightDtype::Quantized;
    let mut max_tokens = 128u32;
    let mut question = "What is the capital of France?".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--f32" => weights = WeightDtype::F32,
            "--max" => max_tokens = args.next().ok_or("--max N")?.parse()?,
            _ => question = a,
        }
    }
    let dir = std::env::var_os("ZOCALO_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/zocalo-models-test")
        });
    zocalo_local::fetch_all(&dir, &|_| {}).await?;
    let chat = LocalChat::load_with(&dir, weights)?;
    eprintln!("loaded {:?} in {} ms", weights, chat.info().load_ms);
    let req = CompletionRequest {
        model: String::new(),
        system: None,
        messages: vec![Message::user(question)],
        tools: vec![],
        max_tokens,
        temperature: None,
    };
    let prompt_len = chat.prompt_tokens(&req)?.len();
    let chat2 = chat.clone();
    let (first, total, usage) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut first = None;
        let mut usage = None;
        chat2.generate_blocking(&req, |ev| {
            match ev {
                StreamEvent::TextDelta(t) => {
                    first.get_or_insert_with(|| start.elapsed());
                    print!("{t}");
                    let _ = std::io::stdout().flush();
                }
                StreamEvent::Usage(u) => usage = Some(u),
                _ => {}
            }
            true
        })?;
        Ok::<_, zocalo_local::LocalError>((first, start.elapsed(), usage))
    })
    .await??;
    println!();
    let first = first.unwrap_or(total);
    let out = usage.map(|u| u.output_tokens).unwrap_or(0);
    let gen_secs = (total - first).as_secs_f64();
    eprintln!(
        "prompt {prompt_len} tok, time to first token {:.0} ms ({:.0} prompt tok/s); \
         {out} tokens in {:.2} s; generation {:.1} tok/s",
        first.as_secs_f64() * 1e3,
        prompt_len as f64 / first.as_secs_f64(),
        total.as_secs_f64(),
        (out.saturating_sub(1)) as f64 / gen_secs
    );
    Ok(())
}
