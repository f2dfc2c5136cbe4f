//! `zocalo serve [--bind 127.0.0.1:7878]`: the HTTP API and web UI (zocalo-server) on this
//! process's wiring: the ask loop with memory and tools on the default provider, providers by
//! name for `PROVIDER/MODEL`, the local embedder, one shared memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Args;
use tokio::sync::OnceCell;
use zocalo_agent::Asker;
use zocalo_core::embed::Embedder;
use zocalo_llm::{LlmError, Provider};
use zocalo_memory::{Memory, MemoryConfig};
use zocalo_server::{Backend, BackendError, ServerBuilder, Token, TokenSource};
use zocalo_store::Store;

use crate::cli::ModelArgs;
use crate::exit::usage;
use crate::wiring::Ctx;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Beyond loopback only with ZOCALO_SERVER_TOKEN set.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR:PORT")]
    pub bind: String,
}

pub async fn run(ctx: &Ctx, args: ServeArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = args.bind.parse().map_err(|_| {
        usage(format!(
            "invalid --bind {:?}: expected ADDRESS:PORT such as 127.0.0.1:7878",
            args.bind
        ))
    })?;
    let env_token = std::env::var(zocalo_server::auth::TOKEN_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    ctx.home.ensure()?;
    let token = Token::resolve(addr, env_token, ctx.home.root()).map_err(|e| {
        if e.is_usage() {
            usage(e.to_string())
        } else {
            anyhow::Error::new(e)
        }
    })?;
    let store = ctx.store().await?;
    let backend = Arc::new(CliBackend::new(ctx, store.clone())?);
    // MCP over streamable HTTP at /mcp, behind the same token (so any Host is accepted).
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    let mcp = super::mcp::http_router(ctx, store.clone(), None, mcp_shutdown.clone());
    let router = ServerBuilder::new(store.clone(), backend, token.clone())
        .nest("/mcp", mcp)
        .skills_roots(zocalo_skills::default_roots(ctx.home.root(), &[]))
        // This binary is the Landlock launcher for skill scripts (`zocalo __skill-sandbox`).
        .skill_launcher(std::env::current_exe().ok())
        .build();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    match &token.source {
        TokenSource::Env => eprintln!("token: from {}", zocalo_server::auth::TOKEN_ENV),
        TokenSource::File { path, created } => eprintln!(
            "token: {} ({})",
            path.display(),
            if *created { "created" } else { "existing" }
        ),
    }
    eprintln!(
        "zocalo serve: listening on http://{local}  (web UI at /, API at /api, OpenAI at /v1, MCP at /mcp)"
    );
    let served = zocalo_server::serve(listener, router, shutdown_signal()).await;
    mcp_shutdown.cancel();
    served?;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The CLI's wiring as the server's [`Backend`].
struct CliBackend {
    ctx: Ctx,
    store: Store,
    embedder: Option<Arc<dyn Embedder>>,
    memory: Option<Arc<Memory>>,
    asker: OnceCell<Arc<Asker>>,
    providers: Mutex<HashMap<String, Arc<dyn Provider>>>,
}

impl CliBackend {
    fn new(ctx: &Ctx, store: Store) -> anyhow::Result<Self> {
        let ctx = Ctx::load(ctx.database_url.clone())?;
        let embedder = crate::commands::memory::embedder(&ctx);
        let memory = (!crate::commands::memory::memory_off()).then(|| {
            Arc::new(Memory::new(
                store.clone(),
                embedder.clone(),
                MemoryConfig::default(),
            ))
        });
        Ok(Self {
            ctx,
            store,
            embedder,
            memory,
            asker: OnceCell::new(),
            providers: Mutex::new(HashMap::new()),
        })
    }
}

fn backend_error(e: anyhow::Error) -> BackendError {
    match e.downcast::<LlmError>() {
        Ok(l) => l.into(),
        Err(e) => BackendError::Unavailable(format!("{e:#}")),
    }
}

#[async_trait::async_trait]
impl Backend for CliBackend {
    async fn asker(&self) -> Result<Arc<Asker>, BackendError> {
        self.asker
            .get_or_try_init(|| async {
                let args = ModelArgs {
                    provider: None,
                    model: None,
                    no_tools: false,
                };
                let (provider, _model) = self.ctx.provider(&args).map_err(backend_error)?;
                let memory = self
                    .memory
                    .clone()
                    .map(crate::commands::memory::ask_memory_over);
                Ok(self
                    .ctx
                    .asker_with_memory(self.store.clone(), provider, true, memory))
            })
            .await
            .cloned()
    }

    async fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, BackendError> {
        if let Ok(cache) = self.providers.lock() {
            if let Some(p) = cache.get(name) {
                return Ok(p.clone());
            }
        }
        let p = self.ctx.provider_named(name).map_err(backend_error)?;
        if let Ok(mut cache) = self.providers.lock() {
            cache.insert(name.to_owned(), p.clone());
        }
        Ok(p)
    }

    fn models(&self) -> Vec<String> {
        let Ok(registry) = self.ctx.registry() else {
            return Vec::new();
        };
        let in_vault = self.ctx.vault_names();
        let mut out = Vec::new();
        for name in registry.names() {
            let Ok(spec) = registry.spec(&name) else {
                continue;
            };
            let usable = match &spec.key_env {
                None => false, // keyless local servers may not be running: not advertised
                Some(k) => {
                    std::env::var(k).is_ok_and(|v| !v.trim().is_empty())
                        || in_vault.iter().any(|n| n == &name)
                }
            };
            if usable {
                for m in spec.known_models() {
                    out.push(format!("{name}/{m}"));
                }
            }
        }
        out
    }

    fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder.clone()
    }

    fn memory(&self) -> Option<Arc<Memory>> {
        self.memory.clone()
    }

    fn job_kinds(&self) -> zocalo_pool::Registry {
        crate::commands::pool::submit_registry()
    }
}
