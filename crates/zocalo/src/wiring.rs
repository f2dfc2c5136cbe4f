//! Where the CLI puts the crates together: data home, config, store, provider, tools.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use zocalo_agent::{AgentRunner, AskSettings, Asker, SpawnAgentsTool, SpawnLimits, ToolRegistry};
use zocalo_core::paths::DataHome;
use zocalo_core::{Config, ConversationId, Secret};
use zocalo_llm::{FallbackProvider, Gate, LlmError, Provider, Registry, Throttled, Vault};
use zocalo_store::Store;

use crate::cli::ModelArgs;
use crate::exit::usage;

/// The loaded environment of one command.
#[derive(Clone)]
pub struct Ctx {
    pub home: DataHome,
    pub config: Config,
    /// `--database-url` / `ZOCALO_DATABASE_URL`, else config's `database_url`.
    pub database_url: Option<String>,
}

impl Ctx {
    pub fn load(database_url: Option<String>) -> anyhow::Result<Self> {
        let home = DataHome::from_env()?;
        let config = Config::load(&home.config_file())?;
        let database_url = database_url
            .filter(|u| !u.trim().is_empty())
            .or_else(|| config.database_url.clone());
        Ok(Self {
            home,
            config,
            database_url,
        })
    }

    /// Open the store (running migrations): the given URL, else the SQLite file in the home.
    pub async fn store(&self) -> anyhow::Result<Store> {
        match &self.database_url {
            Some(url) => Ok(Store::connect(url).await?),
            None => {
                self.home.ensure()?;
                let path = self.home.database();
                Store::open_sqlite_file(&path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))
            }
        }
    }

    pub fn registry(&self) -> anyhow::Result<Registry> {
        Ok(Registry::from_config(&self.config)?)
    }

    /// The provider for this command: `--provider`, else `ZOCALO_PROVIDER` / config, else the
    /// first vendor whose key is in the environment or the vault (OpenAI, then Anthropic).
    /// Keys: flag > environment > vault. With `fallback = [...]` in config.toml the result is
    /// a [`FallbackProvider`] over the chosen provider and the usable fallback members.
    pub fn provider(
        &self,
        args: &ModelArgs,
    ) -> anyhow::Result<(Arc<dyn Provider>, Option<String>)> {
        let registry = self.registry()?;
        let env = |k: &str| std::env::var(k).ok();
        let vault = self.vault_lookup();
        let name = match args
            .provider
            .clone()
            .or_else(|| self.config.provider.clone())
        {
            Some(name) => name,
            // Nothing chosen and no vendor key anywhere: the embedded local model.
            None => detect_provider(&env, &self.vault_names())
                .unwrap_or_else(|| zocalo_local::PROVIDER_NAME.to_owned()),
        };
        let primary = self.build_provider(&registry, &name, &env, &vault)?;
        let model = args.model.clone().or_else(|| self.config.model.clone());
        let mut chain = vec![primary];
        for member in &self.config.fallback {
            if member == &name || chain.iter().any(|p| p.name() == member) {
                continue;
            }
            match self.build_provider(&registry, member, &env, &vault) {
                Ok(p) => chain.push(p),
                Err(e) if is_unknown_provider(&e) => {
                    return Err(e.context(format!(
                        "invalid `fallback` in {}",
                        self.home.config_file().display()
                    )))
                }
                Err(e) => {
                    tracing::warn!(provider = %member, error = %format!("{e:#}"), "fallback member skipped")
                }
            }
        }
        tracing::debug!(
            chain = ?chain.iter().map(|p| p.name()).collect::<Vec<_>>(),
            model = ?model,
            "provider chain resolved (keys: flag > environment > vault)"
        );
        let provider: Arc<dyn Provider> = if chain.len() == 1 {
            chain.remove(0)
        } else {
            match FallbackProvider::new(chain) {
                Some(f) => Arc::new(f),
                None => anyhow::bail!("the provider chain is empty"),
            }
        };
        Ok((provider, model))
    }

    /// Where local model weights live: `ZOCALO_MODELS_DIR`, else `models/` in the data home.
    pub fn models_dir(&self) -> std::path::PathBuf {
        std::env::var_os("ZOCALO_MODELS_DIR")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| self.home.models_dir())
    }

    /// One provider by name, no fallback chain (the server's `PROVIDER/MODEL` pass-through).
    pub fn provider_named(&self, name: &str) -> anyhow::Result<Arc<dyn Provider>> {
        let registry = self.registry()?;
        let env = |k: &str| std::env::var(k).ok();
        let vault = self.vault_lookup();
        self.build_provider(&registry, name, &env, &vault)
    }

    /// One provider by name: `local` is the in-process model, the rest come from the registry
    /// (keys: flag > environment > vault). An unknown name lists every known one.
    fn build_provider(
        &self,
        registry: &Registry,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
        vault: &dyn Fn(&str) -> Result<Option<Secret>, LlmError>,
    ) -> anyhow::Result<Arc<dyn Provider>> {
        if name == zocalo_local::PROVIDER_NAME {
            let dir = self.models_dir();
            // Loading maps and checks ~300 MB of weights: keep it off the async workers where
            // the runtime allows (block_in_place panics on a current-thread runtime).
            let load = || zocalo_local::LocalChat::load(&dir);
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let chat = if multi_thread {
                tokio::task::block_in_place(load)?
            } else {
                load()?
            };
            return Ok(Arc::new(chat));
        }
        match registry.build_with_vault(name, None, env, vault) {
            Err(LlmError::UnknownProvider { name, mut known }) => {
                known.push(zocalo_local::PROVIDER_NAME.to_owned());
                known.sort();
                Err(LlmError::UnknownProvider { name, known }.into())
            }
            other => Ok(other?),
        }
    }

    /// Looks keys up in the vault: decrypted at most once per command, and only when asked
    /// for a provider the vault holds (so a locked vault never blocks a key from the env).
    pub fn vault_lookup(&self) -> impl Fn(&str) -> Result<Option<Secret>, LlmError> {
        let vault = Vault::in_dir(self.home.root());
        let names = std::cell::OnceCell::new();
        let keys = std::cell::OnceCell::new();
        move |name: &str| {
            let held: &Vec<String> = match names.get() {
                Some(n) => n,
                None => {
                    let n = vault.names()?;
                    names.get_or_init(|| n)
                }
            };
            if !held.iter().any(|n| n == name) {
                return Ok(None);
            }
            let loaded: &BTreeMap<String, Secret> = match keys.get() {
                Some(k) => k,
                None => {
                    let k = vault.load()?;
                    keys.get_or_init(|| k)
                }
            };
            Ok(loaded.get(name).cloned())
        }
    }

    /// Provider names stored in the vault (no decryption needed).
    pub fn vault_names(&self) -> Vec<String> {
        Vault::in_dir(self.home.root()).names().unwrap_or_default()
    }

    /// The ask loop: memory, skills, built-in tools and `spawn_agents` (bound to this loop).
    pub fn asker(&self, store: Store, provider: Arc<dyn Provider>, tools: bool) -> Arc<Asker> {
        let memory = crate::commands::memory::ask_memory(self, store.clone());
        self.build_asker(store, provider, tools, true, memory)
    }

    /// [`Ctx::asker`] with the memory given (the server shares one [`zocalo_memory::Memory`]
    /// between the ask loop and its memory API, so both see the same index).
    pub fn asker_with_memory(
        &self,
        store: Store,
        provider: Arc<dyn Provider>,
        tools: bool,
        memory: Option<zocalo_memory::AskMemory>,
    ) -> Arc<Asker> {
        self.build_asker(store, provider, tools, true, memory)
    }

    /// The ask loop sub-agents run in: [`Ctx::asker`] behind the provider's shared rate gate
    /// ([`Ctx::throttled`]), and without episodic memory (an agent's prompt is not something
    /// the user said).
    pub fn agent_asker(
        &self,
        store: Store,
        provider: Arc<dyn Provider>,
        tools: bool,
    ) -> Arc<Asker> {
        let memory = crate::commands::memory::ask_memory(self, store.clone());
        self.build_asker(store, self.throttled(provider), tools, false, memory)
    }

    /// `provider` behind its process-wide [`Gate`]: `requests_per_minute.NAME` from
    /// config.toml, and every request pauses after a 429.
    pub fn throttled(&self, provider: Arc<dyn Provider>) -> Arc<dyn Provider> {
        let rpm = self
            .config
            .requests_per_minute
            .get(provider.name())
            .copied();
        let gate = Gate::shared(provider.name(), rpm);
        Arc::new(Throttled::new(provider, gate))
    }

    /// Limits of the `spawn_agents` tool, from `[agents]` in config.toml.
    pub fn spawn_limits(&self) -> SpawnLimits {
        let a = &self.config.agents;
        SpawnLimits {
            max_depth: a.max_depth,
            max_agents: a.max_agents_per_call,
            concurrency: a.concurrency,
            timeout: a
                .timeout_secs
                .map(std::time::Duration::from_secs_f64)
                .or(SpawnLimits::default().timeout),
            ..SpawnLimits::default()
        }
    }

    fn build_asker(
        &self,
        store: Store,
        provider: Arc<dyn Provider>,
        tools: bool,
        episodic: bool,
        mut memory: Option<zocalo_memory::AskMemory>,
    ) -> Arc<Asker> {
        let mut settings = AskSettings::from_config(&self.config.ask);
        // Memory: recalled memories join the context before each turn, user turns are kept
        // as episodic memories, and the model gets memory_save / memory_search.
        if let Some(m) = memory.as_mut() {
            m.episodic &= episodic;
        }
        let spawn_tool =
            tools.then(|| SpawnAgentsTool::new(self.spawn_limits(), Some(store.clone())));
        let tools = if tools {
            let mut registry = ToolRegistry::builtin();
            if let Some(t) = &spawn_tool {
                registry.register(t.clone());
            }
            for tool in memory.iter().flat_map(|m| m.tools()) {
                registry.register(tool);
            }
            // Browser: offered only where Chromium is installed. One Chromium for the
            // process, a tab per conversation, closed when idle.
            if zocalo_browser::find_chromium().is_ok() {
                let config = zocalo_browser::ToolsConfig::new(
                    self.home.root().join("browser").join("screenshots"),
                );
                for tool in zocalo_browser::Sessions::new(config).tools() {
                    registry.register(tool);
                }
            }
            // Skills: only names and descriptions go into the prompt; the model opens the
            // rest with skill_open / skill_read / skill_run. Hot reload keeps the tools live
            // for a long chat. No skills, no catalog and no skill tools.
            let skills =
                zocalo_skills::Skills::load(zocalo_skills::default_roots(self.home.root(), &[]));
            for w in skills.warnings() {
                tracing::warn!("{w}");
            }
            if let Some(index) = zocalo_skills::prompt_index(&skills) {
                if let Err(e) = skills.watch() {
                    tracing::warn!("skills will not hot-reload: {e}");
                }
                // This binary is the Landlock launcher (`zocalo __skill-sandbox`).
                let limits = zocalo_skills::RunLimits {
                    launcher: std::env::current_exe().ok(),
                    ..zocalo_skills::RunLimits::default()
                };
                for tool in zocalo_skills::skill_tools(&skills, limits) {
                    registry.register(tool);
                }
                settings.system_prompt = format!("{}\n\n{index}", settings.system_prompt);
            }
            // MCP: the tools of the servers in config.toml, as NAME__TOOL (started now).
            for tool in crate::commands::mcp::client_tools(self) {
                registry.register(tool);
            }
            registry
        } else {
            ToolRegistry::new()
        };
        let asker = Asker::new(store, provider, tools, settings);
        let asker = Arc::new(match memory {
            Some(m) => {
                asker.with_context_source(Arc::new(crate::commands::memory::MemoryContext(m)))
            }
            None => asker,
        });
        if let Some(t) = spawn_tool {
            let runner: Arc<dyn AgentRunner> = asker.clone();
            t.bind(&runner);
        }
        asker
    }
}

fn is_unknown_provider(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<LlmError>(),
        Some(LlmError::UnknownProvider { .. })
    )
}

fn detect_provider(env: &dyn Fn(&str) -> Option<String>, in_vault: &[String]) -> Option<String> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let stored = |p: &str| in_vault.iter().any(|n| n == p);
    if set("OPENAI_API_KEY") {
        Some("openai".into())
    } else if set("ANTHROPIC_API_KEY") {
        Some("anthropic".into())
    } else if stored("openai") {
        Some("openai".into())
    } else if stored("anthropic") {
        Some("anthropic".into())
    } else {
        None
    }
}

/// Parse a `--conv` value, as a usage error when malformed.
pub fn parse_conversation(id: Option<&str>) -> anyhow::Result<Option<ConversationId>> {
    id.map(|s| {
        s.parse::<ConversationId>().map_err(|_| {
            usage(format!(
                "invalid conversation id {s:?}: ids look like conv_0192f…"
            ))
        })
    })
    .transpose()
}
