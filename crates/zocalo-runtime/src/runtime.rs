//! [`Runtime`]: the loaded environment of one process (data home, config, database URL) and the
//! resources it shares between every use (the store, the embedder, the memory, the skills and
//! their watcher, the browser, the MCP clients, the providers), each built once, on first use.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use serde::Serialize;
use zocalo_agent::{AgentRunner, AskSettings, Asker, SpawnAgentsTool, SpawnLimits, ToolRegistry};
use zocalo_core::embed::Embedder;
use zocalo_core::paths::DataHome;
use zocalo_core::{Config, ConversationId, Secret, Tool};
use zocalo_llm::{FallbackProvider, Gate, LlmError, Provider, Registry, Throttled, Vault};
use zocalo_memory::{AskMemory, Memory};
use zocalo_store::Store;

use crate::errors::usage;

/// Which provider and model an ask uses, and whether it may call tools. Empty: the default
/// (`ZOCALO_PROVIDER` / config / the first provider with a key / the local model).
#[derive(Clone, Debug, Default)]
pub struct ModelChoice {
    /// Provider name (openai, anthropic, groq, ..., local, or one from config.toml).
    pub provider: Option<String>,
    /// Model name; default: `ZOCALO_MODEL`, config, then the provider's default.
    pub model: Option<String>,
    /// Offer no tools to the model.
    pub no_tools: bool,
}

/// How to open a [`Runtime`]: the same data home and database the CLI would use unless set.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The data home; default `$ZOCALO_HOME`, else `~/.zocalo`.
    pub home: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; default `ZOCALO_DATABASE_URL`, then config's
    /// `database_url`, then the SQLite file in the data home.
    pub database_url: Option<String>,
}

/// How often this process built each shared resource: the proof that they are built once.
/// `zocalo serve` logs each first build at info level (`runtime: built …`).
#[derive(Debug, Default)]
struct Loads {
    embedder: AtomicUsize,
    memory: AtomicUsize,
    browser: AtomicUsize,
    skills: AtomicUsize,
    mcp: AtomicUsize,
    providers: AtomicUsize,
}

/// A snapshot of [`Runtime::loads`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadCounts {
    pub embedder: usize,
    pub memory: usize,
    pub browser: usize,
    pub skills: usize,
    pub mcp: usize,
    pub providers: usize,
}

