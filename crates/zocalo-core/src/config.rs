//! `config.toml` in the data home, with environment overrides applied by [`Config::load`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// User configuration. Every field is optional: an empty or missing file is the embedded
/// default (local model, SQLite in the data home).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default provider name (`ZOCALO_PROVIDER` overrides).
    pub provider: Option<String>,
    /// Default model (`ZOCALO_MODEL` overrides).
    pub model: Option<String>,
    /// Providers tried in order on failover-eligible errors.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Database URL (`--database-url` / `ZOCALO_DATABASE_URL` override).
    pub database_url: Option<String>,
    /// User-added OpenAI-compatible vendors.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Ask loop settings.
    #[serde(default)]
    pub ask: AskConfig,
    /// MCP servers whose tools the ask loop offers to the model (`[mcp.servers.NAME]`).
    #[serde(default)]
    pub mcp: McpConfig,
    /// Daemon settings (`[daemon]`): what `zocalo daemon` (and `zocalo serve`) runs besides
    /// the services, and the supervisor's timings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Sub-agent defaults (`zocalo agents`, the `spawn_agents` tool).
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Long-term memory in the ask loop (`[memory]`).
    #[serde(default)]
    pub memory: MemorySettings,
    /// Requests per minute allowed per provider name (`openai = 500`): requests beyond it
    /// wait for their turn, shared by every agent and ask of the process.
    #[serde(default)]
    pub requests_per_minute: BTreeMap<String, u32>,
    /// `[workspace]`: the directory the file tools and the shell work in.
    #[serde(default)]
    pub workspace: WorkspaceConfig,
    /// `[tools.NAME]`: settings of the computer's own tools.
    #[serde(default)]
    pub tools: ToolsSettings,
    /// `[permissions]`: tool name or glob (`mcp__github__*`) -> `allow` | `ask` | `deny`,
    /// over the built-in defaults (read-only tools allowed, the rest asked).
    #[serde(default)]
    pub permissions: BTreeMap<String, Decision>,
    /// `[personas.NAME]`: named presets of system prompt, offered tools, permissions and
    /// model, picked per ask (`--persona NAME`).
    #[serde(default)]
    pub personas: BTreeMap<String, PersonaConfig>,
    /// `[budgets]`: token limits checked before every model call.
    #[serde(default)]
    pub budgets: BudgetsConfig,
    /// `[channels.telegram]`, `[channels.email]`: where people reach the computer besides
    /// its CLI, API and web UI. The daemon runs every configured channel.
    #[serde(default)]
    pub channels: ChannelsConfig,
    /// `[hooks.NAME]`: signed webhooks in (`POST /hooks/NAME`) and deliveries out (`url`).
    #[serde(default)]
    pub hooks: BTreeMap<String, HookConfig>,
    /// `[server]`: limits and browser access of `zocalo serve`.
    #[serde(default)]
    pub server: ServerConfig,
}

/// `[server]` in config.toml: what `zocalo serve` lets one client do (see docs/server.md,
/// "Limits").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: u64,
    /// Event streams (SSE) open at once (503 beyond).
    pub max_streams: usize,
    /// A connection that has not sent a whole request head in this long is closed (slow
    /// clients, idle keep-alive connections).
    pub header_timeout_ms: u64,
    /// Failed authentications per client address in a minute before 429.
    pub auth_failures_per_minute: u32,
    /// Origins whose web pages may call the API (`https://app.example`, or `*`); none by
    /// default, so no page of another site can read an answer.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_streams: 1000,
            header_timeout_ms: 10_000,
            auth_failures_per_minute: 10,
            cors_origins: Vec::new(),
        }
    }
}

/// `[channels]` in config.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    pub telegram: Option<TelegramConfig>,
    pub email: Option<EmailConfig>,
}

/// `[channels.telegram]`: a bot, over the Bot API's long polling. The token comes from
/// `TELEGRAM_BOT_TOKEN` or the vault (`zocalo keys set telegram`), never from this file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Telegram user ids that may talk to the computer; anyone else gets one short refusal
    /// and nothing is stored.
    #[serde(default)]
    pub allow: Vec<i64>,
    /// `[personas.NAME]` the channel's conversations are asked as (a conversation's own
    /// `/persona` wins).
    pub persona: Option<String>,
    /// The Bot API's base URL (`TELEGRAM_API_BASE` overrides); default Telegram's.
    pub api_base: Option<String>,
    /// `false` turns the channel off without removing its settings.
    pub enabled: Option<bool>,
}

