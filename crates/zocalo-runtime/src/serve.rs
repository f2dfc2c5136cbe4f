//! `zocalo serve`: the HTTP API and web UI (zocalo-server) on this runtime, and the data
//! home's daemon with it ([`DaemonWork`]: scheduler ticks, supervised services, the local
//! worker, the socket `zocalo services` talks to); `/api/services` drives that supervisor.
//!
//! When a daemon already runs for the data home (`zocalo daemon start`, or another `zocalo
//! serve`), that one keeps doing the daemon's work and this server only answers HTTP
//! (`/api/services` answers 503 naming the daemon). SIGTERM, Ctrl-C or `zocalo daemon stop`
//! stop the server and its daemon work together.

use std::net::SocketAddr;
use std::time::Duration;

use zocalo_server::{Token, TokenSource};

use crate::daemon::{AlreadyRunning, DaemonWork};
use crate::{usage, Runtime};

/// What a starting server tells its front end, once it listens.
#[derive(Debug)]
pub struct Started {
    /// The address it listens on (the port resolved when 0 was asked for).
    pub local: SocketAddr,
    /// Where the bearer token came from.
    pub token: TokenSource,
    /// The pid of the daemon already running for this home, which keeps the daemon's work.
    pub other_daemon: Option<String>,
}

/// Parses `--bind`, resolves the token, listens, starts the daemon's work (unless a daemon
/// runs already), calls `started`, and serves until SIGTERM, Ctrl-C or `zocalo daemon stop`.
pub async fn serve(
    ctx: &Runtime,
    bind: &str,
    started: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    let addr: SocketAddr = bind.parse().map_err(|_| {
        usage(format!(
            "invalid --bind {bind:?}: expected ADDRESS:PORT such as 127.0.0.1:7878"
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
    let (daemon, other_daemon) = match DaemonWork::start(ctx).await {
        Ok(work) => (Some(work), None),
        Err(e) => match e.downcast_ref::<AlreadyRunning>() {
            Some(other) => (None, Some(other.pid.clone())),
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
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    // Memories written by any other process on this database show up within 2 s.
    let memory_sync = ctx.follow_memory(&store, mcp_shutdown.clone().cancelled_owned());
    let builder = crate::backend::server_builder(
        ctx,
        store.clone(),
        token.clone(),
        services,
        mcp_shutdown.clone(),
    );
    let background = builder.background();
    let router = builder.build();
    started(&Started {
        local: listener.local_addr()?,
        token: token.source.clone(),
        other_daemon,
    });
    // `zocalo daemon stop` ends this process too: it is the daemon.
    let daemon_stop = daemon.as_ref().map(DaemonWork::cancel_token);
    let closing = background.clone();
    let shutdown = async move {
        match daemon_stop {
            Some(stop) => tokio::select! {
                _ = crate::signals::terminated() => {}
                _ = stop.cancelled() => {}
            },
            None => crate::signals::terminated().await,
        }
        // Open event streams end now, or the graceful shutdown would wait for them forever.
        closing.cancel_all();
    };
    let options = crate::backend::serve_options(ctx);
    let served = zocalo_server::serve_with(listener, router, shutdown, options).await;
    tracing::info!("zocalo serve: stopping");
    mcp_shutdown.cancel();
    let _ = memory_sync.await;
    background.stop(Duration::from_secs(10)).await;
    let stopped = match daemon {
        Some(work) => work.shutdown().await,
        None => Ok(()),
    };
    store.close().await;
    served?;
    stopped
}
