//! What the ask loop uses: recalled memories as context under a token budget, episodic
//! memories of user turns, and the `memory_save` / `memory_search` tools.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use zocalo_core::protocol::estimate_tokens;
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::model::{conversation_scope, NewMemory, DEFAULT_USER_SCOPE};
use crate::{Memory, MemoryError, Retrieval};

/// The heading of the recalled-memories block in the system prompt.
pub const RECALL_HEADING: &str = "Memories that may be relevant (saved notes and things the \
user said in earlier conversations; use them when they help, ignore them when not):";

/// Memory as the ask loop sees it: one user scope plus the conversation's own scope.
#[derive(Clone, Debug)]
pub struct AskMemory {
    pub memory: Arc<Memory>,
    /// Where saved notes and episodic turns go, and the first scope searched.
    pub user_scope: String,
    /// Memories recalled before each turn at most.
    pub recall_limit: usize,
    /// Store every user turn as an episodic memory.
    pub episodic: bool,
}

impl AskMemory {
    pub fn new(memory: Arc<Memory>) -> Self {
        Self {
            memory,
            user_scope: DEFAULT_USER_SCOPE.to_owned(),
            recall_limit: 5,
            episodic: true,
        }
    }

    /// The recalled-memories block for `message` in conversation `conversation`, cut to
    /// `budget_tokens` (estimated); None when nothing relevant fits. While vectors of another
    /// embedder are stored (before `zocalo memory reindex`), recall uses keywords only, with a
    /// warning: the `memory_search` tool and `zocalo memory search` refuse instead.
    pub async fn context_for(
        &self,
        conversation: &str,
        message: &str,
        budget_tokens: usize,
    ) -> Result<Option<String>, MemoryError> {
        let conv_scope = conversation_scope(conversation);
        let scopes = [self.user_scope.as_str(), conv_scope.as_str()];
        let hits = match self
            .memory
            .recall(message, &scopes, self.recall_limit)
            .await
        {
            // Mid-migration between embedders: recall by keywords (which compare no vectors)
            // rather than answer without any memory; said on every turn until reindexed.
            Err(e @ MemoryError::MixedEmbedders { .. }) => {
                tracing::warn!("memory recall falls back to keywords only: {e}");
                self.memory
                    .recall_with(message, &scopes, self.recall_limit, Retrieval::Keyword)
                    .await?
            }
            other => other?,
        };
        let mut block = String::from(RECALL_HEADING);
        let mut used = estimate_tokens(&block);
        let mut any = false;
        for hit in hits {
            // A turn of this very conversation is already in the history the model sees.
            if hit.metadata.get("conversation").and_then(|v| v.as_str()) == Some(conversation) {
                continue;
            }
            let line = format!(
                "\n- ({}) {}",
                hit.created_at.format("%Y-%m-%d"),
                hit.text.trim()
            );
            let cost = estimate_tokens(&line);
            if used + cost > budget_tokens {
                break;
            }
            used += cost;
            block.push_str(&line);
            any = true;
        }
        Ok(any.then_some(block))
    }

    /// Stores a user turn as an episodic memory (when enabled).
    pub async fn remember_turn(
        &self,
        conversation: &str,
        message: &str,
    ) -> Result<(), MemoryError> {
        if !self.episodic || message.trim().is_empty() {
            return Ok(());
        }
        let new = NewMemory::new(self.user_scope.clone(), message)
            .with_meta("kind", "episodic")
            .with_meta("speaker", "user")
            .with_meta("conversation", conversation)
            .with_meta("date", chrono::Utc::now().format("%Y-%m-%d").to_string())
            .with_source(conversation);
        self.memory.memorize(new).await.map(drop)
    }

    /// `memory_save` and `memory_search` for the model.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        vec![
            Arc::new(MemorySave {
                memory: self.memory.clone(),
                scope: self.user_scope.clone(),
            }),
            Arc::new(MemorySearch {
                memory: self.memory.clone(),
                scopes: vec![self.user_scope.clone()],
            }),
        ]
    }
}

fn tool_error(e: MemoryError) -> ToolError {
    if e.is_usage() {
        ToolError::Recoverable(e.to_string())
    } else {
        ToolError::Fatal(e.to_string())
    }
}

fn string_arg(args: &serde_json::Value, name: &str) -> Result<String, ToolError> {
    match args.get(name).and_then(|v| v.as_str()) {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(ToolError::Recoverable(format!(
            "missing argument `{name}`: a non-empty string"
        ))),
    }
}

/// `memory_save {text}`: remember something across conversations.
pub struct MemorySave {
    memory: Arc<Memory>,
    scope: String,
}

#[async_trait]
impl Tool for MemorySave {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "memory_save".into(),
            description: "Save a fact worth remembering in later conversations (a preference, \
                          a name, a decision). One self-contained sentence."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {"text": {"type": "string", "description": "The fact to remember."}},
                "required": ["text"]
            }),
        }
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let text = string_arg(&arguments, "text")?;
        let new = NewMemory::new(self.scope.clone(), text).with_source("tool:memory_save");
        let record = self.memory.memorize(new).await.map_err(tool_error)?;
        Ok(format!("saved as {}", record.id))
    }
}

/// `memory_search {query}`: look through saved memories.
pub struct MemorySearch {
    memory: Arc<Memory>,
    scopes: Vec<String>,
}

#[async_trait]
impl Tool for MemorySearch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "memory_search".into(),
            description: "Search long-term memory (saved facts and what the user said in \
                          earlier conversations). Returns the best matches, best first."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20}
                },
                "required": ["query"]
            }),
        }
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let query = string_arg(&arguments, "query")?;
        let limit = arguments
            .get("limit")
            .and_then(|v| v.as_u64())
            .map_or(5, |n| n.clamp(1, 20) as usize);
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let hits = self
            .memory
            .recall(&query, &scopes, limit)
            .await
            .map_err(tool_error)?;
        if hits.is_empty() {
            return Ok("no memories found".into());
        }
        Ok(hits
            .iter()
            .map(|h| {
                format!(
                    "- [{}] ({}) {}",
                    h.id,
                    h.created_at.format("%Y-%m-%d"),
                    h.text.trim()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
