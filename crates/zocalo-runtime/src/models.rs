//! `models list`: the models each provider serves (its own `/models` when asked by name,
//! else the registry's list) and the local models with whether their files are verified.

use serde::Serialize;

use crate::Runtime;

/// One model of `models list --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    pub provider: String,
    pub model: String,
    /// The provider's default model.
    pub default: bool,
    /// `api` (the vendor's `/models`), `registry` (zocalo's list) or `local`.
    pub source: &'static str,
    /// A local model: what it is and what is installed.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRow>,
}

/// What is installed of a local model (its files hashed: a truncated or altered file shows
/// as not verified).
#[derive(Clone, Debug, Serialize)]
pub struct LocalRow {
    pub kind: zocalo_local::ModelKind,
    pub present: bool,
    pub verified: bool,
    pub size_bytes: u64,
    pub path: std::path::PathBuf,
}

/// The models of `provider` (every provider's registry list when None; the local models
/// alone for `local`), then the local models. Also a note when the vendor could not be asked
/// and the registry's list stands in.
pub async fn list(
    ctx: &Runtime,
    provider: Option<&str>,
) -> anyhow::Result<(Vec<ModelRow>, Option<String>)> {
    let registry = ctx.registry()?;
    let only_local = provider == Some(zocalo_local::PROVIDER_NAME);
    let mut rows = Vec::new();
    let mut note = None;
    let mut push = |name: &str, models: Vec<String>, default: &str, source| {
        rows.extend(models.into_iter().map(|m| ModelRow {
            provider: name.to_owned(),
            default: m == default,
            model: m,
            source,
            local: None,
        }))
    };
    match provider.filter(|_| !only_local) {
        Some(name) => {
            let spec = registry.spec(name)?.clone();
            let live = match crate::keys::vendor_models(ctx, &registry, name).await {
                Ok((listed, _, _)) => listed.map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:#}")),
            };
            match live {
                Ok(models) => push(name, models, &spec.default_model, "api"),
                Err(e) => {
                    note = Some(format!(
                        "cannot ask {name} for its models ({e}); showing the registry's list"
                    ));
                    push(name, spec.known_models(), &spec.default_model, "registry");
                }
            }
        }
        None if only_local => {}
        None => {
            for name in registry.names() {
                let spec = registry.spec(&name)?;
                push(&name, spec.known_models(), &spec.default_model, "registry");
            }
        }
    }
    if provider.is_none() || only_local {
        rows.extend(
            zocalo_local::status(&ctx.models_dir())
                .into_iter()
                .map(|s| ModelRow {
                    provider: zocalo_local::PROVIDER_NAME.to_owned(),
                    default: s.name == zocalo_local::DEFAULT_MODEL,
                    model: s.name,
                    source: "local",
                    local: Some(LocalRow {
                        kind: s.kind,
                        present: s.present,
                        verified: s.verified,
                        size_bytes: s.size_bytes,
                        path: s.path,
                    }),
                }),
        );
    }
    Ok((rows, note))
}
