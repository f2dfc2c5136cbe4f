//! `zocalo serve [--bind 127.0.0.1:7878]`: the HTTP API and web UI (zocalo-server) on the
//! runtime (`zocalo_runtime::backend`): the ask loop with memory and tools on the default
//! provider, providers by name for `PROVIDER/MODEL`, the local embedder, one shared memory.
//!
//! It is also the data home's daemon ([`DaemonWork`]: scheduler ticks, supervised services,
//! the optional local worker, the socket `zocalo services` talks to), and `/api/services`
//! drives that same supervisor. When a daemon already runs for the data home (`zocalo daemon
//! start`, or another `zocalo serve`), that one keeps doing the daemon's work and this server
//! only answers HTTP: it says so on start, and `/api/services` answers 503 naming the daemon.
//! SIGTERM, Ctrl-C or `zocalo daemon stop` stop the server and its daemon work together.

use std::net::SocketAddr;

use clap::Args;
use zocalo_runtime::daemon::{AlreadyRunning, DaemonWork};
use zocalo_runtime::Runtime;
use zocalo_server::{Token, TokenSource};

use crate::exit::usage;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Beyond loopback only with ZOCALO_SERVER_TOKEN set.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR:PORT")]
    pub bind: String,
}

pub async fn run(ctx: &Runtime, args: ServeArgs) -> anyhow::Result<()> {
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
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    // Memories written by any other process on this database show up within 2 s.
    let memory_sync = ctx.follow_memory(&store, mcp_shutdown.clone().cancelled_owned());
    let builder = zocalo_runtime::backend::server_builder(
        ctx,
        store.clone(),
        token.clone(),
        services,
        mcp_shutdown.clone(),
    );
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
                _ = zocalo_runtime::signals::terminated() => {}
                _ = stop.cancelled() => {}
            },
            None => zocalo_runtime::signals::terminated().await,
        }
        // Open event streams end now, or the graceful shutdown would wait for them forever.
        closing.cancel_all();
    };
    let options = zocalo_runtime::backend::serve_options(ctx);
    let served = zocalo_server::serve_with(listener, router, shutdown, options).await;
    eprintln!("zocalo serve: stopping");
    mcp_shutdown.cancel();
    let _ = memory_sync.await;
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
