//! `zocalo chat`: an interactive loop over one conversation.

use std::io::Write;

use rustyline::error::ReadlineError;
use zocalo_agent::AskEvent;

use crate::cli::ChatArgs;
use zocalo_runtime::{parse_conversation, Ask, Runtime};

const HELP: &str = "Type a message and press Enter. /new starts a new conversation, /exit \
(or Ctrl-D) quits, Ctrl-C cancels an answer in progress (nothing of it is saved).";

pub async fn run(ctx: &Runtime, args: ChatArgs) -> anyhow::Result<()> {
    let mut conversation = parse_conversation(args.conversation.as_deref())?;
    let (provider, model) = ctx.provider(&args.model.choice())?;
    let store = ctx.store().await?;
    if let Some(id) = &conversation {
        if store.get_conversation(id).await?.is_none() {
            return Err(crate::exit::usage(format!("no conversation {id}")));
        }
    }
    // Checked before the first turn: the persona and the --allow patterns.
    ctx.persona_asker(
        &store,
        provider.clone(),
        !args.model.no_tools,
        args.guard.persona.as_deref(),
    )?;
    zocalo_agent::ToolPatterns::parse(&args.guard.allow)?;
    let approver = super::approve::terminal();
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = ctx.home.root().join("chat_history.txt");
    let _ = editor.load_history(&history);
    eprintln!(
        "zocalo chat — {} ({}). {HELP}",
        provider.name(),
        model.as_deref().unwrap_or(provider.default_model())
    );
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
            model: args.model.choice(),
            persona: args.guard.persona.clone(),
            allow: args.guard.allow.clone(),
            yes: args.guard.yes,
            approver: approver.clone(),
            ..Ask::default()
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
