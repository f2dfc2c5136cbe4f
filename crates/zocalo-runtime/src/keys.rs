//! API keys as the runtime sees them: where each provider's key comes from (flag >
//! environment > vault), and asking a vendor for its models with it (`keys test`, `models
//! list --provider`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use zocalo_core::Secret;
use zocalo_llm::registry::KeySource;
use zocalo_llm::vault::Vault;
use zocalo_llm::{LlmError, Registry};

use crate::{usage, Runtime};

/// One provider with a key: where it comes from, and its last four characters.
#[derive(Clone, Debug, Serialize)]
pub struct KeyRow {
    pub provider: String,
    /// `env` or `vault`.
    pub source: &'static str,
    pub masked: String,
    /// The environment variable that would hold it.
    pub variable: Option<String>,
}

/// Every provider that has a key, by name. The vault is decrypted only when some key is not
/// in the environment but in the vault.
pub fn list(ctx: &Runtime, registry: &Registry) -> anyhow::Result<Vec<KeyRow>> {
    let vault = Vault::in_dir(ctx.home.root());
    let env = |k: &str| std::env::var(k).ok();
    // Decrypt only if some provider's key is not in the environment but in the vault.
    let stored: BTreeMap<String, Secret> = {
        let names = vault.names().map_err(LlmError::from)?;
        let needed = names.iter().any(|n| {
            registry
                .resolve_key(n, None, &env, &zocalo_llm::registry::no_vault)
                .ok()
                .flatten()
                .is_none()
        });
        if needed {
            vault.load().map_err(LlmError::from)?
        } else {
            BTreeMap::new()
        }
    };
    let lookup = |n: &str| -> Result<Option<Secret>, LlmError> { Ok(stored.get(n).cloned()) };
    let mut rows = Vec::new();
    let mut names = registry.names();
    for n in stored.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    for name in names {
        let found = match registry.spec(&name) {
            Ok(_) => registry.resolve_key(&name, None, &env, &lookup)?,
            // A vault entry for a provider no longer configured.
            Err(_) => stored.get(&name).cloned().map(|k| (k, KeySource::Vault)),
        };
        if let Some((key, source)) = found {
            rows.push(KeyRow {
                variable: registry.spec(&name).ok().and_then(|s| s.key_env.clone()),
                provider: name,
                source: source.as_str(),
                masked: key.masked_tail(),
            });
        }
    }
    Ok(rows)
}

/// The vendor's `/models` with the key the runtime would use (20 s idle, 10 s connect
/// timeouts): the result, where the key came from, and the base URL asked. An unknown
/// provider or a missing key is the outer error.
pub async fn vendor_models(
    ctx: &Runtime,
    registry: &Registry,
    provider: &str,
) -> anyhow::Result<(Result<Vec<String>, LlmError>, Option<KeySource>, String)> {
    registry.spec(provider)?;
    let env = |k: &str| std::env::var(k).ok();
    let vault = ctx.vault_lookup();
    let source = registry
        .resolve_key(provider, None, &env, &vault)?
        .map(|(_, s)| s);
    let mut endpoint = registry.endpoint_with_vault(provider, None, &env, &vault)?;
    endpoint.idle_timeout = Duration::from_secs(20);
    endpoint.connect_timeout = Duration::from_secs(10);
    let result = registry.list_models(&endpoint).await;
    Ok((result, source, endpoint.base_url.clone()))
}

/// The data home's vault (the home is created if needed).
pub fn vault(ctx: &Runtime) -> anyhow::Result<Vault> {
    ctx.home.ensure()?;
    Ok(Vault::in_dir(ctx.home.root()))
}

/// `keys init`: creates the vault, sealed with a passphrase or a generated key file.
pub fn init(ctx: &Runtime, mode: zocalo_llm::vault::InitMode) -> anyhow::Result<Vault> {
    let vault = vault(ctx)?;
    vault.init(mode).map_err(LlmError::from)?;
    Ok(vault)
}

/// The environment variable of a provider's or a channel's key; an unknown name, or a
/// provider that needs no key, is bad input.
pub fn key_env(registry: &Registry, name: &str) -> anyhow::Result<String> {
    // Channel secrets (`telegram`, `email`) live in the vault beside the providers' keys.
    let channel = crate::channels::CHANNEL_SECRETS
        .iter()
        .find(|(n, _)| *n == name);
    match channel {
        Some((_, env)) => Ok((*env).to_owned()),
        None => registry.spec(name)?.key_env.clone().ok_or_else(|| {
            usage(format!(
                "{name} needs no API key (it is a keyless local server); nothing to store"
            ))
        }),
    }
}

/// `keys set NAME`: checks a typed or piped key (one line of printable ASCII, trimmed) and
/// stores it for a provider or a channel (`telegram`, `email`). Returns the vault and the
/// environment variable that, when set, takes precedence over it.
pub fn set(
    ctx: &Runtime,
    registry: &Registry,
    name: &str,
    key: &Secret,
) -> anyhow::Result<(Vault, String)> {
    let var = key_env(registry, name)?;
    let trimmed = key.expose().trim();
    if trimmed.is_empty() {
        return Err(usage(format!(
            "the key is empty: pipe it in (`zocalo keys set {name} < key.txt`) or type it at the prompt"
        )));
    }
    if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(
            "the key contains spaces, line breaks or non-ASCII characters; an API key is one line of printable ASCII",
        ));
    }
    let vault = vault(ctx)?;
    vault
        .set(name, &Secret::new(trimmed))
        .map_err(LlmError::from)?;
    Ok((vault, var))
}

/// `keys rm NAME`: removes a key from the vault (an unknown provider or a key the vault does
/// not hold is an error).
pub fn rm(ctx: &Runtime, registry: &Registry, name: &str) -> anyhow::Result<Vault> {
    let vault = Vault::in_dir(ctx.home.root());
    let stored = vault.names().map_err(LlmError::from)?;
    if !stored.iter().any(|n| n == name) {
        registry.spec(name)?;
        let why = if vault.exists() {
            ""
        } else {
            " (there is no vault yet)"
        };
        anyhow::bail!("the vault holds no key for {name}{why}");
    }
    vault.remove(name).map_err(LlmError::from)?;
    Ok(vault)
}
