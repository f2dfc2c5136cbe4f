//! `zocalo doctor`'s checks: the data home, config, database, providers (which one answers
//! and why), the local models' weights, the skill sandbox and Chromium, each with how to fix
//! it.

use serde::Serialize;

use crate::Runtime;

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A failing required check makes doctor exit 1; optional ones only inform.
    pub required: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Runs every check.
pub async fn checks(ctx: &Runtime) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut add = |name: &str, ok: bool, required: bool, detail: String, fix: Option<String>| {
        checks.push(Check {
            name: name.into(),
            ok,
            required,
            detail,
            fix,
        })
    };

    let home = ctx.home.root().display().to_string();
    match ctx.home.ensure() {
        Ok(_) => add("data_home", true, true, home, None),
        Err(e) => add(
            "data_home",
            false,
            true,
            e.to_string(),
            Some("set ZOCALO_HOME to a writable directory".into()),
        ),
    }
    add(
        "config",
        true,
        true,
        format!("{} (parsed)", ctx.home.config_file().display()),
        None,
    );

    match ctx.store().await {
        Ok(store) => {
            let version = store.schema_version().await;
            let backend = format!("{:?}", store.backend()).to_lowercase();
            match version {
                Ok(v) => add("database", true, true, format!("{backend}, schema version {v}"), None),
                Err(e) => add("database", false, true, e.to_string(), None),
            }
        }
        Err(e) => add(
            "database",
            false,
            true,
            format!("{e:#}"),
            Some("check --database-url / ZOCALO_DATABASE_URL; for PostgreSQL make sure the server runs".into()),
        ),
    }

    match ctx.registry() {
        Ok(registry) => {
            let env = |k: &str| std::env::var(k).ok();
            let mut ready = Vec::new();
            for name in registry.names() {
                if registry.endpoint(&name, None, &env).is_ok() {
                    ready.push(name);
                }
            }
            let has_keyed = ready.iter().any(|n| n != "ollama" && n != "lmstudio");
            match ctx.default_provider() {
                Ok((name, why)) => add(
                    "providers",
                    has_keyed || ctx.config.provider.is_some(),
                    false,
                    format!(
                        "{name} answers asks ({why}); usable (key or keyless): {}",
                        ready.join(", ")
                    ),
                    (!has_keyed).then(|| {
                        "set a vendor key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, \
                         OPENROUTER_API_KEY, ...) or `zocalo keys set NAME`, or choose a \
                         provider in config.toml"
                            .into()
                    }),
                ),
                Err(e) => add("providers", false, true, format!("{e:#}"), None),
            }
        }
        Err(e) => add("providers", false, true, e.to_string(), None),
    }

    // Memory's embedder, and whether the stored vectors are its own.
    let (ok, detail, fix) = crate::memory::embedder_check(ctx).await;
    add("embedder", ok, false, detail, fix);

    // The embedded default: weights present and matching their pinned sha256.
    for m in zocalo_local::status(&ctx.models_dir()) {
        let problem = m
            .files
            .iter()
            .find_map(|f| f.problem.clone().map(|p| format!("{}: {p}", f.name)));
        add(
            &format!("model:{}", m.name),
            m.verified,
            false,
            if m.verified {
                format!(
                    "{} ({} MB, sha256 verified)",
                    m.path.display(),
                    m.size_bytes / 1_000_000
                )
            } else if m.present {
                problem.unwrap_or_else(|| "checksum mismatch".into())
            } else {
                format!("not installed in {}", m.path.display())
            },
            (!m.verified).then(|| "zocalo models fetch".into()),
        );
    }

    // Skill scripts' writes: confined to a scratch dir by Landlock where the kernel allows it.
    let (sandbox, reason) = match std::env::current_exe() {
        Ok(exe) => zocalo_skills::runner::probe_sandbox(&exe).await,
        Err(e) => (
            "none".into(),
            Some(format!("cannot locate the zocalo binary: {e}")),
        ),
    };
    add(
        "skill_sandbox",
        sandbox != "none",
        false,
        match reason {
            Some(r) => format!("{sandbox}: {r}"),
            None => format!("{sandbox}: skill scripts may write only their scratch directory"),
        },
        (sandbox == "none").then(|| {
            "use Linux 5.13+ with Landlock enabled (lsm=...,landlock) to confine skill scripts' writes".into()
        }),
    );

    // The browser tools and `zocalo browser`: the binary they would start, and that it runs.
    match zocalo_browser::find_chromium() {
        Ok(path) => {
            let version = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::process::Command::new(&path)
                    .arg("--version")
                    .stdin(std::process::Stdio::null())
                    .output(),
            )
            .await;
            match version {
                Ok(Ok(out)) if out.status.success() => {
                    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    add(
                        "chromium",
                        true,
                        false,
                        format!("{} ({v})", path.display()),
                        None,
                    )
                }
                other => add(
                    "chromium",
                    false,
                    false,
                    format!(
                        "{} does not run: {}",
                        path.display(),
                        match other {
                            Ok(Ok(out)) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "`--version` did not answer within 10 s".into(),
                        }
                    ),
                    Some(zocalo_browser::INSTALL_HINT.into()),
                ),
            }
        }
        Err(e) => add(
            "chromium",
            false,
            false,
            e.to_string(),
            Some(zocalo_browser::INSTALL_HINT.into()),
        ),
    }

    checks
}
