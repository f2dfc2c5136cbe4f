//! One module per top-level command.

pub mod agents;
pub mod approve;
mod ask;
mod audit;
pub mod browser;
pub mod channels;
mod chat;
mod conversations;
pub mod daemon;
mod doctor;
pub mod keys;
pub mod mcp;
pub mod memory;
pub mod models;
mod ops;
pub mod pool;
pub mod schedule;
pub mod serve;
pub mod services;
pub mod skills;
pub mod worker;

use crate::cli::{Cli, Command};
use crate::exit::usage;
use zocalo_runtime::Runtime;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Runtime::load(cli.database_url)?;
    let json = cli.json;
    let done = match cli.command {
        Command::Chat(_) | Command::Serve(_) | Command::Notify { .. } if json => Err(usage(
            "--json: this command prints no JSON document (see `zocalo help`)",
        )),
        Command::Ask(args) => ask::run(&ctx, args, json).await,
        Command::Chat(args) => chat::run(&ctx, args).await,
        Command::Conversations(cmd) => conversations::run(&ctx, cmd, json).await,
        Command::Doctor => doctor::run(&ctx, json).await,
        Command::Skills(args) => skills::run(&ctx, args, json).await,
        Command::Pool(cmd) => pool::run(&ctx, cmd, json).await,
        Command::Worker(args) => worker::run(&ctx, args, json).await,
        Command::Keys(cmd) => keys::run(&ctx, cmd, json).await,
        Command::Models(cmd) => models::run(&ctx, cmd, json).await,
        Command::Schedule(cmd) => schedule::run(&ctx, cmd, json).await,
        Command::Memory(cmd) => memory::run(&ctx, cmd, json).await,
        Command::Agents(cmd) => agents::run(&ctx, cmd, json).await,
        Command::Serve(args) => serve::run(&ctx, args).await,
        Command::Browser(cmd) => browser::run(cmd, json).await,
        Command::Services(cmd) => services::run(&ctx, cmd, json).await,
        Command::Daemon(cmd) => daemon::run(&ctx, cmd, json).await,
        Command::Mcp(cmd) => mcp::run(&ctx, cmd, json).await,
        Command::Channels(cmd) => channels::run(&ctx, cmd, json).await,
        Command::Notify { target, message } => channels::notify(&ctx, &target, &message).await,
        Command::Audit {
            conversation,
            limit,
        } => audit::audit(&ctx, conversation, limit, json).await,
        Command::Ops(cmd) => ops::run(&ctx, cmd, json).await,
        Command::Usage { by, since } => audit::usage_cmd(&ctx, &by, since, json).await,
    };
    // The store is the runtime's, opened once; its connections close when the command ends.
    ctx.close().await;
    done
}

/// Print one JSON document on stdout (the `--json` contract).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `text` on one line, at most `max` characters (an ellipsis marks a cut).
pub fn one_line(text: &str, max: usize) -> String {
    let d = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if d.chars().count() > max {
        format!("{}…", d.chars().take(max - 1).collect::<String>())
    } else {
        d
    }
}

/// The text of FILE, or of stdin for `-`; unreadable input is bad input (exit 2).
pub fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

/// A progress bar on stderr when it is a terminal and there is work to show.
pub fn progress_bar(n: usize, template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || n == 0 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
