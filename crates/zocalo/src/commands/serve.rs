//! `zocalo serve [--bind 127.0.0.1:7878]`: the HTTP API and web UI, and the data home's
//! daemon with them (`zocalo_runtime::serve`).

use clap::Args;
use zocalo_runtime::Runtime;
use zocalo_server::TokenSource;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Beyond loopback only with ZOCALO_SERVER_TOKEN set.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR:PORT")]
    pub bind: String,
}

pub async fn run(ctx: &Runtime, args: ServeArgs) -> anyhow::Result<()> {
    zocalo_runtime::serve::serve(ctx, &args.bind, |s| {
        if let Some(pid) = &s.other_daemon {
            eprintln!(
                "note: a daemon already runs for this data home (pid {pid}): it keeps running \
                 schedules and services; this server only answers HTTP (/api/services: 503)"
            );
        }
        match &s.token {
            TokenSource::Env => eprintln!("token: from {}", zocalo_server::auth::TOKEN_ENV),
            TokenSource::File { path, created } => eprintln!(
                "token: {} ({})",
                path.display(),
                if *created { "created" } else { "existing" }
            ),
        }
        eprintln!(
            "zocalo serve: listening on http://{}  (web UI at /, API at /api, OpenAI at /v1, MCP at /mcp)",
            s.local
        );
    })
    .await?;
    eprintln!("zocalo serve: stopped");
    Ok(())
}