/// `[channels.email]`: a mailbox read over IMAP and answered over SMTP. The password comes
/// from `ZOCALO_EMAIL_PASSWORD` or the vault (`zocalo keys set email`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `imaps://host[:993]` (TLS) or `imap://host[:143]` (plain, loopback and tests only).
    pub imap: String,
    /// `smtps://host[:465]`, `smtp://host[:587]` (STARTTLS) or `smtp+plain://host:port`
    /// (no TLS: loopback and tests only).
    pub smtp: String,
    /// The login for both.
    pub user: String,
    /// The address replies come from; default `user`.
    pub from: Option<String>,
    /// Sender addresses that may talk to the computer (case-insensitive); mail from anyone
    /// else is left unanswered and unstored.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Mailbox to read; default `INBOX`.
    pub mailbox: Option<String>,
    /// Seconds between checks when the server has no IDLE; default 30.
    pub poll_seconds: Option<u64>,
    pub persona: Option<String>,
    pub enabled: Option<bool>,
}

/// `[hooks.NAME]`: a webhook.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The environment variable holding the HMAC-SHA256 secret (default
    /// `ZOCALO_HOOK_<NAME>`, upper case, `-` as `_`). Inbound requests need it (a hook whose
    /// secret is unset refuses every request); outbound deliveries are signed with it when
    /// it is set (a receiver such as a chat service's incoming-webhook URL may not check).
    pub secret_env: Option<String>,
    /// Persona the hook's asks use.
    pub persona: Option<String>,
    /// The message asked for each inbound request; `{body}` is replaced by the request body.
    /// Default: says which hook fired, then the body.
    pub prompt: Option<String>,
    /// Where the answer to an inbound request goes (`telegram:42`, `email:me@x.org`); none:
    /// it stays in the hook's conversation (`hook:NAME`).
    pub deliver: Option<String>,
    /// Outbound: `webhook:NAME` targets POST here, signed with the secret.
    pub url: Option<String>,
}

/// `[workspace]` in config.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// An absolute path; none: `$ZOCALO_HOME/workspace`, decided by the caller.
    pub root: Option<std::path::PathBuf>,
}

/// `[tools]` in config.toml: one table per tool that has settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolsSettings {
    #[serde(default)]
    pub web_fetch: WebFetchSettings,
}

/// `[tools.web_fetch]` in config.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebFetchSettings {
    /// Let `web_fetch` reach loopback and private networks (off: only public addresses).
    #[serde(default)]
    pub allow_private: bool,
}

/// What may happen when the model calls a tool: it runs, someone is asked first, or it is
/// neither offered nor run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Ask,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

/// `[personas.NAME]` in config.toml. Every key is optional; a missing one leaves the
/// default in place.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersonaConfig {
    /// Replaces `[ask] system_prompt` for asks with this persona.
    pub system_prompt: Option<String>,
    /// Names or globs of the tools offered to the model; the others are never shown to it.
    /// None: every tool.
    pub tools: Option<Vec<String>>,
    /// Same shape as `[permissions]`; wins over it.
    #[serde(default)]
    pub permissions: BTreeMap<String, Decision>,
    /// Model used unless the ask names one.
    pub model: Option<String>,
}

/// `[budgets]` in config.toml: token limits (input + output as providers report them).
/// None: no limit.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// Tokens one interactive ask may use (`zocalo ask`, chat, the API).
    pub ask_tokens: Option<u64>,
    /// Tokens one conversation may use in total.
    pub conversation_tokens: Option<u64>,
    /// Tokens one run of an automation may use.
    pub automation_run_tokens: Option<u64>,
    /// Tokens one sub-agent may use.
    pub agent_tokens: Option<u64>,
    /// Tokens all conversations together may use per UTC day.
    pub daily_tokens: Option<u64>,
}

/// Checks a `[permissions]` key or a persona's `tools` entry: a tool name, or a glob where
/// `*` stands for any run of characters.
pub fn check_tool_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty: give a tool name or a glob such as mcp__github__*".into());
    }
    if pattern.len() > 256 {
        return Err(format!("is {} bytes long; at most 256", pattern.len()));
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{pattern:?} has a space or control character: tool names have none"
        ));
    }
    Ok(())
}

