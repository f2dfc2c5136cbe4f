//! `zocalo keys init|set|list|rm|test`: API keys in the encrypted vault
//! (`zocalo_runtime::keys`).
//!
//! Keys never come from argv (shell history, `ps`): `set` reads a pipe or a prompt without
//! echo. What is printed about a key is at most its last four characters.

use clap::Subcommand;
use serde_json::json;
use zocalo_core::Secret;
use zocalo_llm::registry::KeySource;
use zocalo_llm::vault::{self, InitMode};
use zocalo_llm::LlmError;
use zocalo_runtime::{keys, Runtime};

use super::print_json;
use crate::exit::usage;

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
    List,
    /// Remove PROVIDER's key from the vault.
    Rm { provider: String },
    /// Make one cheap authenticated request (the model list) and say whether the key works.
    Test { provider: String },
}

pub async fn run(ctx: &Runtime, cmd: KeysCmd, json: bool) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    match cmd {
        KeysCmd::Init { keyfile } => {
            let mode = if keyfile {
                InitMode::KeyFile
            } else {
                InitMode::Passphrase
            };
            let vault = keys::init(ctx, mode)?;
            let path = vault.path().display();
            match mode {
                InitMode::KeyFile => println!(
                    "created {path} sealed with the key file {} (keep it private; back it up apart from the vault)",
                    vault.keyfile_path().display()
                ),
                InitMode::Passphrase => println!("created {path} sealed with your passphrase"),
            }
        }
        KeysCmd::Set { provider, rest } => {
            if !rest.is_empty() {
                // Not echoed: it is probably the key.
                return Err(usage(format!(
                    "`zocalo keys set` takes the key from stdin or a prompt, never from the command line \
                     (it would stay in shell history): run `zocalo keys set {provider}` and paste it, \
                     or `zocalo keys set {provider} < key.txt`"
                )));
            }
            keys::key_env(&registry, &provider)?;
            let prompt = format!("API key for {provider}: ");
            let key = vault::read_secret(&prompt).map_err(LlmError::from)?;
            let (vault, var) = keys::set(ctx, &registry, &provider, &key)?;
            let masked = Secret::new(key.expose().trim()).masked_tail();
            println!(
                "stored the {provider} key ({masked}) in {}",
                vault.path().display()
            );
            if std::env::var(&var).is_ok_and(|v| !v.trim().is_empty()) {
                eprintln!(
                    "note: {var} is set in the environment and takes precedence over the vault"
                );
            }
        }
        KeysCmd::List => {
            let rows = keys::list(ctx, &registry)?;
            if json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!(
                    "no keys: set one with `zocalo keys set PROVIDER` or its environment variable (known: {})",
                    registry.names().join(", ")
                );
            }
            for r in rows {
                let var = r.variable.unwrap_or_default();
                println!("{:<12} {:<6} {:<8} {var}", r.provider, r.source, r.masked);
            }
        }
        KeysCmd::Rm { provider } => {
            let vault = keys::rm(ctx, &registry, &provider)?;
            println!("removed the {provider} key from {}", vault.path().display());
        }
        KeysCmd::Test { provider } => {
            let (result, source, base_url) = keys::vendor_models(ctx, &registry, &provider).await?;
            let source = source.map(KeySource::as_str).unwrap_or("none");
            let models = result.map(|m| m.len());
            if json {
                print_json(&match &models {
                    Ok(n) => {
                        json!({"provider": provider, "ok": true, "source": source, "models": n})
                    }
                    Err(e) => {
                        json!({"provider": provider, "ok": false, "source": source, "error": e.to_string()})
                    }
                })?;
            }
            match models {
                Ok(n) if !json => println!(
                    "ok: {provider} accepted the key from {source} ({n} models at {base_url})"
                ),
                Ok(_) => {}
                Err(e) => {
                    let e = anyhow::Error::new(e);
                    return Err(e.context(format!("the {provider} key test failed")));
                }
            }
        }
    }
    Ok(())
}