/// An ask loop is built once per (use, provider, tools) and rebuilt when the skills change:
/// the skills catalog is part of its system prompt.
type AskerKey = (&'static str, String, bool, Option<String>);

/// What a process builds once and shares.
#[derive(Default)]
struct Shared {
    store: tokio::sync::OnceCell<Store>,
    embedder: OnceLock<Result<Arc<dyn Embedder>, Option<String>>>,
    memory: OnceLock<Arc<Memory>>,
    skills: OnceLock<zocalo_skills::Skills>,
    browser: OnceLock<Vec<Arc<dyn Tool>>>,
    mcp: OnceLock<zocalo_mcp::McpClients>,
    computer: OnceLock<Vec<Arc<dyn Tool>>>,
    askers: Mutex<HashMap<AskerKey, (u64, Arc<Asker>)>>,
    providers: Mutex<HashMap<String, Arc<dyn Provider>>>,
    loads: Loads,
    /// Woken when a webhook was recorded, so this process's hook loop answers it at once.
    hooks: tokio::sync::Notify,
}

fn built(counter: &AtomicUsize, what: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(target: "zocalo_runtime", "runtime: built {what} (#{n} in this process)");
}

/// The composition root. Cheap to clone: clones share every resource.
#[derive(Clone)]
pub struct Runtime {
    pub home: DataHome,
    pub config: Config,
    /// `--database-url` / `ZOCALO_DATABASE_URL`, else config's `database_url`.
    pub database_url: Option<String>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("home", &self.home.root())
            .field("database", &self.database_label())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Loads the data home and config. Nothing is opened until it is used: the store on the
    /// first [`Runtime::store`], the models on the first ask.
    pub fn load(database_url: Option<String>) -> anyhow::Result<Self> {
        let home = DataHome::from_env()?;
        Self::with_home(home, database_url)
    }

    /// [`Runtime::load`] with [`Options`] (the library's entry point), and the store opened
    /// (migrations run), so a bad URL or an unreachable database fails here.
    pub async fn open(options: Options) -> anyhow::Result<Self> {
        let home = match options.home {
            Some(dir) => DataHome::at(dir),
            None => DataHome::from_env()?,
        };
        let url = options
            .database_url
            .or_else(|| std::env::var("ZOCALO_DATABASE_URL").ok());
        let rt = Self::with_home(home, url)?;
        rt.store().await?;
        Ok(rt)
    }

    fn with_home(home: DataHome, database_url: Option<String>) -> anyhow::Result<Self> {
        // A malformed --database-url / ZOCALO_DATABASE_URL is reported before anything else
        // (config.toml, models, keys) is looked at.
        let database_url = database_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &database_url {
            Store::check_url(url)?;
        }
        let config = Config::load(&home.config_file())?;
        // `[mcp.servers.NAME]` is the MCP client's to check.
        zocalo_mcp::config::check(&config.mcp).map_err(|message| {
            zocalo_core::CoreError::Config {
                path: home.config_file(),
                message,
            }
        })?;
        crate::memory::check_embedder_setting(&config)?;
        let database_url = match database_url {
            Some(url) => Some(url),
            None => {
                let from_config = config.database_url.clone();
                if let Some(url) = &from_config {
                    Store::check_url(url)?;
                }
                from_config
            }
        };
        Ok(Self {
            home,
            config,
            database_url,
            shared: Arc::default(),
        })
    }

    /// Which database this runtime uses, as shown to users (no password).
    /// Woken when this process recorded a webhook request (the daemon's hook loop waits on it).
    pub fn hooks_signal(&self) -> &tokio::sync::Notify {
        &self.shared.hooks
    }

    pub fn database_label(&self) -> String {
        match &self.database_url {
            Some(url) => zocalo_store::redact_url(url),
            None => format!("sqlite://{}", self.home.database().display()),
        }
    }

    /// The store (migrations run on first use), opened once per process.
    pub async fn store(&self) -> anyhow::Result<Store> {
        let store = self
            .shared
            .store
            .get_or_try_init(|| async {
                match &self.database_url {
                    Some(url) => Ok::<Store, anyhow::Error>(Store::connect(url).await?),
                    None => {
                        self.home.ensure()?;
                        let path = self.home.database();
                        Store::open_sqlite_file(&path)
                            .await
                            .with_context(|| format!("opening {}", path.display()))
                    }
                }
            })
            .await?;
        Ok(store.clone())
    }

    /// Closes the store's connections, if it was opened (at the end of a process).
    /// Bounded (5 s): a stalled database must not keep the process alive.
    pub async fn close(&self) {
        if let Some(store) = self.shared.store.get() {
            if tokio::time::timeout(std::time::Duration::from_secs(5), store.close())
                .await
                .is_err()
            {
                tracing::warn!("closing the database connections took over 5 s; leaving them");
            }
        }
    }

    /// How many times this process built each shared resource (1 at most, by design).
    pub fn loads(&self) -> LoadCounts {
        let l = &self.shared.loads;
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        LoadCounts {
            embedder: get(&l.embedder),
            memory: get(&l.memory),
            browser: get(&l.browser),
            skills: get(&l.skills),
            mcp: get(&l.mcp),
            providers: get(&l.providers),
        }
    }

    pub fn registry(&self) -> anyhow::Result<Registry> {
        Ok(Registry::from_config(&self.config)?)
    }

    /// Where local model weights live: `ZOCALO_MODELS_DIR`, else `models/` in the data home.
    pub fn models_dir(&self) -> PathBuf {
        std::env::var_os("ZOCALO_MODELS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.home.models_dir())
    }

    /// The provider that answers when none is named, and why: `ZOCALO_PROVIDER` / config's
    /// `provider`, else the first registry provider with a key ([`Registry::detect`]: the
    /// environment first, then the vault), else the local model.
    pub fn default_provider(&self) -> anyhow::Result<(String, String)> {
        if let Some(p) = &self.config.provider {
            let why = if std::env::var("ZOCALO_PROVIDER").is_ok_and(|v| v == *p) {
                "ZOCALO_PROVIDER is set"
            } else {
                "`provider` in config.toml"
            };
            return Ok((p.clone(), why.to_owned()));
        }
        let env = |k: &str| std::env::var(k).ok();
        Ok(match self.registry()?.detect(&env, &self.vault_names()) {
            Some(d) => (d.name, d.reason),
            None => (
                zocalo_local::PROVIDER_NAME.to_owned(),
                "no provider is chosen and no key is set: the embedded local model".to_owned(),
            ),
        })
    }

    /// The provider for an ask: `choice.provider`, else [`Runtime::default_provider`]. Keys:
    /// flag > environment > vault. With `fallback = [...]` in config.toml the result is a
    /// [`FallbackProvider`] over the chosen provider and the usable fallback members.
    pub fn provider(
        &self,
        choice: &ModelChoice,
    ) -> anyhow::Result<(Arc<dyn Provider>, Option<String>)> {
        let name = match &choice.provider {
            Some(name) => name.clone(),
            None => self.default_provider()?.0,
        };
        let primary = self.provider_named(&name)?;
        let model = choice.model.clone().or_else(|| self.config.model.clone());
        let mut chain = vec![primary];
        for member in &self.config.fallback {
            if member == &name || chain.iter().any(|p| p.name() == member) {
                continue;
            }
            match self.provider_named(member) {
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

    /// One provider by name, no fallback chain, built once per process: `local` is the
    /// in-process model (its weights load once), the rest come from the registry. An unknown
    /// name lists every known one.
    pub fn provider_named(&self, name: &str) -> anyhow::Result<Arc<dyn Provider>> {
        if let Ok(cache) = self.shared.providers.lock() {
            if let Some(p) = cache.get(name) {
                return Ok(p.clone());
            }
        }
        let p = self.build_provider(name)?;
        built(&self.shared.loads.providers, &format!("provider {name}"));
        if let Ok(mut cache) = self.shared.providers.lock() {
            return Ok(cache.entry(name.to_owned()).or_insert(p).clone());
        }
        Ok(p)
    }

    fn build_provider(&self, name: &str) -> anyhow::Result<Arc<dyn Provider>> {
        if name == zocalo_local::PROVIDER_NAME {
            let dir = self.models_dir();
            // Loading maps and checks ~300 MB of weights: keep it off the async workers where
            // the runtime allows (block_in_place panics on a current-thread runtime).
            let load = || zocalo_local::LocalChat::load(&dir);
            let chat = if multi_thread() {
                tokio::task::block_in_place(load)?
            } else {
                load()?
            };
            return Ok(Arc::new(chat));
        }
        let registry = self.registry()?;
        let env = |k: &str| std::env::var(k).ok();
        let vault = self.vault_lookup();
        match registry.build_with_vault(name, None, &env, &vault) {
            Err(LlmError::UnknownProvider { name, mut known }) => {
                known.push(zocalo_local::PROVIDER_NAME.to_owned());
                known.sort();
                Err(LlmError::UnknownProvider { name, known }.into())
            }
            other => Ok(other?),
        }
    }

    /// Looks keys up in the vault: decrypted at most once per call site, and only when asked
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

    /// The embedder of `[memory] embedder` (default the local MiniLM), loaded once per
    /// process; `None` when it is unusable (weights not fetched, no key) or turned off
    /// (`none`): memory then works on keywords alone.
    pub fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder_loaded().as_ref().ok().cloned()
    }

    /// Why there is no embedder when one was wanted (weights not installed, no key), with the
    /// fix; `None` when there is one or `none` turned it off.
    pub fn embedder_missing(&self) -> Option<String> {
        self.embedder_loaded().as_ref().err().cloned().flatten()
    }

    fn embedder_loaded(&self) -> &Result<Arc<dyn Embedder>, Option<String>> {
        self.shared.embedder.get_or_init(|| {
            let e = crate::memory::load_embedder(self);
            if e.is_ok() {
                built(&self.shared.loads.embedder, "the embedder");
            }
            e
        })
    }

    /// The process's one [`Memory`] over `store`: every ask loop, the MCP tools and the
    /// server's memory API search the same indexes, which follow the database.
    pub fn memory_on(&self, store: &Store) -> Arc<Memory> {
        self.shared
            .memory
            .get_or_init(|| {
                built(&self.shared.loads.memory, "the memory indexes");
                Arc::new(Memory::new(
                    store.clone(),
                    self.embedder(),
                    crate::memory::memory_config(&self.config),
                ))
            })
            .clone()
    }

    /// Keeps the process's memory current with every other process's writes on the same
    /// database (within 2 s) until `stop`: for long-running processes (`serve`). Others catch
    /// up when they search.
    pub fn follow_memory(
        &self,
        store: &Store,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.memory_on(store)
            .spawn_sync(std::time::Duration::from_millis(400), stop)
    }

    /// [`Runtime::memory_on`] the runtime's store.
    pub async fn memory(&self) -> anyhow::Result<Arc<Memory>> {
        let store = self.store().await?;
        Ok(self.memory_on(&store))
    }

    /// Memory for the ask loop (recall before each turn, episodic user turns, the memory
    /// tools), unless `[memory] enabled = false` or `ZOCALO_MEMORY=off`.
    pub fn ask_memory(&self, store: &Store) -> Option<AskMemory> {
        if crate::memory::memory_off(&self.config) {
            return None;
        }
        Some(crate::memory::ask_memory_over(
            &self.config,
            self.memory_on(store),
        ))
    }

    /// The skills as they are now, without a watcher, for a one-shot command (`skills list`,
    /// `show`, `run`): the usual roots, then `extra_dirs` (earlier roots win name conflicts).
    pub fn skills_now(&self, extra_dirs: &[PathBuf]) -> zocalo_skills::Skills {
        zocalo_skills::Skills::load(zocalo_skills::default_roots(self.home.root(), extra_dirs))
    }

    /// The skills of the data home (and `~/.agents/skills`, `./.agents/skills`), loaded and
    /// watched once per process.
    pub fn skills(&self) -> zocalo_skills::Skills {
        self.shared
            .skills
            .get_or_init(|| {
                // The watcher sees only roots that exist: make the data home's own, so a
                // skill installed later by another process is picked up.
                let own = self.home.root().join("skills");
                if let Err(e) = std::fs::create_dir_all(&own) {
                    tracing::warn!("cannot create {}: {e}", own.display());
                }
                let skills = zocalo_skills::Skills::load(zocalo_skills::default_roots(
                    self.home.root(),
                    &[],
                ));
                for w in skills.warnings() {
                    tracing::warn!("{w}");
                }
                if let Err(e) = skills.watch() {
                    tracing::warn!("skills will not hot-reload: {e}");
                }
                built(
                    &self.shared.loads.skills,
                    "the skills registry and its watcher",
                );
                skills
            })
            .clone()
    }

    /// Limits for skill scripts, with the Landlock launcher ([`Runtime::launcher`]).
    pub fn skill_limits(&self) -> zocalo_skills::RunLimits {
        zocalo_skills::RunLimits {
            launcher: self.launcher(),
            ..zocalo_skills::RunLimits::default()
        }
    }

    /// Runs a skill's script (`skills run`) within `timeout`, confined like every skill run
    /// of this runtime.
    pub async fn run_skill(
        &self,
        skills: &zocalo_skills::Skills,
        name: &str,
        script: Option<&str>,
        args: &[String],
        timeout: std::time::Duration,
    ) -> anyhow::Result<zocalo_skills::RunOutput> {
        let skill = skills.get(name)?;
        let limits = zocalo_skills::RunLimits {
            timeout,
            ..self.skill_limits()
        };
        Ok(zocalo_skills::run_script(&skill, script, args, &limits).await?)
    }

    /// The binary that confines scripts' writes (`zocalo __skill-sandbox`): `ZOCALO_LAUNCHER`,
    /// else this process's executable when it is the `zocalo` binary. An embedding program
    /// (the Python package) names one, or its scripts run unconfined (as on a kernel without
    /// Landlock; `zocalo doctor` says which).
    pub fn launcher(&self) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("ZOCALO_LAUNCHER").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(p));
        }
        std::env::current_exe()
            .ok()
            .filter(|exe| exe.file_name().is_some_and(|n| n == "zocalo"))
    }

    /// The browser tools: one Chromium session manager per process (a tab per conversation,
    /// closed when idle); none where Chromium is not installed.
    fn browser_tools(&self) -> Vec<Arc<dyn Tool>> {
        self.shared
            .browser
            .get_or_init(|| {
                if zocalo_browser::find_chromium().is_err() {
                    return Vec::new();
                }
                built(&self.shared.loads.browser, "the browser session manager");
                let config = zocalo_browser::ToolsConfig::new(
                    self.home.root().join("browser").join("screenshots"),
                );
                zocalo_browser::Sessions::new(config).tools()
            })
            .clone()
    }

    /// The workspace the file tools and `shell` work in: `[workspace] root`, else
    /// `$ZOCALO_HOME/workspace`.
    pub fn workspace_root(&self) -> PathBuf {
        self.config
            .workspace
            .root
            .clone()
            .unwrap_or_else(|| zocalo_tools::default_workspace_root(&self.home))
    }

    /// The computer's own tools (zocalo-tools): `file_*` in the workspace, `shell` in the
    /// sandbox, `web_fetch` (public addresses unless `[tools.web_fetch] allow_private`). Every
    /// call passes the ask loop's permission layer: the read-only ones are allowed, the rest
    /// asked (denied when nobody can be asked).
    fn computer_tools(&self) -> Vec<Arc<dyn Tool>> {
        self.shared
            .computer
            .get_or_init(|| {
                let mut config = zocalo_tools::ToolsConfig::new(self.workspace_root());
                config.launcher = self.launcher();
                config.allow_private = self.config.tools.web_fetch.allow_private;
                match zocalo_tools::tools(&config) {
                    Ok(tools) => tools,
                    Err(e) => {
                        tracing::warn!("the workspace tools are left out: {e}");
                        Vec::new()
                    }
                }
            })
            .clone()
    }

    /// The MCP servers of config.toml, as one set of clients per process (started on first
    /// use of a tool).
    pub fn mcp_clients(&self) -> &zocalo_mcp::McpClients {
        self.shared.mcp.get_or_init(|| {
            built(&self.shared.loads.mcp, "the MCP clients");
            zocalo_mcp::McpClients::from_config(&self.config.mcp)
        })
    }

    /// The configured MCP servers' tools, as NAME__TOOL.
    fn mcp_tools(&self) -> Vec<Arc<dyn Tool>> {
        let clients = self.mcp_clients();
        if clients.is_empty() {
            return Vec::new();
        }
        if !multi_thread() {
            tracing::warn!("MCP tools need the multi-thread runtime; left out");
            return Vec::new();
        }
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(clients.tools()))
    }

    /// The ask loop: memory, skills, built-in tools and `spawn_agents` (bound to this loop).
    pub fn asker(&self, store: &Store, provider: Arc<dyn Provider>, tools: bool) -> Arc<Asker> {
        self.cached_asker("ask", store, provider, tools, true, None)
    }

    /// [`Runtime::asker`] for a persona (`[personas.NAME]`: its system prompt, offered tools
    /// and permissions); an unknown persona is a usage error that lists the known ones.
    pub fn persona_asker(
        &self,
        store: &Store,
        provider: Arc<dyn Provider>,
        tools: bool,
        persona: Option<&str>,
    ) -> anyhow::Result<Arc<Asker>> {
        if let Some(p) = persona {
            // Checked before anything is built.
            zocalo_agent::Policy::from_config(&self.config, Some(p))?;
        }
        Ok(self.cached_asker("ask", store, provider, tools, true, persona))
    }

    /// The ask loop sub-agents run in: [`Runtime::asker`] behind the provider's shared rate
    /// gate ([`Runtime::throttled`]), and without episodic memory (an agent's prompt is not
    /// something the user said).
    pub fn agent_asker(
        &self,
        store: &Store,
        provider: Arc<dyn Provider>,
        tools: bool,
    ) -> Arc<Asker> {
        self.cached_asker("agent", store, self.throttled(provider), tools, false, None)
    }

    /// The ask loop of pool `ask` jobs: behind the provider's shared rate gate (many jobs at
    /// once share `requests_per_minute`), episodic like a user's ask.
    pub fn job_asker(
        &self,
        store: &Store,
        provider: Arc<dyn Provider>,
        persona: Option<&str>,
    ) -> anyhow::Result<Arc<Asker>> {
        if let Some(p) = persona {
            zocalo_agent::Policy::from_config(&self.config, Some(p))?;
        }
        Ok(self.cached_asker("job", store, self.throttled(provider), true, true, persona))
    }

    /// The ask loop for this use, provider and persona: built once, again only when the
    /// skills registry reloaded since (a skill installed by another process shows in the next
    /// ask).
    fn cached_asker(
        &self,
        use_: &'static str,
        store: &Store,
        provider: Arc<dyn Provider>,
        tools: bool,
        episodic: bool,
        persona: Option<&str>,
    ) -> Arc<Asker> {
        let generation = if tools {
            self.skills().reload_count()
        } else {
            0
        };
        let key = (
            use_,
            provider.name().to_owned(),
            tools,
            persona.map(str::to_owned),
        );
        if let Ok(cache) = self.shared.askers.lock() {
            if let Some((g, asker)) = cache.get(&key) {
                if *g == generation {
                    return asker.clone();
                }
            }
        }
        let asker = self.build_asker(store, provider, tools, episodic, persona);
        if let Ok(mut cache) = self.shared.askers.lock() {
            cache.insert(key, (generation, asker.clone()));
        }
        asker
    }

    fn build_asker(
        &self,
        store: &Store,
        provider: Arc<dyn Provider>,
        tools: bool,
        episodic: bool,
        persona: Option<&str>,
    ) -> Arc<Asker> {
        let mut settings = AskSettings::from_config(&self.config.ask);
        // The permission layer: [permissions] and the persona's rules over the defaults
        // (read-only tools allowed, the rest asked). Config and persona were checked before.
        let policy = zocalo_agent::Policy::from_config(&self.config, persona).unwrap_or_else(|e| {
            tracing::error!("permissions: {e}; using the defaults");
            zocalo_agent::Policy::defaults()
        });
        if let Some(prompt) = persona
            .and_then(|p| self.config.personas.get(p))
            .and_then(|p| p.system_prompt.clone())
        {
            settings.system_prompt = prompt;
        }
        // Memory: recalled memories join the context before each turn, user turns are kept
        // as episodic memories, and the model gets memory_save / memory_search.
        let mut memory = self.ask_memory(store);
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
            for tool in self.browser_tools() {
                registry.register(tool);
            }
            for tool in self.computer_tools() {
                registry.register(tool);
            }
            // The computer itself: its automations, services and pool.
            for tool in zocalo_scheduler::tools::tools(store.clone()) {
                registry.register(tool);
            }
            registry.register(Arc::new(zocalo_pool::tools::PoolSubmit::new(
                zocalo_pool::SqlQueue::new(store.clone()),
                crate::jobs::submit_registry(),
            )));
            for tool in crate::service_tools::service_tools(self.home.root()) {
                registry.register(tool);
            }
            // Skills: only names and descriptions go into the prompt; the model opens the
            // rest with skill_open / skill_read / skill_run. No skills, no catalog and no
            // skill tools.
            let skills = self.skills();
            if let Some(index) = zocalo_skills::prompt_index(&skills) {
                for tool in zocalo_skills::skill_tools(&skills, self.skill_limits()) {
                    registry.register(tool);
                }
                settings.system_prompt = format!("{}\n\n{index}", settings.system_prompt);
            }
            for tool in self.mcp_tools() {
                registry.register(tool);
            }
            registry
        } else {
            ToolRegistry::new()
        };
        let asker = Asker::new(store.clone(), provider, tools, settings)
            .with_policy(policy)
            .with_budgets(self.config.budgets.clone());
        let asker = Arc::new(match memory {
            Some(m) => asker.with_context_source(Arc::new(crate::memory::MemoryContext(m))),
            None => asker,
        });
        if let Some(t) = spawn_tool {
            let runner: Arc<dyn AgentRunner> = asker.clone();
            t.bind(&runner);
        }
        asker
    }
}

fn multi_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn is_unknown_provider(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<LlmError>(),
        Some(LlmError::UnknownProvider { .. })
    )
}

/// Parse a `--conv` value, as a usage error when malformed.
pub fn parse_conversation(id: Option<&str>) -> anyhow::Result<Option<ConversationId>> {
    id.map(parse_conversation_id).transpose()
}

/// A conversation id as typed; a malformed one is bad input.
pub fn parse_conversation_id(s: &str) -> anyhow::Result<ConversationId> {
    s.parse::<ConversationId>().map_err(|_| {
        usage(format!(
            "invalid conversation id {s:?}: ids look like conv_0192f…"
        ))
    })
}
