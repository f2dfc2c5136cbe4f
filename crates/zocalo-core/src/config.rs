//! `config.toml` in the data home, with environment overrides applied by [`Config::load`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

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
    /// MCP servers; read by the MCP crate.
    #[serde(default)]
    pub mcp: Option<toml::Value>,
    /// Daemon settings (`[daemon]`): what `zocalo daemon` (and `zocalo serve`) runs besides
    /// the services, and the supervisor's timings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Sub-agent defaults (`zocalo agents`, the `spawn_agents` tool).
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Requests per minute allowed per provider name (`openai = 500`): requests beyond it
    /// wait for their turn, shared by every agent and ask of the process.
    #[serde(default)]
    pub requests_per_minute: BTreeMap<String, u32>,
}

/// `[daemon]` in config.toml. Durations are milliseconds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Run a local compute-pool worker inside the daemon (runs the jobs automations fire).
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
            worker: false,
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

impl Config {
    /// Parse TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CoreError> {
        let cfg: Config = toml::from_str(text).map_err(|e| CoreError::Config {
            path: path.to_owned(),
            message: e.to_string().trim().to_owned(),
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
        if d.backoff_max_ms < d.backoff_base_ms {
            return Err(err(
                "daemon.backoff_max_ms must not be less than daemon.backoff_base_ms".into(),
            ));
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
        assert_eq!(cfg.requests_per_minute["openai"], 500);
        assert_eq!(cfg.daemon, DaemonConfig::default());
        let cfg = parse("[daemon]\nworker = true\nstop_grace_ms = 250").unwrap();
        assert!(cfg.daemon.worker);
        assert_eq!(cfg.daemon.stop_grace_ms, 250);
        assert_eq!(cfg.daemon.max_retries, DaemonConfig::default().max_retries);
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
        ];
        for (text, needle) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("config.toml"), "{e}");
        }
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
