//! `zocalo chat`: an interactive loop over one conversation.

use std::io::Write;

use rustyline::error::ReadlineError;
use zocalo_agent::AskEvent;

use crate::cli::ChatArgs;
use zocalo_runtime::{Ask, Runtime};

const HELP: &str = "Type a message and press Enter. /new starts a new conversation, /exit \
(or Ctrl-D) quits, Ctrl-C cancels an answer in progress (nothing of it is saved).";

pub async fn run(ctx: &Runtime, args: ChatArgs) -> anyhow::Result<()> {
    let template = args.guard.ask(args.conversation.as_deref(), &args.model)?;
    // Checked before the first turn: the conversation, the persona and the --allow patterns.
    let (provider, model) = ctx.check_ask(&template).await?;
    let mut conversation = template.conversation.clone();
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = ctx.home.root().join("chat_history.txt");
    let _ = editor.load_history(&history);
    eprintln!("zocalo chat — {provider} ({model}). {HELP}");
    loop {
        let line = match editor.readline("you> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text);
        match text {
            "/exit" | "/quit" => break,
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/new" => {
                conversation = None;
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        let mut stdout = std::io::stdout();
        let mut on_event = |event: AskEvent| match event {
            AskEvent::Text(t) => {
                let _ = stdout.write_all(t.as_bytes());
                let _ = stdout.flush();
            }
            AskEvent::ToolCall(call) => eprintln!("[tool] {} {}", call.name, call.arguments),
            _ => {}
        };
        let ask = Ask {
            message: text.to_owned(),
            conversation: conversation.clone(),
            ..template.clone()
        };
        tokio::select! {
            result = ctx.ask(ask, &mut on_event) => match result {
                Ok(outcome) => {
                    println!();
                    conversation = Some(outcome.conversation_id);
                }
                Err(e) => eprintln!("\nerror: {e}"),
            },
            _ = tokio::signal::ctrl_c() => eprintln!("\n(cancelled; nothing of this turn was saved)"),
        }
    }
    let _ = ctx.home.ensure().map(|_| editor.save_history(&history));
    Ok(())
}
