//! The command-line surface (DESIGN.md section 3 is the contract).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "zocalo",
    version,
    about = "A personal AI computer substrate: ask, remember, schedule, run."
)]
pub struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB. Default: the SQLite file
    /// in the data home ($ZOCALO_HOME or ~/.zocalo).
    #[arg(
        long,
        global = true,
        env = "ZOCALO_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Print one JSON document on stdout instead of text (commands that print results).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug). ZOCALO_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask one question; the answer streams to stdout.
    Ask(AskArgs),
    /// Talk interactively, one conversation, with line editing and history.
    Chat(ChatArgs),
    /// List and read stored conversations.
    #[command(subcommand)]
    Conversations(ConversationsCmd),
    /// Compute pool: submit jobs, list and cancel them, see the worker nodes and stats.
    #[command(subcommand)]
    Pool(crate::commands::pool::PoolCmd),
    /// Join the compute pool as a worker node (until SIGTERM, or --drain).
    Worker(crate::commands::worker::WorkerArgs),
    /// Agent Skills: list, show, validate, run and install skills (SKILL.md folders).
    Skills(crate::commands::skills::SkillsArgs),
    /// Check the database, config, providers and tools; say how to fix what is missing.
    Doctor,
    /// API keys in the encrypted vault: init, set, list, rm, test.
    #[command(subcommand)]
    Keys(crate::commands::keys::KeysCmd),
    /// Models the providers serve.
    #[command(subcommand)]
    Models(crate::commands::models::ModelsCmd),
    /// Automations: RFC 5545 recurrences in IANA zones that fire asks, skills or commands.
    #[command(subcommand)]
    Schedule(crate::commands::schedule::ScheduleCmd),
    /// Long-term memory: add, import, search (keyword + meaning), forget, stats.
    #[command(subcommand)]
    Memory(crate::commands::memory::MemoryCmd),
    /// Sub-agents: spawn one or thousands in parallel (here or on the pool); past batches.
    #[command(subcommand)]
    Agents(crate::commands::agents::AgentsCmd),
    /// HTTP API (OpenAI-compatible /v1, REST /api) and web UI, with a bearer token.
    Serve(crate::commands::serve::ServeArgs),
    /// Headless Chromium: run step scripts, screenshot a page, snapshot its elements with refs.
    #[command(subcommand)]
    Browser(crate::commands::browser::BrowserCmd),
    /// Services: long-running processes the daemon supervises (restart, health, logs).
    #[command(subcommand)]
    Services(crate::commands::services::ServicesCmd),
    /// The background daemon: services, scheduler ticks, an optional local worker.
    #[command(subcommand)]
    Daemon(crate::commands::daemon::DaemonCmd),
    /// MCP: serve zocalo's tools to MCP clients (`serve`), list configured servers' tools.
    #[command(subcommand)]
    Mcp(crate::commands::mcp::McpCmd),
    /// Channels: Telegram, email and webhooks the daemon answers (list, status, test).
    #[command(subcommand)]
    Channels(crate::commands::channels::ChannelsCmd),
    /// Send a message now: TARGET is telegram:CHAT_ID, email:ADDRESS or webhook:NAME.
    Notify {
        target: String,
        #[arg(required = true, num_args = 1..)]
        message: Vec<String>,
    },
    /// Every tool call: tool, arguments (secrets redacted), decision and who decided, outcome.
    Audit {
        /// Only this conversation's calls.
        #[arg(long = "conv", value_name = "ID")]
        conversation: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Backup, restore, export and import (docs/operations.md).
    #[command(flatten)]
    Ops(OpsCmd),
    /// Tokens used, from the stored answers: by provider, model, day or automation.
    Usage {
        /// provider, model, day or automation.
        #[arg(long, default_value = "provider")]
        by: String,
        /// From this day (YYYY-MM-DD, UTC) or instant (RFC 3339) on.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Provider name (openai, anthropic, groq, openrouter, ollama, or one from config.toml).
    #[arg(long)]
    pub provider: Option<String>,
    /// Model name; default: ZOCALO_MODEL, config, then the provider's default.
    #[arg(long)]
    pub model: Option<String>,
    /// Offer no tools to the model.
    #[arg(long)]
    pub no_tools: bool,
}

impl ModelArgs {
    /// The runtime's model choice.
    pub fn choice(&self) -> zocalo_runtime::ModelChoice {
        zocalo_runtime::ModelChoice {
            provider: self.provider.clone(),
            model: self.model.clone(),
            no_tools: self.no_tools,
        }
    }
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// Continue this conversation (an id printed by an earlier ask).
    #[arg(long = "conv", value_name = "ID")]
    pub conversation: Option<String>,
    /// One conversation per key you choose (a chat or channel id such as telegram:42),
    /// created on first use and continued by every later ask with the same key.
    #[arg(long = "conv-key", value_name = "KEY", conflicts_with = "conversation")]
    pub conv_key: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    /// The message.
    #[arg(required = true, num_args = 1.., value_name = "MESSAGE")]
    pub message: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Continue this conversation.
    #[arg(long = "conv", value_name = "ID")]
    pub conversation: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
}

impl GuardArgs {
    /// An ask in `conversation` with these guard rails, `model`, and the terminal as the
    /// approver.
    pub fn ask(
        self,
        conversation: Option<&str>,
        model: &ModelArgs,
    ) -> anyhow::Result<zocalo_runtime::Ask> {
        Ok(zocalo_runtime::Ask {
            conversation: zocalo_runtime::parse_conversation(conversation)?,
            model: model.choice(),
            persona: self.persona,
            allow: self.allow,
            yes: self.yes,
            approver: crate::commands::approve::terminal(),
            ..zocalo_runtime::Ask::default()
        })
    }
}

/// Who may use which tool (docs/permissions.md).
#[derive(Debug, Args, Clone)]
pub struct GuardArgs {
    /// `[personas.NAME]` of config.toml: its system prompt, tools, permissions and model.
    #[arg(long, value_name = "NAME")]
    pub persona: Option<String>,
    /// Approve this tool (a name or glob such as `mcp__github__*`) for this ask without
    /// asking; repeatable. Never overrides a `deny`.
    #[arg(long = "allow", value_name = "TOOL")]
    pub allow: Vec<String>,
    /// Approve every tool that would be asked about (never one that is denied).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCmd {
    /// Most recently updated first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Every message of one conversation.
    Show { id: String },
}

/// Operations on the whole home (docs/operations.md).
#[derive(Debug, Subcommand)]
pub enum OpsCmd {
    /// Back up the home and its database into one archive file (docs/operations.md).
    ///
    /// The archive holds a consistent copy of the database (or, on PostgreSQL, the portable
    /// export), the vault and its key file, config.toml and the installed skills, each with
    /// its checksum. Safe while the daemon runs.
    Backup {
        /// The archive to write (replaced only once it is complete).
        file: std::path::PathBuf,
    },
    /// Restore a backup archive into this home and database.
    ///
    /// The archive is checked completely before anything is changed. Stop the daemon first.
    Restore {
        /// The archive (`zocalo backup` wrote it).
        file: std::path::PathBuf,
        /// Replace a home or database that already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Export conversations, memories, automations, services and skills as JSON.
    ///
    /// One document, for `zocalo import` into another home or backend. With --json, a JSON
    /// summary is printed (with FILE `-` the document itself is the only output).
    Export {
        /// Where to write the document; `-`: stdout.
        file: String,
    },
    /// Import an export document, all or nothing.
    Import {
        /// The document; `-`: stdin.
        file: String,
        /// Import the records the database does not have yet and leave the others (by
        /// default, any record already there stops the whole import).
        #[arg(long)]
        skip_existing: bool,
    },
}
