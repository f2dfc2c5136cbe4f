//! `zocalo models list`: which models a provider serves.
//!
//! With `--provider`, the vendor's own `/models` is asked (with the key from the
//! environment or the vault); when that cannot be done the registry's list is shown, marked
//! `"source": "registry"`. Without `--provider`, every known provider's registry list, with
//! no network calls.

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use crate::wiring::Ctx;

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Models per provider: the vendor's /models with --provider, else the registry's list.
    List {
        /// Ask this provider's /models (openai, anthropic, groq, ... or one from config.toml).
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

struct Listed {
    provider: String,
    models: Vec<String>,
    default: String,
    source: &'static str,
}

pub async fn run(ctx: &Ctx, cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::List { provider, json } => list(ctx, provider, json).await,
    }
}

async fn list(ctx: &Ctx, provider: Option<String>, json_out: bool) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    let mut out = Vec::new();
    match provider {
        Some(name) => {
            let spec = registry.spec(&name)?.clone();
            let env = |k: &str| std::env::var(k).ok();
            let vault = ctx.vault_lookup();
            let live = match registry.endpoint_with_vault(&name, None, &env, &vault) {
                Ok(mut endpoint) => {
                    endpoint.idle_timeout = Duration::from_secs(20);
                    endpoint.connect_timeout = Duration::from_secs(10);
                    registry.list_models(&endpoint).await
                }
                Err(e) => Err(e),
            };
            match live {
                Ok(models) => out.push(Listed {
                    provider: name,
                    models,
                    default: spec.default_model.clone(),
                    source: "api",
                }),
                Err(e) => {
                    eprintln!(
                        "note: cannot ask {name} for its models ({e}); showing the registry's list"
                    );
                    out.push(Listed {
                        provider: name,
                        models: spec.known_models(),
                        default: spec.default_model.clone(),
                        source: "registry",
                    });
                }
            }
        }
        None => {
            for name in registry.names() {
                let spec = registry.spec(&name)?;
                out.push(Listed {
                    provider: name.clone(),
                    models: spec.known_models(),
                    default: spec.default_model.clone(),
                    source: "registry",
                });
            }
        }
    }
    if json_out {
        let items: Vec<_> = out
            .iter()
            .flat_map(|l| {
                l.models.iter().map(move |m| {
                    json!({"provider": l.provider, "model": m,
                           "default": *m == l.default, "source": l.source})
                })
            })
            .collect();
        return super::print_json(&json!(items));
    }
    for l in &out {
        for m in &l.models {
            let mark = if *m == l.default { " (default)" } else { "" };
            println!("{:<12} {m}{mark}", l.provider);
        }
    }
    Ok(())
}