/// `[daemon]` in config.toml. Durations are milliseconds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Run a local compute-pool worker inside the daemon (runs the jobs automations fire). On
    /// by default, so an automation completes with nothing but the daemon running; `false`
    /// leaves the jobs to `zocalo worker` nodes.
    pub worker: bool,
    /// Jobs the daemon's worker runs at once.
    pub worker_concurrency: usize,
    /// Run the scheduler loop (fires automations).
    pub scheduler: bool,
    /// The scheduler looks for new automations at least this often.
    pub tick_interval_ms: u64,
    /// First restart delay of a crashed service; doubles per crash in a row.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A service up this long has its backoff and crash count reset.
    pub reset_after_ms: u64,
    /// Crashes in a row restarted before a service is `failed`.
    pub max_retries: u32,
    /// SIGTERM to SIGKILL when stopping a service.
    pub stop_grace_ms: u64,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    /// Failed health checks in a row that make a running service `unhealthy`.
    pub unhealthy_after: u32,
    /// A service log is rotated before it grows past this many bytes.
    pub log_max_bytes: u64,
    /// Rotated log files kept per service.
    pub log_keep: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            worker: true,
            worker_concurrency: 2,
            scheduler: true,
            tick_interval_ms: 1000,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            reset_after_ms: 10_000,
            max_retries: 5,
            stop_grace_ms: 10_000,
            health_interval_ms: 5000,
            health_timeout_ms: 5000,
            unhealthy_after: 3,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
        }
    }
}

/// `[agents]` in config.toml.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Agents of one batch running at once (`--concurrency` overrides).
    pub concurrency: usize,
    /// Seconds one agent may run (`--timeout` overrides); none: no limit.
    pub timeout_secs: Option<f64>,
    /// How deep sub-agents may spawn sub-agents through the `spawn_agents` tool.
    pub max_depth: u32,
    /// Tasks one `spawn_agents` call may start.
    pub max_agents_per_call: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            timeout_secs: None,
            max_depth: 2,
            max_agents_per_call: 16,
        }
    }
}

/// `[memory]` in config.toml: what the ask loop does with long-term memory. The environment
/// overrides the two switches (`ZOCALO_MEMORY=off`, `ZOCALO_MEMORY_EPISODIC=off`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Recall memories into the context before each turn and offer the memory tools.
    pub enabled: bool,
    /// Store every user turn as an episodic memory.
    pub episodic: bool,
    /// Memories recalled into the context before a turn, at most.
    pub recall_limit: usize,
    /// Halve a memory's search score every this many days of age; none: age does not count.
    pub recency_half_life_days: Option<f64>,
    /// What computes the vectors: `"local"` (the in-process MiniLM, the default), `"none"`
    /// (keywords only) or `"PROVIDER:MODEL"`, any provider speaking the OpenAI
    /// `/embeddings` API (`"openai:text-embedding-3-small"`, `"ollama:nomic-embed-text"`).
    /// `ZOCALO_EMBEDDER` overrides it, with the same syntax.
    pub embedder: String,
}

/// `[memory] embedder`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedderSetting {
    /// The in-process MiniLM.
    Local,
    /// No vectors: keywords only.
    None,
    /// A provider's OpenAI-compatible `/embeddings` endpoint.
    Remote { provider: String, model: String },
}

