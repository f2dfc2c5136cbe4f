//! The HTTP server's [`Backend`] over the runtime, and the server as `zocalo serve` runs it:
//! the REST API, `/v1`, the web UI and MCP at `/mcp`, all on this process's shared resources.

use std::sync::Arc;

use zocalo_agent::Asker;
use zocalo_core::embed::Embedder;
use zocalo_llm::{LlmError, Provider};
use zocalo_memory::Memory;
use zocalo_server::{Backend, BackendError, ServerBuilder, Token};
use zocalo_services::Supervisor;
use zocalo_store::Store;

use crate::channels::HookError;
use crate::{ModelChoice, Runtime};

/// The server's router builder on this runtime: [`ServerBackend`], MCP over streamable HTTP
/// at `/mcp` behind the same token, the skills roots, the sandbox launcher and the limits of
/// `[server]`. `mcp_shutdown` ends the MCP sessions.
pub fn server_builder(
    ctx: &Runtime,
    store: Store,
    token: Token,
    services: Result<Supervisor, String>,
    mcp_shutdown: tokio_util::sync::CancellationToken,
) -> ServerBuilder {
    let backend = Arc::new(ServerBackend::new(ctx, store.clone(), services));
    let mcp = crate::mcp::http_router(ctx, store.clone(), None, mcp_shutdown);
    let limits = &ctx.config.server;
    ServerBuilder::new(store, backend, token)
        .nest("/mcp", mcp)
        .public("/hooks", hooks_router(ctx))
        .skills_roots(zocalo_skills::default_roots(ctx.home.root(), &[]))
        // This binary is the Landlock launcher for skill scripts (`zocalo __skill-sandbox`).
        .skill_launcher(ctx.skill_limits().launcher)
        .body_limit(usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX))
        .max_streams(limits.max_streams)
        .cors_origins(limits.cors_origins.clone())
        .auth_limits(zocalo_server::AuthLimits {
            max_failures: limits.auth_failures_per_minute,
            ..zocalo_server::AuthLimits::default()
        })
}

/// How `zocalo serve` serves connections (`[server] header_timeout_ms`).
pub fn serve_options(ctx: &Runtime) -> zocalo_server::ServeOptions {
    zocalo_server::ServeOptions {
        header_timeout: std::time::Duration::from_millis(ctx.config.server.header_timeout_ms),
    }
}

/// `POST /hooks/NAME`: a signed webhook request, recorded once and answered by the hook
/// loop. 202 {"id"} when taken; 404 unknown hook; 401 unsigned, badly signed, stale or a hook
/// without a secret; 409 a replay.
fn hooks_router(ctx: &Runtime) -> axum::Router {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use zocalo_server::ApiError;

    async fn hook(
        State(rt): State<Runtime>,
        Path(name): Path<String>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let header = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match rt.hook_received(&name, header, &body).await {
            Ok(id) => (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "id": id })),
            )
                .into_response(),
            Err(e) => {
                let (status, code) = match &e {
                    HookError::Unknown(_) => (StatusCode::NOT_FOUND, "not_found"),
                    HookError::NoSecret(_) | HookError::Refused(_) => {
                        (StatusCode::UNAUTHORIZED, "bad_signature")
                    }
                    HookError::Replayed => (StatusCode::CONFLICT, "replayed"),
                    HookError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                ApiError::new(status, e.to_string())
                    .code(code)
                    .into_response()
            }
        }
    }
    axum::Router::new()
        .route("/{name}", axum::routing::post(hook))
        .with_state(ctx.clone())
}

/// The runtime as the server's [`Backend`]: the process's one memory, embedder, providers
/// and ask loop.
pub struct ServerBackend {
    ctx: Runtime,
    store: Store,
    /// This process's supervisor, or why there is none.
    services: Result<Supervisor, String>,
}

impl ServerBackend {
    pub fn new(ctx: &Runtime, store: Store, services: Result<Supervisor, String>) -> Self {
        Self {
            ctx: ctx.clone(),
            store,
            services,
        }
    }
}

fn backend_error(e: anyhow::Error) -> BackendError {
    match e.downcast::<LlmError>() {
        Ok(l) => l.into(),
        Err(e) => BackendError::Unavailable(format!("{e:#}")),
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn asker(&self) -> Result<Arc<Asker>, BackendError> {
        // The runtime keeps one per provider (rebuilt when the skills change).
        let (provider, _model) = self
            .ctx
            .provider(&ModelChoice::default())
            .map_err(backend_error)?;
        Ok(self.ctx.asker(&self.store, provider, true))
    }

    async fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, BackendError> {
        self.ctx.provider_named(name).map_err(backend_error)
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
        self.ctx.embedder()
    }

    fn memory(&self) -> Option<Arc<Memory>> {
        (!crate::memory::memory_off(&self.ctx.config)).then(|| self.ctx.memory_on(&self.store))
    }

    fn job_kinds(&self) -> zocalo_pool::Registry {
        crate::jobs::submit_registry()
    }

    fn supervisor(&self) -> Result<Supervisor, BackendError> {
        self.services.clone().map_err(BackendError::Unavailable)
    }
}
