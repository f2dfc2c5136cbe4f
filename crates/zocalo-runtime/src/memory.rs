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
use zocalo_core::{Config, ConversationId};
use zocalo_memory::{AskMemory, Memory, MemoryConfig, Metadata, NewMemory};

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

/// The embedder: `ZOCALO_EMBEDDER=none` turns vectors off; otherwise the local MiniLM from
/// `models_dir`, or keywords alone while it is not fetched (`memory stats` says which; `-v`
/// logs why). Use [`crate::Runtime::embedder`], which loads it once per process.
/// The local embedder, or why there is none: `Err(None)` when `ZOCALO_EMBEDDER=none` turned
/// it off, `Err(Some(reason))` when its weights are not installed (memory then works on
/// keywords alone, and the commands say so).
pub(crate) fn load_embedder(models_dir: &Path) -> Result<Arc<dyn Embedder>, Option<String>> {
    if std::env::var("ZOCALO_EMBEDDER").is_ok_and(|v| v == "none") {
        return Err(None);
    }
    match zocalo_local::LocalEmbedder::load(models_dir) {
        Ok(e) => Ok(Arc::new(e)),
        Err(e) => {
            tracing::info!("memory search uses keywords only: {e}");
            Err(Some(e.to_string()))
        }
    }
}

/// What the memory commands print once when the embedding model is missing.
pub fn keyword_only_note(reason: &str) -> String {
    format!(
        "note: the embedding model is not installed ({reason}), so memories are stored and \
         searched by keywords only, without meaning search. Run `zocalo models fetch`; the \
         memories stored meanwhile get their vectors on the next load or with `zocalo memory reindex`."
    )
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
