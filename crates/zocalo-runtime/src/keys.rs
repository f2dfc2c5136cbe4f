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

use crate::Runtime;

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
