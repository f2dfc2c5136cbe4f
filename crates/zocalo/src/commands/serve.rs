//! `zocalo serve [--bind 127.0.0.1:7878]`: the HTTP API and web UI (zocalo-server) on this
//! process's wiring: the ask loop with memory and tools on the default provider, providers by
//! name for `PROVIDER/MODEL`, the local embedder, one shared memory.
//!
//! It is also the data home's daemon ([`DaemonWork`]: scheduler ticks, supervised services,
//! the optional local worker, the socket `zocalo services` talks to), and `/api/services`
//! drives that same supervisor. When a daemon already runs for the data home (`zocalo daemon
//! start`, or another `zocalo serve`), that one keeps doing the daemon's work and this server
//! only answers HTTP: it says so on start, and `/api/services` answers 503 naming the daemon.
//! SIGTERM, Ctrl-C or `zocalo daemon stop` stop the server and its daemon work together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Args;
use tokio::sync::OnceCell;
use zocalo_agent::Asker;
use zocalo_core::embed::Embedder;
use zocalo_llm::{LlmError, Provider};
use zocalo_memory::Memory;
use zocalo_server::{Backend, BackendError, ServerBuilder, Token, TokenSource};
use zocalo_services::Supervisor;
use zocalo_store::Store;

use crate::cli::ModelArgs;
use crate::daemon::{AlreadyRunning, DaemonWork};
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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let daemon = match DaemonWork::start(ctx).await {
        Ok(work) => Some(work),
        Err(e) => match e.downcast_ref::<AlreadyRunning>() {
            Some(other) => {
                eprintln!(
                    "note: a daemon already runs for this data home (pid {}): it keeps running \
                     schedules and services; this server only answers HTTP (/api/services: 503)",
                    other.pid
                );
                None
            }
            None => return Err(e.context("starting the daemon's work")),
        },
    };
    let services = match &daemon {
        Some(work) => Ok(work.supervisor().clone()),
        None => Err(format!(
            "services are supervised by the daemon already running for {}: use `zocalo \
             services …`, or stop it (`zocalo daemon stop`) and start `zocalo serve` again",
            ctx.home.root().display()
        )),
    };
    let backend = Arc::new(CliBackend::new(ctx, store.clone(), services)?);
    // MCP over streamable HTTP at /mcp, behind the same token (so any Host is accepted).
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    let mcp = super::mcp::http_router(ctx, store.clone(), None, mcp_shutdown.clone());
    let builder = ServerBuilder::new(store.clone(), backend, token.clone())
        .nest("/mcp", mcp)
        .skills_roots(zocalo_skills::default_roots(ctx.home.root(), &[]))
        // This binary is the Landlock launcher for skill scripts (`zocalo __skill-sandbox`).
        .skill_launcher(std::env::current_exe().ok());
    let background = builder.background();
    let router = builder.build();
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
    // `zocalo daemon stop` ends this process too: it is the daemon.
    let daemon_stop = daemon.as_ref().map(DaemonWork::cancel_token);
    let closing = background.clone();
    let shutdown = async move {
        match daemon_stop {
            Some(stop) => tokio::select! {
                _ = shutdown_signal() => {}
                _ = stop.cancelled() => {}
            },
            None => shutdown_signal().await,
        }
        // Open event streams end now, or the graceful shutdown would wait for them forever.
        closing.cancel_all();
    };
    let served = zocalo_server::serve(listener, router, shutdown).await;
    eprintln!("zocalo serve: stopping");
    mcp_shutdown.cancel();
    background.stop(std::time::Duration::from_secs(10)).await;
    let stopped = match daemon {
        Some(work) => work.shutdown().await,
        None => Ok(()),
    };
    store.close().await;
    served?;
    stopped?;
    eprintln!("zocalo serve: stopped");
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
    /// This process's supervisor, or why there is none.
    services: Result<Supervisor, String>,
}

impl CliBackend {
    fn new(ctx: &Ctx, store: Store, services: Result<Supervisor, String>) -> anyhow::Result<Self> {
        let ctx = Ctx::load(ctx.database_url.clone())?;
        let embedder = crate::commands::memory::embedder(&ctx);
        let memory = (!crate::commands::memory::memory_off(&ctx)).then(|| {
            Arc::new(Memory::new(
                store.clone(),
                embedder.clone(),
                crate::commands::memory::memory_config(&ctx),
            ))
        });
        Ok(Self {
            ctx,
            store,
            embedder,
            memory,
            asker: OnceCell::new(),
            providers: Mutex::new(HashMap::new()),
            services,
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
                    .map(|m| crate::commands::memory::ask_memory_over(&self.ctx, m));
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

    fn supervisor(&self) -> Result<Supervisor, BackendError> {
        self.services.clone().map_err(BackendError::Unavailable)
    }
}