impl EmbedderSetting {
    /// Parses `"local"`, `"none"` or `"PROVIDER:MODEL"`; the error says what is accepted.
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        match v {
            "local" => return Ok(Self::Local),
            "none" => return Ok(Self::None),
            _ => {}
        }
        let accepted = "use \"local\", \"none\" or \"PROVIDER:MODEL\" (e.g. \"openai:text-embedding-3-small\", \"ollama:nomic-embed-text\")";
        let Some((provider, model)) = v.split_once(':') else {
            return Err(format!("{value:?} is not an embedder: {accepted}"));
        };
        let (provider, model) = (provider.trim(), model.trim());
        if provider.is_empty() {
            return Err(format!("{value:?} names no provider: {accepted}"));
        }
        if model.is_empty() {
            return Err(format!("{value:?} names no model: {accepted}"));
        }
        if provider == "local" {
            return Err(format!(
                "{value:?}: the local embedder has one model; write \"local\""
            ));
        }
        if !provider
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{value:?}: provider name {provider:?} may use only letters, digits, '-' and '_'"
            ));
        }
        Ok(Self::Remote {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

impl MemorySettings {
    /// The embedder setting, parsed (validated when the config was loaded).
    pub fn embedder_setting(&self) -> Result<EmbedderSetting, String> {
        EmbedderSetting::parse(&self.embedder)
    }
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            episodic: true,
            recall_limit: 5,
            recency_half_life_days: None,
            embedder: "local".to_owned(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    /// Environment variable holding the key; none for keyless local servers.
    pub key_env: Option<String>,
    /// Models; the first is the provider's default.
    #[serde(default)]
    pub models: Vec<String>,
    /// `openai` (default) or `anthropic` wire format.
    pub api: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AskConfig {
    /// Replaces the built-in system prompt.
    pub system_prompt: Option<String>,
    /// Token budget for the whole context sent to the model.
    pub context_tokens: usize,
    /// Upper bound on model calls per ask (each tool round is one).
    pub max_steps: usize,
    /// `max_tokens` asked of the model per call.
    pub max_output_tokens: u32,
    /// When a conversation's history no longer fits `context_tokens`, have the model
    /// summarise its oldest turns (kept with the conversation) instead of only dropping them.
    pub compress_history: bool,
}

impl Default for AskConfig {
    fn default() -> Self {
        Self {
            system_prompt: None,
            context_tokens: 8192,
            max_steps: 8,
            max_output_tokens: 1024,
            compress_history: true,
        }
    }
}

/// `[mcp]`: the MCP servers zocalo uses as a client.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// `[mcp.servers.NAME]`; NAME prefixes the server's tools (`NAME__TOOL`).
    #[serde(default)]
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// One MCP server: a command started as a child speaking MCP on stdio (`command`, `args`,
/// `env`, `cwd`), or a streamable-HTTP endpoint (`url`, `headers`, `bearer_token_env`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Program to start (looked up on PATH).
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the child (it inherits zocalo's environment otherwise).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child.
    pub cwd: Option<std::path::PathBuf>,
    /// Streamable-HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
    pub url: Option<String>,
    /// Extra HTTP headers sent with every request to `url`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding a bearer token for `url` (sent as `Authorization`).
    pub bearer_token_env: Option<String>,
    /// Seconds one tool call may take before it fails (default 60).
    #[serde(default = "default_mcp_call_timeout")]
    pub timeout_secs: f64,
    /// Seconds the server may take to start and list its tools (default 20).
    #[serde(default = "default_mcp_startup_timeout")]
    pub startup_timeout_secs: f64,
    /// `false` keeps the server configured but unused.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_mcp_call_timeout() -> f64 {
    60.0
}
fn default_mcp_startup_timeout() -> f64 {
    20.0
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Parse TOML text; `path` only names the source in errors. A value of the wrong type
    /// is reported with where it is (`in `mcp.servers.files.env.LOG``), so an error inside a
    /// table says which table.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CoreError> {
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
                let at = e.path().to_string();
                let mut message = e.into_inner().to_string().trim().to_owned();
                if at != "." && !at.is_empty() {
                    message.push_str(&format!("\nin `{at}`"));
                }
                CoreError::Config {
                    path: path.to_owned(),
                    message,
                }
            })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Read `path` if it exists (a missing file is the default config), then apply
    /// `ZOCALO_PROVIDER`, `ZOCALO_MODEL` and `ZOCALO_DATABASE_URL`.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => {
                return Err(CoreError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        cfg.apply_env(|k| std::env::var(k).ok());
        if let Err(e) = cfg.memory.embedder_setting() {
            return Err(CoreError::Config {
                path: path.to_owned(),
                message: format!("ZOCALO_EMBEDDER / memory.embedder: {e}"),
            });
        }
        Ok(cfg)
    }

    /// Environment overrides, with the lookup injectable for tests.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(p) = non_empty("ZOCALO_PROVIDER") {
            self.provider = Some(p);
        }
        if let Some(m) = non_empty("ZOCALO_MODEL") {
            self.model = Some(m);
        }
        if let Some(u) = non_empty("ZOCALO_DATABASE_URL") {
            self.database_url = Some(u);
        }
        if let Some(e) = non_empty("ZOCALO_EMBEDDER") {
            self.memory.embedder = e;
        }
    }

    fn validate(&self, path: &Path) -> Result<(), CoreError> {
        let err = |message: String| CoreError::Config {
            path: path.to_owned(),
            message,
        };
        for (name, p) in &self.providers {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || name.is_empty()
            {
                return Err(err(format!(
                    "provider name {name:?} may use only letters, digits, '-' and '_'"
                )));
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(err(format!(
                    "providers.{name}.base_url must start with http:// or https://, got {:?}",
                    p.base_url
                )));
            }
            if let Some(api) = &p.api {
                if api != "openai" && api != "anthropic" {
                    return Err(err(format!(
                        "providers.{name}.api must be \"openai\" or \"anthropic\", got {api:?}"
                    )));
                }
            }
        }
        if self.ask.max_steps == 0 {
            return Err(err("ask.max_steps must be at least 1".into()));
        }
        if self.ask.context_tokens < 256 {
            return Err(err("ask.context_tokens must be at least 256".into()));
        }
        if self.agents.concurrency == 0 {
            return Err(err("agents.concurrency must be at least 1".into()));
        }
        if self.agents.max_agents_per_call == 0 {
            return Err(err("agents.max_agents_per_call must be at least 1".into()));
        }
        if let Some(t) = self.agents.timeout_secs {
            if !(t.is_finite() && t > 0.0) {
                return Err(err(format!(
                    "agents.timeout_secs must be a positive number of seconds, got {t}"
                )));
            }
        }
        if !(1..=100).contains(&self.memory.recall_limit) {
            return Err(err(format!(
                "memory.recall_limit must be between 1 and 100, got {}",
                self.memory.recall_limit
            )));
        }
        if let Some(d) = self.memory.recency_half_life_days {
            if !(d.is_finite() && d > 0.0) {
                return Err(err(format!(
                    "memory.recency_half_life_days must be a positive number of days, got {d}"
                )));
            }
        }
        if let Err(e) = self.memory.embedder_setting() {
            return Err(err(format!("memory.embedder: {e}")));
        }
        if let Some((name, _)) = self.requests_per_minute.iter().find(|(_, n)| **n == 0) {
            return Err(err(format!(
                "requests_per_minute.{name} must be at least 1 (remove it for no limit)"
            )));
        }
        let d = &self.daemon;
        for (key, v) in [
            ("tick_interval_ms", d.tick_interval_ms),
            ("backoff_base_ms", d.backoff_base_ms),
            ("backoff_max_ms", d.backoff_max_ms),
            ("health_interval_ms", d.health_interval_ms),
            ("health_timeout_ms", d.health_timeout_ms),
            ("log_max_bytes", d.log_max_bytes),
            ("worker_concurrency", d.worker_concurrency as u64),
            ("unhealthy_after", u64::from(d.unhealthy_after)),
        ] {
            if v == 0 {
                return Err(err(format!("daemon.{key} must be at least 1")));
            }
        }
        let sv = &self.server;
        for (key, v) in [
            ("max_body_bytes", sv.max_body_bytes),
            ("max_streams", sv.max_streams as u64),
            ("header_timeout_ms", sv.header_timeout_ms),
            (
                "auth_failures_per_minute",
                u64::from(sv.auth_failures_per_minute),
            ),
        ] {
            if v == 0 {
                return Err(err(format!("server.{key} must be at least 1")));
            }
        }
        let is_origin = |o: &str| {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            o == "*" || rest.is_some_and(|r| !r.is_empty() && !r.contains('/'))
        };
        if let Some(o) = sv.cors_origins.iter().find(|o| !is_origin(o)) {
            return Err(err(format!(
                "server.cors_origins: {o:?} is not an origin: write scheme://host[:port] with \
                 no path, such as \"https://app.example\", or \"*\""
            )));
        }
        if d.backoff_max_ms < d.backoff_base_ms {
            return Err(err(
                "daemon.backoff_max_ms must not be less than daemon.backoff_base_ms".into(),
            ));
        }
        if let Some(root) = &self.workspace.root {
            if !root.is_absolute() {
                return Err(err(format!(
                    "workspace.root must be an absolute path, got {:?}",
                    root.display().to_string()
                )));
            }
        }
        for pattern in self.permissions.keys() {
            check_tool_pattern(pattern)
                .map_err(|why| err(format!("permissions: the key {pattern:?} {why}")))?;
        }
        for (name, persona) in &self.personas {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(format!(
                    "persona name {name:?} may use only letters, digits, '-' and '_'"
                )));
            }
            for pattern in persona.tools.iter().flatten() {
                check_tool_pattern(pattern).map_err(|why| {
                    err(format!(
                        "personas.{name}.tools: the entry {pattern:?} {why}"
                    ))
                })?;
            }
            for pattern in persona.permissions.keys() {
                check_tool_pattern(pattern).map_err(|why| {
                    err(format!(
                        "personas.{name}.permissions: the key {pattern:?} {why}"
                    ))
                })?;
            }
            if persona
                .model
                .as_deref()
                .is_some_and(|m| m.trim().is_empty())
            {
                return Err(err(format!(
                    "personas.{name}.model is empty: give a model name or remove the key"
                )));
            }
        }
        let b = &self.budgets;
        for (key, v) in [
            ("ask_tokens", b.ask_tokens),
            ("conversation_tokens", b.conversation_tokens),
            ("automation_run_tokens", b.automation_run_tokens),
            ("agent_tokens", b.agent_tokens),
            ("daily_tokens", b.daily_tokens),
        ] {
            if v == Some(0) {
                return Err(err(format!(
                    "budgets.{key} must be at least 1 (remove it for no limit)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, CoreError> {
        Config::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn server_limits_have_defaults_and_are_checked() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.server.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(cfg.server.max_streams, 1000);
        assert!(cfg.server.cors_origins.is_empty());
        let cfg = parse(
            "[server]\nmax_streams = 5\ncors_origins = [\"https://app.example\", \"http://localhost:3000\"]",
        )
        .unwrap();
        assert_eq!(cfg.server.max_streams, 5);
        assert_eq!(cfg.server.header_timeout_ms, 10_000);
        for (bad, needle) in [
            ("[server]\nmax_body_bytes = 0", "server.max_body_bytes"),
            (
                "[server]\nheader_timeout_ms = 0",
                "server.header_timeout_ms",
            ),
            (
                "[server]\ncors_origins = [\"app.example\"]",
                "not an origin",
            ),
            (
                "[server]\ncors_origins = [\"https://app.example/\"]",
                "not an origin",
            ),
            ("[server]\ncors_origins = [\"https://\"]", "not an origin"),
            ("[server]\ncors = true", "unknown field"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn full_example_parses() {
        let cfg = parse(
            r#"
            provider = "openai"
            model = "gpt-4o-mini"
            fallback = ["groq", "local"]
            [providers.mine]
            base_url = "https://llm.example/v1"
            key_env = "MINE_API_KEY"
            models = ["m1", "m2"]
            [ask]
            max_steps = 3
            [agents]
            concurrency = 50
            timeout_secs = 90.5
            [memory]
            episodic = false
            recency_half_life_days = 45
            [requests_per_minute]
            openai = 500
            "#,
        )
        .unwrap();
        assert_eq!(cfg.provider.as_deref(), Some("openai"));
        assert_eq!(cfg.fallback, ["groq", "local"]);
        assert_eq!(cfg.providers["mine"].models[0], "m1");
        assert_eq!(cfg.ask.max_steps, 3);
        assert_eq!(cfg.ask.context_tokens, AskConfig::default().context_tokens);
        assert_eq!(cfg.agents.concurrency, 50);
        assert_eq!(cfg.agents.timeout_secs, Some(90.5));
        assert_eq!(cfg.agents.max_depth, AgentsConfig::default().max_depth);
        assert!(!cfg.memory.episodic && cfg.memory.enabled);
        assert_eq!(cfg.memory.recency_half_life_days, Some(45.0));
        assert_eq!(
            cfg.memory.recall_limit,
            MemorySettings::default().recall_limit
        );
        assert_eq!(cfg.requests_per_minute["openai"], 500);
        assert_eq!(cfg.daemon, DaemonConfig::default());
        // The daemon's worker is on unless turned off: an automation needs nothing else.
        assert!(DaemonConfig::default().worker);
        let cfg = parse("[daemon]\nworker = false\nstop_grace_ms = 250").unwrap();
        assert!(!cfg.daemon.worker);
        assert_eq!(cfg.daemon.stop_grace_ms, 250);
        assert_eq!(cfg.daemon.max_retries, DaemonConfig::default().max_retries);
    }

    #[test]
    fn embedder_is_local_unless_set_and_the_environment_overrides_it() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.memory.embedder_setting(), Ok(EmbedderSetting::Local));
        let cfg = parse("[memory]\nembedder = \"openai:text-embedding-3-small\"").unwrap();
        assert_eq!(
            cfg.memory.embedder_setting(),
            Ok(EmbedderSetting::Remote {
                provider: "openai".into(),
                model: "text-embedding-3-small".into()
            })
        );
        // A model name may itself hold a colon (ollama tags).
        let cfg = parse("[memory]\nembedder = \"ollama:nomic-embed-text:v1.5\"").unwrap();
        assert_eq!(
            cfg.memory.embedder_setting(),
            Ok(EmbedderSetting::Remote {
                provider: "ollama".into(),
                model: "nomic-embed-text:v1.5".into()
            })
        );
        let mut cfg = parse("[memory]\nembedder = \"none\"").unwrap();
        assert_eq!(cfg.memory.embedder_setting(), Ok(EmbedderSetting::None));
        cfg.apply_env(|k| (k == "ZOCALO_EMBEDDER").then(|| "ollama:nomic-embed-text".into()));
        assert_eq!(cfg.memory.embedder, "ollama:nomic-embed-text");
        cfg.apply_env(|k| (k == "ZOCALO_EMBEDDER").then(|| "  ".into()));
        assert_eq!(cfg.memory.embedder, "ollama:nomic-embed-text");
    }

    #[test]
    fn a_bad_embedder_in_the_environment_is_a_config_error() {
        // Config::load reads the process environment: check the same path through the
        // parser the loader uses on the overridden value.
        let mut cfg = parse("").unwrap();
        cfg.apply_env(|k| (k == "ZOCALO_EMBEDDER").then(|| "openai:".into()));
        let e = cfg.memory.embedder_setting().unwrap_err();
        assert!(e.contains("names no model"), "{e}");
    }

    #[test]
    fn history_compression_is_on_unless_turned_off() {
        assert!(parse("").unwrap().ask.compress_history);
        assert!(parse("[ask]\nmax_steps = 2").unwrap().ask.compress_history);
        assert!(
            !parse("[ask]\ncompress_history = false")
                .unwrap()
                .ask
                .compress_history
        );
        let e = parse("[ask]\ncompress_history = \"no\"").unwrap_err();
        assert!(e.to_string().contains("compress_history"), "{e}");
    }

    #[test]
    fn malformed_inputs_name_the_problem() {
        let cases = [
            ("provider = ", "line 1"),
            ("provider = 3", "provider"),
            ("nonsense = true", "nonsense"),
            ("[providers.x]\nbase_url = \"ftp://h\"", "base_url"),
            ("[providers.x]\nkey_env = \"K\"", "base_url"),
            ("[providers.\"a b\"]\nbase_url = \"http://h\"", "a b"),
            (
                "[providers.x]\nbase_url = \"http://h\"\napi = \"grpc\"",
                "api",
            ),
            ("[ask]\nmax_steps = 0", "max_steps"),
            ("[ask]\ncontext_tokens = -1", "context_tokens"),
            ("[ask]\ncompress_history = 1", "compress_history"),
            ("[agents]\nconcurrency = 0", "agents.concurrency"),
            ("[agents]\ntimeout_secs = -2.0", "agents.timeout_secs"),
            ("[agents]\nmax_agents_per_call = 0", "max_agents_per_call"),
            ("[agents]\nfanout = 3", "fanout"),
            ("[memory]\nrecall_limit = 0", "memory.recall_limit"),
            ("[memory]\nrecall_limit = 101", "memory.recall_limit"),
            ("[memory]\nrecall_limit = -1", "recall_limit"),
            (
                "[memory]\nrecency_half_life_days = 0.0",
                "recency_half_life_days",
            ),
            (
                "[memory]\nrecency_half_life_days = -3.0",
                "recency_half_life_days",
            ),
            (
                "[memory]\nrecency_half_life_days = nan",
                "recency_half_life_days",
            ),
            (
                "[memory]\nrecency_half_life_days = \"30d\"",
                "recency_half_life_days",
            ),
            ("[memory]\nepisodic = \"off\"", "episodic"),
            ("[memory]\nhalf_life = 3", "half_life"),
            ("[memory]\nembedder = \"\"", "memory.embedder"),
            ("[memory]\nembedder = \"openai\"", "memory.embedder"),
            ("[memory]\nembedder = \"openai:\"", "names no model"),
            (
                "[memory]\nembedder = \":text-embedding-3-small\"",
                "names no provider",
            ),
            ("[memory]\nembedder = \"local:minilm\"", "write \"local\""),
            ("[memory]\nembedder = \"open ai:m\"", "letters, digits"),
            ("[memory]\nembedder = 3", "embedder"),
            ("memory = 1", "memory"),
            (
                "[requests_per_minute]\nopenai = 0",
                "requests_per_minute.openai",
            ),
            ("[requests_per_minute]\nopenai = \"fast\"", "expected u32"),
            ("[daemon]\nworker = \"yes\"", "worker"),
            ("[daemon]\nstop_grace = 5", "stop_grace"),
            ("[daemon]\nbackoff_base_ms = 0", "backoff_base_ms"),
            (
                "[daemon]\nbackoff_base_ms = 500\nbackoff_max_ms = 100",
                "backoff_max_ms",
            ),
            ("[mcp]\nserver = 1", "server"),
            ("mcp = 3", "mcp"),
            ("[mcp.servers.a]\ncommand = \"x\"\nargs = \"-v\"", "args"),
            ("[mcp.servers.a]\ncommand = \"x\"\nenv = { K = 1 }", "env"),
            ("[mcp.servers.a]\ncommand = \"x\"\ncmd = \"y\"", "cmd"),
            ("[workspace]\nroot = \"work\"", "workspace.root"),
            ("[workspace]\nroot = 3", "root"),
            ("[workspace]\ndir = \"/w\"", "dir"),
            (
                "[tools.web_fetch]\nallow_private = \"yes\"",
                "allow_private",
            ),
            ("[tools.web_fetch]\nprivate = true", "private"),
            ("[tools.shelll]\ntimeout = 3", "shelll"),
            ("[permissions]\nshell = \"maybe\"", "permissions.shell"),
            ("[permissions]\nshell = true", "permissions.shell"),
            ("[permissions]\n\"\" = \"allow\"", "permissions"),
            ("[permissions]\n\"file read\" = \"allow\"", "file read"),
            ("permissions = [\"shell\"]", "permissions"),
            ("[personas.\"a b\"]\nmodel = \"m\"", "a b"),
            ("[personas.p]\ntools = \"shell\"", "personas.p.tools"),
            ("[personas.p]\ntools = [\"\"]", "personas.p.tools"),
            ("[personas.p]\ntools = [\"a b\"]", "personas.p.tools"),
            (
                "[personas.p]\npermissions = { shell = \"never\" }",
                "personas.p.permissions.shell",
            ),
            (
                "[personas.p]\npermissions = { \" \" = \"deny\" }",
                "personas.p.permissions",
            ),
            ("[personas.p]\nmodel = \" \"", "personas.p.model"),
            ("[personas.p]\nprompt = \"x\"", "prompt"),
            ("[budgets]\nask_tokens = 0", "budgets.ask_tokens"),
            ("[budgets]\ndaily_tokens = -5", "budgets.daily_tokens"),
            ("[budgets]\nagent_tokens = 1.5", "budgets.agent_tokens"),
            (
                "[budgets]\nconversation_tokens = \"lots\"",
                "conversation_tokens",
            ),
            (
                "[budgets]\nautomation_run_tokens = 0",
                "budgets.automation_run_tokens",
            ),
            ("[budgets]\nhourly_tokens = 5", "hourly_tokens"),
        ];
        for (text, needle) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("config.toml"), "{e}");
        }
    }

    #[test]
    fn guard_rails_parse() {
        let cfg = parse(
            r#"
            [workspace]
            root = "/srv/work"
            [tools.web_fetch]
            allow_private = true
            [permissions]
            shell = "allow"
            "mcp__github__*" = "deny"
            [personas.researcher]
            system_prompt = "You research."
            tools = ["web_fetch", "file_*"]
            permissions = { file_write = "deny" }
            model = "gpt-4o"
            [personas.bare]
            [budgets]
            ask_tokens = 20000
            daily_tokens = 1000000
            "#,
        )
        .unwrap();
        assert_eq!(cfg.workspace.root.as_deref(), Some(Path::new("/srv/work")));
        assert!(cfg.tools.web_fetch.allow_private);
        assert_eq!(cfg.permissions["shell"], Decision::Allow);
        assert_eq!(cfg.permissions["mcp__github__*"], Decision::Deny);
        let r = &cfg.personas["researcher"];
        assert_eq!(r.system_prompt.as_deref(), Some("You research."));
        assert_eq!(r.tools.as_deref().unwrap(), ["web_fetch", "file_*"]);
        assert_eq!(r.permissions["file_write"], Decision::Deny);
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert_eq!(cfg.personas["bare"], PersonaConfig::default());
        assert_eq!(cfg.budgets.ask_tokens, Some(20_000));
        assert_eq!(cfg.budgets.daily_tokens, Some(1_000_000));
        assert_eq!(cfg.budgets.agent_tokens, None);
        // Defaults: no root (the caller picks $ZOCALO_HOME/workspace), private nets refused,
        // no overrides, no personas, no limits.
        let d = parse("").unwrap();
        assert_eq!(d.workspace.root, None);
        assert!(!d.tools.web_fetch.allow_private);
        assert!(d.permissions.is_empty() && d.personas.is_empty());
        assert_eq!(d.budgets, BudgetsConfig::default());
    }

    #[test]
    fn mcp_servers_parse() {
        let cfg = parse(
            r#"
            [mcp.servers.files]
            command = "npx"
            args = ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
            env = { LOG = "1" }
            [mcp.servers.remote]
            url = "https://mcp.example/mcp"
            headers = { X-Team = "a" }
            bearer_token_env = "REMOTE_TOKEN"
            timeout_secs = 5
            "#,
        )
        .unwrap();
        let files = &cfg.mcp.servers["files"];
        assert_eq!(files.command.as_deref(), Some("npx"));
        assert_eq!(files.args.len(), 3);
        assert_eq!(files.env["LOG"], "1");
        assert_eq!(files.timeout_secs, 60.0);
        assert!(files.enabled);
        let remote = &cfg.mcp.servers["remote"];
        assert_eq!(remote.url.as_deref(), Some("https://mcp.example/mcp"));
        assert_eq!(remote.headers["X-Team"], "a");
        assert_eq!(remote.timeout_secs, 5.0);
    }

    #[test]
    fn env_overrides_file() {
        let mut cfg = parse("provider = \"openai\"").unwrap();
        cfg.apply_env(|k| match k {
            "ZOCALO_PROVIDER" => Some("anthropic".into()),
            "ZOCALO_MODEL" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(cfg.provider.as_deref(), Some("anthropic"));
        assert_eq!(cfg.model, None);
    }

    #[test]
    fn missing_file_is_default() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Config::load(&tmp.path().join("none.toml")).unwrap();
        assert_eq!(cfg.fallback.len(), 0);
    }
}
