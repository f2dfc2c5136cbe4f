//! `zocalo conversations list|show`.

use serde_json::json;

use crate::cli::ConversationsCmd;
use crate::exit::usage;
use zocalo_runtime::Runtime;

pub async fn run(ctx: &Runtime, cmd: ConversationsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ConversationsCmd::List { limit } => {
            if limit < 1 {
                return Err(usage("--limit must be at least 1"));
            }
            let store = ctx.store().await?;
            let list = store.list_conversations(limit).await?;
            store.close().await;
            if json {
                return super::print_json(&list);
            }
            for c in list {
                println!(
                    "{}  {}  {:>3} msgs  {}",
                    c.id,
                    c.updated_at.format("%Y-%m-%d %H:%M"),
                    c.message_count,
                    c.title.unwrap_or_default()
                );
            }
            Ok(())
        }
        ConversationsCmd::Show { id } => {
            let (id, messages) = ctx.conversation_messages(&id).await?;
            if json {
                return super::print_json(&json!({"id": id, "messages": messages}));
            }
            for m in messages {
                let msg = &m.message;
                let mut line = format!("[{}] {}", msg.role.as_str(), msg.content);
                for c in &msg.tool_calls {
                    line.push_str(&format!("\n  -> {}({})", c.name, c.arguments));
                }
                println!("{line}");
            }
            Ok(())
        }
    }
}
