//! Provider names → endpoints. The bundled table (`providers.toml`) plus the user's
//! `[providers.NAME]` entries; keys come from the flag, else the environment, else the
//! vault. Also the two cheap calls every vendor offers: list its models, and (the same
//! request) check that a key is accepted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
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
    /// Well-known models, shown when the vendor's `/models` cannot be asked.
    #[serde(default)]
    pub models: Vec<String>,
}

impl ProviderSpec {
    /// Whether the provider needs an API key (keyless local servers do not).
    pub fn needs_key(&self) -> bool {
        self.key_env.is_some()
    }

    /// The registry's model list: the default first, then the others.
    pub fn known_models(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.default_model.is_empty() {
            out.push(self.default_model.clone());
        }
        for m in &self.models {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }
}

/// Where a provider's key was found (precedence: flag > environment > vault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    Flag,
    Env,
    Vault,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Flag => "flag",
            KeySource::Env => "env",
            KeySource::Vault => "vault",
        }
    }
}

/// Looks a provider's key up in the vault; called only when the flag and the environment
/// have none, so a locked vault is never opened needlessly.
pub type VaultLookup<'a> = &'a dyn Fn(&str) -> Result<Option<Secret>, LlmError>;

/// A vault lookup that finds nothing.
pub fn no_vault(_: &str) -> Result<Option<Secret>, LlmError> {
    Ok(None)
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
    /// The model a request asks for, or this endpoint's default when it names none.
    pub fn model_for<'a>(&'a self, request: &'a zocalo_core::CompletionRequest) -> &'a str {
        if request.model.is_empty() {
            &self.default_model
        } else {
            &request.model
        }
    }

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

/// A provider found by [`Registry::detect`], and why it was chosen (for `zocalo doctor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    pub name: String,
    pub reason: String,
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
                    models: p.models.clone(),
                },
            );
        }
        Ok(reg)
    }

    /// The order in which [`Registry::detect`] looks for keys: the bundled vendors first, in
    /// this fixed order, then the user's own `[providers.NAME]` alphabetically. Keyless local
    /// servers (ollama, lmstudio) are never auto-detected: a key proves intent, an unset
    /// variable does not say whether a server runs.
    pub const DETECT_ORDER: &'static [&'static str] = &[
        "openai",
        "anthropic",
        "openrouter",
        "groq",
        "together",
        "mistral",
        "deepseek",
        "fireworks",
    ];

    /// The provider to use when none is chosen: the first provider in [`DETECT_ORDER`]
    /// (then the user's, by name) whose key is set in the environment; failing that, the first
    /// whose key is in the vault (`in_vault`: the names the vault holds). `None`: no key
    /// anywhere (the caller falls back to the local model).
    ///
    /// [`DETECT_ORDER`]: Registry::DETECT_ORDER
    pub fn detect(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        in_vault: &[String],
    ) -> Option<Detected> {
        let mut order: Vec<&ProviderSpec> = Self::DETECT_ORDER
            .iter()
            .filter_map(|n| self.specs.get(*n))
            .collect();
        for (name, spec) in &self.specs {
            if !Self::DETECT_ORDER.contains(&name.as_str()) {
                order.push(spec);
            }
        }
        let keyed = || {
            order
                .iter()
                .filter_map(|s| Some((*s, s.key_env.as_deref()?)))
        };
        for (spec, var) in keyed() {
            if env(var).is_some_and(|v| !v.trim().is_empty()) {
                return Some(Detected {
                    name: spec.name.clone(),
                    reason: format!("{var} is set in the environment"),
                });
            }
        }
        for (spec, _) in keyed() {
            if in_vault.iter().any(|n| n == &spec.name) {
                return Some(Detected {
                    name: spec.name.clone(),
                    reason: format!("the vault holds a key for {}", spec.name),
                });
            }
        }
        None
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
        self.endpoint_with_vault(name, flag_key, env, &no_vault)
    }

    /// The key for `name`, and where it came from: `flag_key`, else the provider's variable
    /// in `env`, else `vault`. `None` when there is none anywhere (or the provider needs none).
    pub fn resolve_key(
        &self,
        name: &str,
        flag_key: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
        vault: VaultLookup<'_>,
    ) -> Result<Option<(Secret, KeySource)>, LlmError> {
        let spec = self.spec(name)?;
        if let Some(k) = flag_key.filter(|k| !k.expose().trim().is_empty()) {
            return Ok(Some((k, KeySource::Flag)));
        }
        let Some(var) = &spec.key_env else {
            return Ok(None);
        };
        if let Some(v) = env(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            return Ok(Some((Secret::new(v), KeySource::Env)));
        }
        Ok(vault(name)?.map(|k| (k, KeySource::Vault)))
    }

    /// [`Registry::endpoint`] with the vault as the last place to look for the key.
    pub fn endpoint_with_vault(
        &self,
        name: &str,
        flag_key: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
        vault: VaultLookup<'_>,
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
        let api_key = self
            .resolve_key(name, flag_key, env, vault)?
            .map(|(k, _)| k);
        if spec.needs_key() && api_key.is_none() {
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

    /// [`Registry::build`] with the vault as the last place to look for the key.
    pub fn build_with_vault(
        &self,
        name: &str,
        flag_key: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
        vault: VaultLookup<'_>,
    ) -> Result<Arc<dyn Provider>, LlmError> {
        let endpoint = self.endpoint_with_vault(name, flag_key, env, vault)?;
        Ok(match self.spec(name)?.api {
            Api::Openai => Arc::new(OpenAiProvider::new(endpoint)),
            Api::Anthropic => Arc::new(AnthropicProvider::new(endpoint)),
        })
    }

    /// Ask the vendor which models it serves (`GET {base}/models`, Anthropic
    /// `GET {base}/v1/models`), authenticated with the endpoint's key. This is also the
    /// cheapest authenticated request, so `zocalo keys test` uses it to check a key.
    pub async fn list_models(&self, endpoint: &Endpoint) -> Result<Vec<String>, LlmError> {
        let api = self.spec(&endpoint.name)?.api;
        let client = crate::http::client(endpoint);
        let (url, headers) = models_request(api, endpoint)?;
        let body = crate::http::get_json(&client, endpoint, &url, headers).await?;
        let Some(data) = body.get("data").and_then(|d| d.as_array()) else {
            return Err(LlmError::Protocol {
                provider: endpoint.name.clone(),
                message: format!("GET {url} answered without a `data` list"),
            });
        };
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .collect())
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

/// The URL and headers of the model-list request.
fn models_request(api: Api, endpoint: &Endpoint) -> Result<(String, HeaderMap), LlmError> {
    let mut headers = HeaderMap::new();
    let key_value =
        |prefix: &str| crate::http::key_header(endpoint, prefix).map_err(LlmError::Other);
    match api {
        Api::Openai => {
            if let Some(v) = key_value("Bearer ")? {
                headers.insert(AUTHORIZATION, v);
            }
            Ok((format!("{}/models", endpoint.base_url), headers))
        }
        Api::Anthropic => {
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(crate::anthropic::ANTHROPIC_VERSION),
            );
            if let Some(v) = key_value("")? {
                headers.insert(HeaderName::from_static("x-api-key"), v);
            }
            Ok((format!("{}/v1/models", endpoint.base_url), headers))
        }
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
    fn detect_covers_every_keyed_provider_in_order() {
        let r = Registry::builtin().unwrap();
        let none: &[String] = &[];
        // Only GROQ_API_KEY set: groq answers, not the local model (the bug this fixes).
        let d = r
            .detect(&env_of(&[("GROQ_API_KEY", "gsk-1")]), none)
            .unwrap();
        assert_eq!(d.name, "groq");
        assert!(d.reason.contains("GROQ_API_KEY"), "{}", d.reason);
        for (var, name) in [
            ("OPENROUTER_API_KEY", "openrouter"),
            ("TOGETHER_API_KEY", "together"),
            ("MISTRAL_API_KEY", "mistral"),
            ("DEEPSEEK_API_KEY", "deepseek"),
            ("FIREWORKS_API_KEY", "fireworks"),
        ] {
            let env = move |k: &str| (k == var).then(|| "k".to_owned());
            assert_eq!(r.detect(&env, none).unwrap().name, name);
        }
        // The documented order decides between several keys.
        let both = env_of(&[("GROQ_API_KEY", "g"), ("OPENROUTER_API_KEY", "o")]);
        assert_eq!(r.detect(&both, none).unwrap().name, "openrouter");
        let all = env_of(&[("ANTHROPIC_API_KEY", "a"), ("OPENAI_API_KEY", "o")]);
        assert_eq!(r.detect(&all, none).unwrap().name, "openai");
        // Blank values do not count; keyless servers are never guessed.
        assert_eq!(r.detect(&env_of(&[("GROQ_API_KEY", "  ")]), none), None);
        assert_eq!(r.detect(&env_of(&[("OLLAMA_HOST", "h:1")]), none), None);
        // A key in the environment beats one in the vault; the vault is the fallback.
        let vault = vec!["anthropic".to_owned(), "mistral".to_owned()];
        assert_eq!(
            r.detect(&env_of(&[("GROQ_API_KEY", "g")]), &vault)
                .unwrap()
                .name,
            "groq"
        );
        let d = r.detect(&env_of(&[]), &vault).unwrap();
        assert_eq!(d.name, "anthropic");
        assert!(d.reason.contains("vault"), "{}", d.reason);
    }

    #[test]
    fn detect_includes_the_users_providers_after_the_bundled_ones() {
        let cfg = Config::parse(
            "[providers.acme]\nbase_url = \"http://127.0.0.1:9/v1\"\nkey_env = \"ACME_KEY\"\nmodels = [\"m\"]",
            std::path::Path::new("config.toml"),
        )
        .unwrap();
        let r = Registry::from_config(&cfg).unwrap();
        let none: &[String] = &[];
        assert_eq!(
            r.detect(&env_of(&[("ACME_KEY", "x")]), none).unwrap().name,
            "acme"
        );
        let both = env_of(&[("ACME_KEY", "x"), ("DEEPSEEK_API_KEY", "d")]);
        assert_eq!(r.detect(&both, none).unwrap().name, "deepseek");
    }

    #[test]
    fn bundled_table_loads() {
        let r = Registry::builtin().unwrap();
        for n in [
            "openai",
            "anthropic",
            "groq",
            "openrouter",
            "ollama",
            "together",
            "mistral",
            "deepseek",
            "fireworks",
            "lmstudio",
        ] {
            let spec = r.spec(n).unwrap();
            assert!(!spec.default_model.is_empty(), "{n}");
            assert!(spec.base_url.starts_with("http"), "{n}");
            assert_eq!(spec.known_models()[0], spec.default_model, "{n}");
        }
        assert!(!r.spec("ollama").unwrap().needs_key());
        assert!(!r.spec("lmstudio").unwrap().needs_key());
        assert!(r.spec("mistral").unwrap().needs_key());
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
    fn key_precedence_is_flag_env_vault() {
        let r = Registry::builtin().unwrap();
        let vault = |name: &str| -> Result<Option<Secret>, LlmError> {
            Ok((name == "groq").then(|| Secret::new("from-vault")))
        };
        let env = env_of(&[("GROQ_API_KEY", "from-env")]);
        let (k, src) = r
            .resolve_key("groq", Some(Secret::new("from-flag")), &env, &vault)
            .unwrap()
            .unwrap();
        assert_eq!((k.expose(), src), ("from-flag", KeySource::Flag));
        let (k, src) = r.resolve_key("groq", None, &env, &vault).unwrap().unwrap();
        assert_eq!((k.expose(), src), ("from-env", KeySource::Env));
        let (k, src) = r
            .resolve_key("groq", None, &env_of(&[("GROQ_API_KEY", " ")]), &vault)
            .unwrap()
            .unwrap();
        assert_eq!((k.expose(), src), ("from-vault", KeySource::Vault));
        assert!(r
            .resolve_key("mistral", None, &env_of(&[]), &vault)
            .unwrap()
            .is_none());
        // The vault is not consulted when the environment has the key.
        let locked =
            |_: &str| -> Result<Option<Secret>, LlmError> { Err(LlmError::Other("locked".into())) };
        assert!(r.endpoint_with_vault("groq", None, &env, &locked).is_ok());
        assert!(r
            .endpoint_with_vault("groq", None, &env_of(&[]), &locked)
            .is_err());
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
