//! `zocalo ask`: one message, answer streamed to stdout.

use std::io::{IsTerminal, Write};

use zocalo_agent::AskEvent;
use zocalo_runtime::{Ask, Runtime};

use crate::cli::AskArgs;

pub async fn run(ctx: &Runtime, args: AskArgs, json_out: bool) -> anyhow::Result<()> {
    let ask = Ask {
        message: args.message.join(" "),
        conv_key: args.conv_key,
        ..args.guard.ask(args.conversation.as_deref(), &args.model)?
    };

    let show_tools = std::io::stderr().is_terminal();
    let mut stdout = std::io::stdout();
    let mut ends_with_newline = true;
    let mut on_event = |event: AskEvent| match event {
        AskEvent::Text(t) if !json_out => {
            let _ = stdout.write_all(t.as_bytes());
            let _ = stdout.flush();
            if !t.is_empty() {
                ends_with_newline = t.ends_with('\n');
            }
        }
        AskEvent::ToolCall(call) if show_tools => {
            eprintln!("[tool] {} {}", call.name, call.arguments);
        }
        AskEvent::ToolResult {
            name,
            is_error: true,
            content,
            ..
        } if show_tools => eprintln!("[tool] {name} failed: {content}"),
        _ => {}
    };
    let outcome = ctx.ask(ask, &mut on_event).await?;
    if json_out {
        // The runtime's one shape, shared with the Python package.
        super::print_json(&zocalo_runtime::ask_json::outcome_json(&outcome))?;
    } else {
        if !ends_with_newline {
            println!();
        }
        if outcome.new_conversation && show_tools {
            eprintln!(
                "(conversation {}; continue with --conv)",
                outcome.conversation_id
            );
        }
    }
    Ok(())
}
