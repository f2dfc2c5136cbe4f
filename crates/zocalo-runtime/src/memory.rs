//! Memory as the runtime builds it: the embedder, `[memory]` settings, the ask loop's memory,
//! and the parsers of the memory files users hand in (`memory import`, `search --batch`).
//!
//! Everything is validated before the database is touched: an import with one bad line
//! imports nothing and names the line.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use zocalo_agent::ContextSource;
use zocalo_core::embed::Embedder;
use zocalo_core::{Config, ConversationId, EmbedderSetting};
use zocalo_memory::{AskMemory, Memory, MemoryConfig, Metadata, NewMemory, ReindexReport, Stats};

use crate::errors::usage;

/// `[memory]` of config.toml as the memory crate's settings.
pub fn memory_config(config: &Config) -> MemoryConfig {
    MemoryConfig {
        recency_half_life_days: config.memory.recency_half_life_days,
        ..MemoryConfig::default()
    }
}

fn env_off(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "no"))
}

/// [`AskMemory`] over a memory the caller shares with others (the server's memory API), with
/// `[memory]`'s recall limit; `[memory] episodic = false` or `ZOCALO_MEMORY_EPISODIC=off`
/// keeps user turns out of memory.
pub fn ask_memory_over(config: &Config, memory: Arc<Memory>) -> AskMemory {
    let mut m = AskMemory::new(memory);
    m.episodic = config.memory.episodic && !env_off("ZOCALO_MEMORY_EPISODIC");
    m.recall_limit = config.memory.recall_limit;
    m
}

/// Whether the ask loop's memory is off (`[memory] enabled = false` or `ZOCALO_MEMORY=off`).
pub fn memory_off(config: &Config) -> bool {
    !config.memory.enabled || env_off("ZOCALO_MEMORY")
}

/// [`AskMemory`] as the ask loop's [`ContextSource`].
pub struct MemoryContext(pub AskMemory);

#[async_trait::async_trait]
impl ContextSource for MemoryContext {
    async fn context_for(
        &self,
        conversation: &ConversationId,
        message: &str,
        budget_tokens: usize,
    ) -> Result<Option<String>, String> {
        self.0
            .context_for(conversation.as_str(), message, budget_tokens)
            .await
            .map_err(|e| e.to_string())
    }

