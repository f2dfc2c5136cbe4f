//! `zocalo-fake-llm` as a process: the line `./x demo` waits for, and its three answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(addr: &str, body: &serde_json::Value) -> std::io::Result<String> {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The answer text of an OpenAI stream, joined from its content deltas.
fn text_of(response: &str) -> String {
    response
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn demo_server_answers_tool_call_then_quote_then_greeting() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zocalo-fake-llm"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let url = first
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{first:?}"));
    let addr = url.strip_prefix("http://").unwrap().to_owned();

    let tools = serde_json::json!([{"type": "function", "function": {"name": "current_time", "parameters": {}}}]);
    let r = post(
        &addr,
        &serde_json::json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "Time in Paris?"}]}),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"name\":\"current_time\""), "{r}");
    assert!(
        r.contains("\"finish_reason\":\"tool_calls\"") && r.contains("data: [DONE]"),
        "{r}"
    );

    let r = post(
        &addr,
        &serde_json::json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "Time in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "current_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "08:30"},
        ]}),
    )
    .unwrap();
    assert_eq!(text_of(&r), "It is now 08:30 in Paris.");

    let r = post(
        &addr,
        &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi there"}]}),
    )
    .unwrap();
    assert_eq!(
        text_of(&r),
        "Hello from the zocalo fake provider: you said: hi there"
    );
    drop(child);
}

#[test]
fn directives_script_an_http_error_and_a_slow_stream() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zocalo-fake-llm"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening http://")
        .unwrap()
        .to_owned();

    let r = post(
        &addr,
        &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi [fake:status=401]"}]}),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("scripted HTTP 401"), "{r}");

    // One word a second: the answer takes seconds, and arrives whole.
    let started = std::time::Instant::now();
    let r = post(
        &addr,
        &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "[fake:slow]"}]}),
    )
    .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    assert_eq!(
        text_of(&r),
        "Hello from the zocalo fake provider: you said: [fake:slow]"
    );
    drop(child);
}
