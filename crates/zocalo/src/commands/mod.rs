//! One module per top-level command.

pub mod agents;
mod approve;
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
use zocalo_runtime::Runtime;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Runtime::load(cli.database_url)?;
    let done = match cli.command {
        Command::Ask(args) => ask::run(&ctx, args).await,
        Command::Chat(args) => chat::run(&ctx, args).await,
        Command::Conversations(cmd) => conversations::run(&ctx, cmd).await,
        Command::Doctor { json } => doctor::run(&ctx, json).await,
        Command::Skills(args) => skills::run(&ctx, args).await,
        Command::Pool(cmd) => pool::run(&ctx, cmd).await,
        Command::Worker(args) => worker::run(&ctx, args).await,
        Command::Keys(cmd) => keys::run(&ctx, cmd).await,
        Command::Models(cmd) => models::run(&ctx, cmd).await,
        Command::Schedule(cmd) => schedule::run(&ctx, cmd).await,
        Command::Memory(cmd) => memory::run(&ctx, cmd).await,
        Command::Agents(cmd) => agents::run(&ctx, cmd).await,
        Command::Serve(args) => serve::run(&ctx, args).await,
        Command::Browser(cmd) => browser::run(cmd).await,
        Command::Services(cmd) => services::run(&ctx, cmd).await,
        Command::Daemon(cmd) => daemon::run(&ctx, cmd).await,
        Command::Mcp(cmd) => mcp::run(&ctx, cmd).await,
        Command::Channels(cmd) => channels::run(&ctx, cmd).await,
        Command::Notify { target, message } => channels::notify(&ctx, &target, &message).await,
        Command::Audit {
            conversation,
            limit,
            json,
        } => audit::audit(&ctx, conversation, limit, json).await,
        Command::Ops(cmd) => ops::run(&ctx, cmd).await,
        Command::Usage { by, since, json } => audit::usage_cmd(&ctx, &by, since, json).await,
    };
    // The store is the runtime's, opened once; its connections close when the command ends.
    ctx.close().await;
    done
}

/// Print one JSON document on stdout (the `--json` contract).
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