    async fn turn_committed(
        &self,
        conversation: &ConversationId,
        message: &str,
    ) -> Result<(), String> {
        self.0
            .remember_turn(conversation.as_str(), message)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The embedder `[memory] embedder` (or `ZOCALO_EMBEDDER`) names: `none` turns vectors off;
/// `local` is the MiniLM from the models directory, or keywords alone while it is not fetched
/// (`memory stats` says which; `-v` logs why); `PROVIDER:MODEL` is that provider's
/// OpenAI-compatible `/embeddings`, with the registry's base URL and key (environment, then
/// vault). Use [`crate::Runtime::embedder`], which loads it once per process.
/// `Err(None)`: turned off; `Err(Some(reason))`: wanted but unusable (memory then works on
/// keywords alone, and the commands say so, with the fix).
pub(crate) fn load_embedder(rt: &crate::Runtime) -> Result<Arc<dyn Embedder>, Option<String>> {
    let setting = rt.config.memory.embedder_setting().map_err(Some)?;
    let (provider, model) = match setting {
        EmbedderSetting::None => return Err(None),
        EmbedderSetting::Local => {
            return match zocalo_local::LocalEmbedder::load(&rt.models_dir()) {
                Ok(e) => Ok(Arc::new(e)),
                Err(e) => {
                    tracing::info!("memory search uses keywords only: {e}");
                    Err(Some(format!(
                        "the embedding model is not installed ({e}); run `zocalo models fetch`"
                    )))
                }
            }
        }
        EmbedderSetting::Remote { provider, model } => (provider, model),
    };
    let id = format!("{provider}:{model}");
    let unusable = |why: String| {
        tracing::info!("memory search uses keywords only: embedder {id}: {why}");
        Some(format!("the embedder {id} cannot be used ({why})"))
    };
    let registry = rt.registry().map_err(|e| unusable(format!("{e:#}")))?;
    let env = |k: &str| std::env::var(k).ok();
    let vault = rt.vault_lookup();
    let endpoint = registry
        .endpoint_with_vault(&provider, None, &env, &vault)
        .map_err(|e| unusable(e.to_string()))?;
    zocalo_llm::OpenAiEmbedder::new(endpoint, &model, 0, None)
        .map(|e| Arc::new(e) as Arc<dyn Embedder>)
        .map_err(|e| unusable(e.to_string()))
}

/// Checks what config parsing cannot: that `[memory] embedder = "PROVIDER:MODEL"` names a
/// provider of the registry that speaks the OpenAI API at an http(s) base URL. Run when the
/// runtime loads, so a typo is a config error (exit 2) before anything runs.
pub(crate) fn check_embedder_setting(config: &Config) -> anyhow::Result<()> {
    let Ok(EmbedderSetting::Remote { provider, model }) = config.memory.embedder_setting() else {
        return Ok(());
    };
    let bad = |why: String| {
        usage(format!(
            "invalid `[memory] embedder` / ZOCALO_EMBEDDER \"{provider}:{model}\": {why}"
        ))
    };
    let registry = zocalo_llm::Registry::from_config(config).map_err(|e| bad(e.to_string()))?;
    let spec = registry.spec(&provider).map_err(|e| bad(e.to_string()))?;
    if spec.api != zocalo_llm::registry::Api::Openai {
        return Err(bad(format!(
            "{provider} does not offer the OpenAI-compatible /embeddings API; use e.g. \"openai:text-embedding-3-small\" or \"ollama:nomic-embed-text\""
        )));
    }
    if !(spec.base_url.starts_with("http://") || spec.base_url.starts_with("https://")) {
        return Err(bad(format!(
            "provider {provider} has no base URL; set `base_url` under [providers.{provider}]"
        )));
    }
    Ok(())
}

/// What the memory commands print once when the embedder is wanted but unusable.
pub fn keyword_only_note(reason: &str) -> String {
    format!(
        "note: {reason}. Until then memories are stored and searched by keywords only, \
         without meaning search; `zocalo memory reindex` then gives the memories stored \
         meanwhile their vectors."
    )
}

/// `zocalo memory reindex`: every memory whose vector is missing or from another embedder
/// gets one from the configured embedder, in batches (each committed on its own, so a rerun
/// after an interruption continues); `progress(done, total)` in chunks. Returns what was done
/// and the counts afterwards.
pub async fn reindex(
    ctx: &crate::Runtime,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> anyhow::Result<(ReindexReport, Stats)> {
    if let Some(why) = ctx.embedder_missing() {
        anyhow::bail!("nothing to compute vectors with: {why}");
    }
    let memory = ctx.memory().await?;
    let report = memory.reindex(progress).await?;
    let stats = memory.stats().await?;
    Ok((report, stats))
}

/// What `doctor` says of memory's embedder: which one is configured, and whether the stored
/// vectors are its own. `(ok, detail, fix)`.
pub async fn embedder_check(ctx: &crate::Runtime) -> (bool, String, Option<String>) {
    let configured = ctx.config.memory.embedder.trim().to_owned();
    if let Some(why) = ctx.embedder_missing() {
        return (
            false,
            format!("{configured}: {why}"),
            Some("fix the embedder, then `zocalo memory reindex`".into()),
        );
    }
    let Some(embedder) = ctx.embedder() else {
        return (true, "none: memory searches by keywords only".into(), None);
    };
    let kind = if embedder.remote() {
        "remote"
    } else {
        "in-process"
    };
    let stats = match ctx.memory().await {
        Ok(m) => m.stats().await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            return (
                false,
                format!(
                    "{} ({kind}); cannot read memory: {e:#}",
                    embedder.model_id()
                ),
                None,
            )
        }
    };
    let others: u64 = stats.other_embedders.values().sum();
    let mut detail = format!(
        "{} ({kind}); {} of {} stored chunks have its vectors",
        embedder.model_id(),
        stats.vectors,
        stats.chunks
    );
    if others > 0 {
        let list: Vec<String> = stats
            .other_embedders
            .iter()
            .map(|(m, n)| format!("{n} by {m}"))
            .collect();
        detail.push_str(&format!(
            "; {} (meaning search is refused until reindexed)",
            list.join(", ")
        ));
        return (false, detail, Some("zocalo memory reindex".into()));
    }
    let missing = stats.chunks.saturating_sub(stats.vectors);
    if missing > 0 {
        detail.push_str(&format!("; {missing} without a vector"));
        return (true, detail, Some("zocalo memory reindex".into()));
    }
    (true, detail, None)
}

pub fn hits_json(hits: &[zocalo_memory::Hit]) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| {
                json!({
                    "id": h.id,
                    "text": h.text,
                    "score": h.score,
                    "scope": h.scope,
                    "metadata": h.metadata,
                })
            })
            .collect(),
    )
}

