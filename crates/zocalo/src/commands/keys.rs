//! `zocalo keys init|set|list|rm|test`: API keys in the encrypted vault.
//!
//! Keys never come from argv (shell history, `ps`): `set` reads a pipe or a prompt without
//! echo. What is printed about a key is at most its last four characters.

use std::io::Read;

use clap::Subcommand;
use serde_json::json;
use zocalo_core::Secret;
use zocalo_llm::registry::KeySource;
use zocalo_llm::vault::{self, InitMode, Vault};
use zocalo_llm::{LlmError, Registry};

use crate::exit::usage;
use zocalo_runtime::Runtime;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create the vault, sealed with a passphrase (ZOCALO_VAULT_PASSPHRASE or a prompt), or
    /// with a generated key file ($ZOCALO_HOME/vault.key, 0600) for unattended servers.
    Init {
        /// Seal the vault with a generated key file instead of a passphrase.
        #[arg(long)]
        keyfile: bool,
    },
    /// Store PROVIDER's key, read from stdin (`zocalo keys set openai < key.txt`) or typed at
    /// a prompt without echo. Never from the command line.
    Set {
        provider: String,
        /// Refused: a key on the command line ends up in shell history and `ps`.
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Providers that have a key: where it comes from (env or vault) and its last characters.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove PROVIDER's key from the vault.
    Rm { provider: String },
    /// Make one cheap authenticated request (the model list) and say whether the key works.
    Test {
        provider: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &Runtime, cmd: KeysCmd) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    match cmd {
        KeysCmd::Init { keyfile } => init(ctx, keyfile),
        KeysCmd::Set { provider, rest } => {
            if !rest.is_empty() {
                // Not echoed: it is probably the key.
                return Err(usage(format!(
                    "`zocalo keys set` takes the key from stdin or a prompt, never from the command line \
                     (it would stay in shell history): run `zocalo keys set {provider}` and paste it, \
                     or `zocalo keys set {provider} < key.txt`"
                )));
            }
            set(ctx, &registry, &provider)
        }
        KeysCmd::List { json } => list(ctx, &registry, json),
        KeysCmd::Rm { provider } => rm(ctx, &registry, &provider),
        KeysCmd::Test { provider, json } => test(ctx, &registry, &provider, json).await,
    }
}

fn vault_of(ctx: &Runtime) -> anyhow::Result<Vault> {
    ctx.home.ensure()?;
    Ok(Vault::in_dir(ctx.home.root()))
}

fn init(ctx: &Runtime, keyfile: bool) -> anyhow::Result<()> {
    let vault = vault_of(ctx)?;
    let mode = if keyfile {
        InitMode::KeyFile
    } else {
        InitMode::Passphrase
    };
    vault.init(mode).map_err(LlmError::from)?;
    match mode {
        InitMode::KeyFile => println!(
            "created {} sealed with the key file {} (keep it private; back it up apart from the vault)",
            vault.path().display(),
            vault.keyfile_path().display()
        ),
        InitMode::Passphrase => println!(
            "created {} sealed with your passphrase",
            vault.path().display()
        ),
    }
    Ok(())
}

/// The key from a prompt (terminal) or stdin (pipe), trimmed.
fn read_key(provider: &str) -> anyhow::Result<Secret> {
    let key =
        match vault::prompt_secret(&format!("API key for {provider}: ")).map_err(LlmError::from)? {
            Some(k) => k,
            None => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| usage(format!("cannot read the key from stdin: {e}")))?;
                Secret::new(text)
            }
        };
    let trimmed = key.expose().trim();
    if trimmed.is_empty() {
        return Err(usage(format!(
            "the key is empty: pipe it in (`zocalo keys set {provider} < key.txt`) or type it at the prompt"
        )));
    }
    if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(
            "the key contains spaces, line breaks or non-ASCII characters; an API key is one line of printable ASCII",
        ));
    }
    Ok(Secret::new(trimmed))
}

fn set(ctx: &Runtime, registry: &Registry, provider: &str) -> anyhow::Result<()> {
    // Channel secrets (`telegram`, `email`) live in the vault beside the providers' keys.
    let channel = zocalo_runtime::channels::CHANNEL_SECRETS
        .iter()
        .find(|(name, _)| *name == provider);
    let var = match channel {
        Some((_, env)) => (*env).to_owned(),
        None => match registry.spec(provider)?.key_env.clone() {
            Some(var) => var,
            None => {
                return Err(usage(format!(
                    "{provider} needs no API key (it is a keyless local server); nothing to store"
                )))
            }
        },
    };
    let key = read_key(provider)?;
    let vault = vault_of(ctx)?;
    vault.set(provider, &key).map_err(LlmError::from)?;
    println!(
        "stored the {provider} key ({}) in {}",
        key.masked_tail(),
        vault.path().display()
    );
    if std::env::var(&var).is_ok_and(|v| !v.trim().is_empty()) {
        eprintln!("note: {var} is set in the environment and takes precedence over the vault");
    }
    Ok(())
}

fn list(ctx: &Runtime, registry: &Registry, json_out: bool) -> anyhow::Result<()> {
    let rows = zocalo_runtime::keys::list(ctx, registry)?;
    if json_out {
        return super::print_json(&serde_json::to_value(&rows)?);
    }
    if rows.is_empty() {
        println!(
            "no keys: set one with `zocalo keys set PROVIDER` or its environment variable (known: {})",
            registry.names().join(", ")
        );
    }
    for r in rows {
        println!(
            "{:<12} {:<6} {:<8} {}",
            r.provider,
            r.source,
            r.masked,
            r.variable.unwrap_or_default()
        );
    }
    Ok(())
}

fn rm(ctx: &Runtime, registry: &Registry, provider: &str) -> anyhow::Result<()> {
    let vault = Vault::in_dir(ctx.home.root());
    let stored = vault.names().map_err(LlmError::from)?;
    if !stored.iter().any(|n| n == provider) {
        registry.spec(provider)?;
        anyhow::bail!(
            "the vault holds no key for {provider}{}",
            if vault.exists() {
                ""
            } else {
                " (there is no vault yet)"
            }
        );
    }
    vault.remove(provider).map_err(LlmError::from)?;
    println!("removed the {provider} key from {}", vault.path().display());
    Ok(())
}

async fn test(
    ctx: &Runtime,
    registry: &Registry,
    provider: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let (result, source, base_url) =
        zocalo_runtime::keys::vendor_models(ctx, registry, provider).await?;
    let source_str = source.map(KeySource::as_str).unwrap_or("none");
    match result {
        Ok(models) => {
            if json_out {
                super::print_json(&json!({"provider": provider, "ok": true,
                    "source": source_str, "models": models.len()}))?;
            } else {
                println!(
                    "ok: {provider} accepted the key from {source_str} ({} models at {})",
                    models.len(),
                    base_url
                );
            }
            Ok(())
        }
        Err(e) => {
            if json_out {
                super::print_json(&json!({"provider": provider, "ok": false,
                    "source": source_str, "error": e.to_string()}))?;
            }
            Err(anyhow::Error::new(e).context(format!("the {provider} key test failed")))
        }
    }
}
