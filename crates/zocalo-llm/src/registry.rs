//! Provider names → endpoints. The bundled table (`providers.toml`) plus the user's
//! `[providers.NAME]` entries; keys come from the flag, else the environment.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use zocalo_core::{Config, Secret};

use crate::{
    anthropic::AnthropicProvider, openai::OpenAiProvider, LlmError, Provider, RetryPolicy,
};

/// Which wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Openai,
    Anthropic,
}

/// One row of the provider table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(skip)]
    pub name: String,
    pub api: Api,
    pub base_url: String,
    /// Variable that overrides the base URL (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`).
    pub base_url_env: Option<String>,
    /// Variable holding `host:port` or a URL without `/v1` (`OLLAMA_HOST`).
    pub host_env: Option<String>,
    /// Variable holding the API key; `None` for keyless local servers.
    pub key_env: Option<String>,
    pub default_model: String,
}

/// Everything a concrete provider needs to make requests.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Provider name, used in error messages.
    pub name: String,
    /// OpenAI-compatible: includes `/v1`. Anthropic: without `/v1` (requests go to
    /// `{base_url}/v1/messages`). No trailing slash.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The variable the user sets to fix a missing or wrong key (for messages).
    pub key_env: String,
    pub default_model: String,
    /// Time allowed to establish the connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed: before the response headers and between stream chunks.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Endpoint {
    /// An endpoint with default timeouts and retry policy.
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<Secret>,
        key_env: &str,
        default_model: &str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            key_env: key_env.to_owned(),
            default_model: default_model.to_owned(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        }
    }
}

/// How to pick and configure a provider for one call.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// `--provider`; else the config/env default.
    pub provider: Option<String>,
    /// `--model`; else the config/env default, else the provider's default.
    pub model: Option<String>,
    /// A key given on the command line; wins over the environment.
    pub api_key: Option<Secret>,
}

/// The provider table.
#[derive(Clone, Debug)]
pub struct Registry {
    specs: BTreeMap<String, ProviderSpec>,
}

const BUNDLED: &str = include_str!("providers.toml");

impl Registry {
    /// The bundled table only.
    pub fn builtin() -> Result<Self, LlmError> {
        let mut specs: BTreeMap<String, ProviderSpec> = toml::from_str(BUNDLED)
            .map_err(|e| LlmError::Other(format!("bundled providers.toml is invalid: {e}")))?;
        for (name, spec) in specs.iter_mut() {
            spec.name.clone_from(name);
        }
        Ok(Self { specs })
    }

    /// The bundled table plus the user's `[providers.NAME]` (which replace bundled rows of
    /// the same name).
    pub fn from_config(config: &Config) -> Result<Self, LlmError> {
        let mut reg = Self::builtin()?;
        for (name, p) in &config.providers {
            let api = match p.api.as_deref() {
                Some("anthropic") => Api::Anthropic,
                _ => Api::Openai,
            };
            reg.specs.insert(
                name.clone(),
                ProviderSpec {
                    name: name.clone(),
                    api,
                    base_url: p.base_url.clone(),
                    base_url_env: None,
                    host_env: None,
                    key_env: p.key_env.clone(),
                    default_model: p.models.first().cloned().unwrap_or_default(),
                },
            );
        }
        Ok(reg)
    }

    pub fn names(&self) -> Vec<String> {
        self.specs.keys().cloned().collect()
    }

    pub fn spec(&self, name: &str) -> Result<&ProviderSpec, LlmError> {
        self.specs
            .get(name)
            .ok_or_else(|| LlmError::UnknownProvider {
                name: name.to_owned(),
                known: self.names(),
            })
    }

    /// Resolve a provider by name into an [`Endpoint`], reading base URL and key variables
    /// through `env`. A provider that needs a key and has none fails with
    /// [`LlmError::MissingKey`] naming the variable and the command that fix it.
    pub fn endpoint(
        &self,
        name: &str,
        flag_key: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, LlmError> {
        let spec = self.spec(name)?;
        let get = |k: &Option<String>| {
            k.as_deref()
                .and_then(env)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut base_url = get(&spec.base_url_env).unwrap_or_else(|| spec.base_url.clone());
        if let Some(host) = get(&spec.host_env) {
            let host = host.trim_end_matches('/');
            let with_scheme = if host.contains("://") {
                host.to_owned()
            } else {
                format!("http://{host}")
            };
            base_url = format!("{with_scheme}/v1");
        }
        let key_env = spec.key_env.clone().unwrap_or_default();
        let api_key = match flag_key {
            Some(k) => Some(k),
            None => get(&spec.key_env).map(Secret::new),
        };
        if spec.key_env.is_some() && api_key.is_none() {
            return Err(LlmError::MissingKey {
                provider: name.to_owned(),
                key_env,
            });
        }
        Ok(Endpoint::new(
            name,
            &base_url,
            api_key,
            &key_env,
            &spec.default_model,
        ))
    }

    /// Build the provider object for `name`.
    pub fn build(
        &self,
        name: &str,
        flag_key: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn Provider>, LlmError> {
        let endpoint = self.endpoint(name, flag_key, env)?;
        Ok(match self.spec(name)?.api {
            Api::Openai => Arc::new(OpenAiProvider::new(endpoint)),
            Api::Anthropic => Arc::new(AnthropicProvider::new(endpoint)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn bundled_table_loads() {
        let r = Registry::builtin().unwrap();
        for n in ["openai", "anthropic", "groq", "openrouter", "ollama"] {
            assert!(r.spec(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn unknown_provider_lists_known() {
        let r = Registry::builtin().unwrap();
        let e = r.spec("nope").unwrap_err().to_string();
        assert!(
            e.contains("nope") && e.contains("openai") && e.contains("anthropic"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_names_fix() {
        let r = Registry::builtin().unwrap();
        let e = r
            .endpoint("groq", None, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GROQ_API_KEY") && e.contains("zocalo keys set groq"),
            "{e}"
        );
    }

    #[test]
    fn env_base_url_and_flag_key_precedence() {
        let r = Registry::builtin().unwrap();
        let env = env_of(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_API_KEY", "from-env"),
        ]);
        let ep = r
            .endpoint("openai", Some(Secret::new("from-flag")), &env)
            .unwrap();
        assert_eq!(ep.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(ep.api_key.unwrap().expose(), "from-flag");
        let ep = r.endpoint("openai", None, &env).unwrap();
        assert_eq!(ep.api_key.unwrap().expose(), "from-env");
    }

    #[test]
    fn ollama_needs_no_key_and_reads_host() {
        let r = Registry::builtin().unwrap();
        let ep = r
            .endpoint(
                "ollama",
                None,
                &env_of(&[("OLLAMA_HOST", "10.1.2.3:11434")]),
            )
            .unwrap();
        assert_eq!(ep.base_url, "http://10.1.2.3:11434/v1");
        assert!(ep.api_key.is_none());
    }

    #[test]
    fn config_providers_are_added() {
        let cfg = Config::parse(
            "[providers.mine]\nbase_url = \"http://h/v1\"\nkey_env = \"MINE_KEY\"\nmodels = [\"m1\"]",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let r = Registry::from_config(&cfg).unwrap();
        let ep = r
            .endpoint("mine", None, &env_of(&[("MINE_KEY", "k")]))
            .unwrap();
        assert_eq!(
            (ep.base_url.as_str(), ep.default_model.as_str()),
            ("http://h/v1", "m1")
        );
    }
}
