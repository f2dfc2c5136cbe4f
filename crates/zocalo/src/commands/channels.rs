//! `zocalo channels list|status|test` and `zocalo notify TARGET MESSAGE`.

use clap::Subcommand;
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum ChannelsCmd {
    /// The configured channels and hooks, and whether each can run.
    List,
    /// Each channel's messages by state, its last message and its poller's last error.
    Status,
    /// Check a channel's credentials and that its service answers (telegram, email,
    /// hook:NAME).
    Test { name: String },
}

pub async fn run(ctx: &Runtime, cmd: ChannelsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ChannelsCmd::List | ChannelsCmd::Status if json => {
            let status = ctx.channels_status().await?;
            super::print_json(&status)
        }
        ChannelsCmd::List => {
            let status = ctx.channels_status().await?;
            if status.is_empty() {
                println!("no channels: add [channels.telegram], [channels.email] or [hooks.NAME] to config.toml (docs/channels.md)");
            }
            for c in status {
                match c.problem {
                    None => println!("{:<20} ready", c.name),
                    Some(p) => println!("{:<20} NOT READY: {p}", c.name),
                }
            }
            Ok(())
        }
        ChannelsCmd::Status => {
            for c in ctx.channels_status().await? {
                let counts: Vec<String> =
                    c.messages.iter().map(|(s, n)| format!("{n} {s}")).collect();
                println!(
                    "{:<20} {:<9} messages: {}{}",
                    c.name,
                    if c.ready { "ready" } else { "not ready" },
                    if counts.is_empty() {
                        "none".to_owned()
                    } else {
                        counts.join(", ")
                    },
                    c.last_message_at
                        .map(|t| format!(", last {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default()
                );
                if let Some(p) = c.problem {
                    println!("  problem: {p}");
                }
                if let (Some(e), Some(at)) = (c.last_error, c.last_error_at) {
                    println!("  last error ({}): {e}", at.format("%Y-%m-%d %H:%M:%S UTC"));
                }
            }
            Ok(())
        }
        ChannelsCmd::Test { name } => {
            println!("{name}: {}", ctx.channel_test(&name).await?);
            Ok(())
        }
    }
}

/// `zocalo notify TARGET MESSAGE...`
pub async fn notify(ctx: &Runtime, target: &str, message: &[String]) -> anyhow::Result<()> {
    ctx.notify(target, &message.join(" ")).await?;
    eprintln!("sent to {target}");
    Ok(())
}
