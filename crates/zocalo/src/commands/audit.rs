//! `zocalo audit` (every tool call the ask loop handled) and `zocalo usage` (tokens from the
//! stored answers).

use zocalo_runtime::{parse_conversation, usage, Runtime};
use zocalo_store::UsageBy;

use super::print_json;

pub async fn audit(
    ctx: &Runtime,
    conversation: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    let conversation = parse_conversation(conversation.as_deref())?;
    if !(1..=10_000).contains(&limit) {
        return Err(usage("--limit must be 1 to 10000"));
    }
    let store = ctx.store().await?;
    let rows = zocalo_agent::audit(&store, conversation.as_ref(), limit).await?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no tool calls recorded");
    }
    for r in &rows {
        println!(
            "{}  {}  {:<14} {:<5} by {:<10} {:<7} {:>6} ms  {}",
            r.at,
            r.conversation_id,
            r.tool,
            r.decision.as_str(),
            r.decided_by.as_str(),
            r.outcome.as_str(),
            r.duration_ms,
            r.arguments
        );
    }
    Ok(())
}

pub async fn usage_cmd(
    ctx: &Runtime,
    by: &str,
    since_arg: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let by: UsageBy = by.parse()?;
    let since = since_arg
        .as_deref()
        .map(zocalo_store::parse_since)
        .transpose();
    let since = since.map_err(|e| usage(format!("--{e}")))?;
    let store = ctx.store().await?;
    let rows = store.usage(by, since).await?;
    if json {
        return print_json(&rows);
    }
    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        by.as_str().to_uppercase(),
        "INPUT",
        "OUTPUT",
        "CALLS"
    );
    for r in &rows {
        println!(
            "{:<24} {:>12} {:>12} {:>8}",
            r.key, r.input_tokens, r.output_tokens, r.calls
        );
    }
    Ok(())
}