pub fn parse_meta(pairs: &[String]) -> anyhow::Result<Metadata> {
    let mut m = Metadata::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(usage(format!("invalid --meta {p:?}: expected KEY=VALUE")));
        };
        let value = match v.parse::<serde_json::Number>() {
            Ok(n) if !v.trim().is_empty() => Value::Number(n),
            _ => Value::String(v.to_owned()),
        };
        m.insert(k.trim().to_owned(), value);
    }
    Ok(m)
}

/// Reads and validates every line before anything is stored; blank lines are skipped.
pub fn read_import(path: &Path) -> anyhow::Result<Vec<NewMemory>> {
    let lines = read_lines(path)?;
    let mut items = Vec::new();
    for (n, line) in lines {
        let bad = |why: String| {
            usage(format!(
                "{}:{n}: {why}; nothing was imported",
                path.display()
            ))
        };
        let item = zocalo_memory::parse_import_line(&line).map_err(bad)?;
        items.push(item);
    }
    Ok(items)
}

/// `(query, scope)` per line, validated up front.
pub fn read_batch(path: &Path) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for (n, line) in read_lines(path)? {
        let bad = |why: &str| usage(format!("{}:{n}: {why}", path.display()));
        let v: Value = serde_json::from_str(&line).map_err(|_| bad("not a JSON object"))?;
        let query = match v.get("query") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(bad("\"query\" must be a non-empty string")),
        };
        let scope = match v.get("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(_) => return Err(bad("\"scope\" must be a non-empty string")),
        };
        out.push((query, scope));
    }
    Ok(out)
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| usage(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if !line.trim().is_empty() {
            out.push((i + 1, line));
        }
    }
    Ok(out)
}

/// `memory search --batch FILE`: each query of [`read_batch`] in its own scope or
/// `default_scopes`, `limit` hits each; one JSON array in input order.
pub async fn search_batch(
    memory: &zocalo_memory::Memory,
    queries: Vec<(String, Option<String>)>,
    default_scopes: &[String],
    limit: usize,
) -> anyhow::Result<Value> {
    let mut out = Vec::with_capacity(queries.len());
    for (query, scope) in queries {
        let scopes: Vec<&str> = match &scope {
            Some(s) => vec![s.as_str()],
            None => default_scopes.iter().map(String::as_str).collect(),
        };
        let hits = memory.recall(&query, &scopes, limit).await?;
        out.push(serde_json::json!({ "query": query, "results": hits_json(&hits) }));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use zocalo_memory::DEFAULT_USER_SCOPE;

    /// One line of an import file and whether it is valid.
    fn import_line() -> impl Strategy<Value = (String, bool)> {
        let text = "[a-zA-Z0-9 ]{0,12}[a-zA-Z0-9][a-zA-Z0-9 ]{0,12}";
        prop_oneof![
            // valid: text, optional scope, optional metadata of strings and numbers
            (
                text,
                proptest::option::of("user:[a-z]{1,8}"),
                proptest::option::of(("[a-z]{1,5}", "[a-z]{0,5}", any::<i32>()))
            )
                .prop_map(|(text, scope, meta)| {
                    let mut o = serde_json::json!({ "text": text });
                    if let Some(s) = scope {
                        o["scope"] = Value::String(s);
                    }
                    if let Some((k, v, n)) = meta {
                        o["metadata"] = serde_json::json!({ k.clone(): v, format!("{k}_n"): n });
                    }
                    (o.to_string(), true)
                }),
            // invalid in one way each
            "[^\\n\\r]{0,20}".prop_filter_map("not JSON", |s| {
                (!s.trim().is_empty() && serde_json::from_str::<Value>(&s).is_err())
                    .then_some((s, false))
            }),
            Just(("[1, 2]".to_owned(), false)),
            Just(("\"just a string\"".to_owned(), false)),
            Just(("{\"text\": 3}".to_owned(), false)),
            Just(("{\"scope\": \"user:a\"}".to_owned(), false)),
            Just(("{\"text\": \"   \"}".to_owned(), false)),
            Just(("{\"text\": \"a\", \"scope\": 7}".to_owned(), false)),
            Just(("{\"text\": \"a\", \"scope\": \"  \"}".to_owned(), false)),
            Just(("{\"text\": \"a\", \"metadata\": \"k=v\"}".to_owned(), false)),
            Just((
                "{\"text\": \"a\", \"metadata\": {\"k\": [1]}}".to_owned(),
                false
            )),
            Just((
                "{\"text\": \"a\", \"metadata\": {\"\": \"v\"}}".to_owned(),
                false
            )),
            // blank lines are skipped
            Just(("   ".to_owned(), true)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A file imports exactly its lines, in order, when every line is valid; otherwise it
        /// is refused as bad input naming its first bad line, and nothing is returned.
        #[test]
        fn import_files_are_all_or_nothing(lines in proptest::collection::vec(import_line(), 0..12)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.jsonl");
            let body: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
            std::fs::write(&path, body.join("\n")).unwrap();
            let first_bad = lines.iter().position(|(_, ok)| !ok);
            match (read_import(&path), first_bad) {
                (Ok(items), None) => {
                    let want: Vec<Value> = lines
                        .iter()
                        .filter(|(l, _)| !l.trim().is_empty())
                        .map(|(l, _)| serde_json::from_str(l).unwrap())
                        .collect();
                    prop_assert_eq!(items.len(), want.len());
                    for (item, w) in items.iter().zip(&want) {
                        prop_assert_eq!(&item.text, w["text"].as_str().unwrap());
                        prop_assert_eq!(
                            item.scope.as_str(),
                            w["scope"].as_str().unwrap_or(DEFAULT_USER_SCOPE)
                        );
                        let meta = w.get("metadata").cloned().unwrap_or(Value::Object(Metadata::new()));
                        prop_assert_eq!(&Value::Object(item.metadata.clone()), &meta);
                        prop_assert_eq!(item.source.as_deref(), Some("import"));
                    }
                }
                (Err(e), Some(i)) => {
                    prop_assert!(e.is::<crate::errors::UsageError>(), "{e:#}");
                    let msg = format!("{e:#}");
                    let needle = format!("in.jsonl:{}:", i + 1);
                    prop_assert!(msg.contains(&needle), "{msg}");
                    prop_assert!(msg.contains("nothing was imported"), "{msg}");
                }
                (Ok(items), Some(i)) => prop_assert!(false, "line {} is bad but {} items came back", i + 1, items.len()),
                (Err(e), None) => prop_assert!(false, "a valid file was refused: {e:#}"),
            }
        }

        /// Any bytes as a batch file: queries in order, or bad input naming a line; no panic.
        #[test]
        fn batch_files_never_panic(body in "[ -~\\n]{0,200}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("q.jsonl");
            std::fs::write(&path, &body).unwrap();
            match read_batch(&path) {
                Ok(queries) => {
                    let lines = body.lines().filter(|l| !l.trim().is_empty()).count();
                    prop_assert_eq!(queries.len(), lines);
                    prop_assert!(queries.iter().all(|(q, _)| !q.trim().is_empty()));
                }
                Err(e) => {
                    prop_assert!(e.is::<crate::errors::UsageError>(), "{e:#}");
                    prop_assert!(format!("{e:#}").contains("q.jsonl:"), "{e:#}");
                }
            }
        }
    }
}
