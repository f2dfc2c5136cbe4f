//! `spawn_agents {tasks: [{id, prompt}]}`: the model fans work out to sub-agents itself.
//!
//! Each task runs as its own agent (a new conversation, the same provider, tools and limits
//! as the caller) through a [`Spawner`]; the tool returns every answer, in input order, as
//! JSON. Two limits keep a model from running away: a depth limit (agents spawned by agents
//! spawned by ... stop at [`SpawnLimits::max_depth`]) and a budget of agents per call.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError, ToolSpec};
use zocalo_store::Store;

use crate::spawn::{current_depth, validate_tasks, AgentRunner, AgentTask, SpawnOptions, Spawner};
use crate::AgentError;

/// The tool's name as the model sees it.
pub const SPAWN_AGENTS: &str = "spawn_agents";

/// Bounds on what one `spawn_agents` call may start.
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnLimits {
    /// Levels of sub-agents allowed below a user's ask: with 2, an agent spawned by the
    /// user's ask may spawn agents, and those may not.
    pub max_depth: u32,
    /// Tasks per call at most.
    pub max_agents: usize,
    /// Agents of one call running at once.
    pub concurrency: usize,
    /// Longest one sub-agent may run.
    pub timeout: Option<Duration>,
    /// Characters of all answers together returned to the model (shared among the agents).
    pub output_chars: usize,
}

impl Default for SpawnLimits {
    fn default() -> Self {
        Self {
            max_depth: 2,
            max_agents: 16,
            concurrency: 8,
            timeout: Some(Duration::from_secs(300)),
            output_chars: 24_000,
        }
    }
}

/// The `spawn_agents` tool. Built before the ask loop that owns it, then [bound](Self::bind)
/// to that loop (held weakly, so the loop and its tool do not keep each other alive).
pub struct SpawnAgentsTool {
    limits: SpawnLimits,
    store: Option<Store>,
    runner: OnceLock<Weak<dyn AgentRunner>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    tasks: Vec<AgentTask>,
}

impl SpawnAgentsTool {
    /// With `store`, every batch it starts is recorded (linked to the calling conversation).
    pub fn new(limits: SpawnLimits, store: Option<Store>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            store,
            runner: OnceLock::new(),
        })
    }

    /// The runner sub-agents use (normally the ask loop this tool is registered in). Only
    /// the first call counts.
    pub fn bind(&self, runner: &Arc<dyn AgentRunner>) {
        let _ = self.runner.set(Arc::downgrade(runner));
    }

    pub fn limits(&self) -> &SpawnLimits {
        &self.limits
    }
}

#[async_trait]
impl Tool for SpawnAgentsTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: SPAWN_AGENTS.into(),
            description: format!(
                "Run up to {} sub-agents in parallel, one per task, and get all their answers \
                 back in order. Each sub-agent starts a fresh conversation and sees only its \
                 own prompt, so make every prompt self-contained. Use it for independent \
                 pieces of work that can be done at the same time.",
                self.limits.max_agents
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "tasks": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": self.limits.max_agents,
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string", "description": "A short unique name for the task"},
                                "prompt": {"type": "string", "description": "Everything the sub-agent needs to know and do"}
                            },
                            "required": ["id", "prompt"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["tasks"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args: Args = serde_json::from_value(arguments).map_err(|e| {
            ToolError::Recoverable(format!(
                "bad arguments: {e}; expected {{\"tasks\": [{{\"id\": \"...\", \"prompt\": \"...\"}}]}}"
            ))
        })?;
        let depth = current_depth();
        if depth >= self.limits.max_depth {
            return Err(ToolError::Recoverable(format!(
                "you are a sub-agent at depth {depth}, and sub-agents may be nested at most {} deep: do this work yourself",
                self.limits.max_depth
            )));
        }
        if args.tasks.is_empty() {
            return Err(ToolError::Recoverable("`tasks` is empty".into()));
        }
        if args.tasks.len() > self.limits.max_agents {
            return Err(ToolError::Recoverable(format!(
                "{} tasks asked, at most {} per call: merge some, or call again for the rest",
                args.tasks.len(),
                self.limits.max_agents
            )));
        }
        validate_tasks(&args.tasks, |_| None).map_err(|e| ToolError::Recoverable(e.to_string()))?;
        let runner = self.runner.get().and_then(Weak::upgrade).ok_or_else(|| {
            ToolError::Fatal("spawn_agents is not connected to an ask loop".into())
        })?;
        let mut spawner = Spawner::new(runner);
        if let Some(store) = &self.store {
            spawner = spawner.with_store(store.clone());
        }
        let n = args.tasks.len();
        let report = spawner
            .spawn_all(
                args.tasks,
                SpawnOptions {
                    concurrency: self.limits.concurrency,
                    timeout: self.limits.timeout,
                    ..SpawnOptions::default()
                },
                |_| {},
            )
            .await
            .map_err(|e| match e {
                AgentError::BadTask { .. } => ToolError::Recoverable(e.to_string()),
                other => ToolError::Fatal(other.to_string()),
            })?;
        let share = (self.limits.output_chars / n.max(1)).max(200);
        let results: Vec<Value> = report
            .results
            .iter()
            .map(|r| {
                let mut v = json!({"id": r.id, "status": r.status});
                if let Some(out) = &r.output {
                    v["output"] = Value::from(cut(out, share));
                }
                if let Some(err) = &r.error {
                    v["error"] = Value::from(cut(err, share));
                }
                v
            })
            .collect();
        Ok(json!({"batch_id": report.batch_id, "results": results}).to_string())
    }
}

/// At most `max` characters of `s`, saying how much was left out.
fn cut(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push_str(&format!(" [... {} more characters]", total - max));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_counts_the_rest() {
        assert_eq!(cut("héllo", 5), "héllo");
        assert_eq!(cut("héllo world", 5), "héllo [... 6 more characters]");
    }

    #[tokio::test]
    async fn bad_arguments_and_limits_are_recoverable() {
        let tool = SpawnAgentsTool::new(
            SpawnLimits {
                max_agents: 2,
                ..SpawnLimits::default()
            },
            None,
        );
        let cases = [
            (json!({}), "missing field `tasks`"),
            (json!({"tasks": "x"}), "invalid type"),
            (json!({"tasks": []}), "empty"),
            (
                json!({"tasks": [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p"}, {"id": "c", "prompt": "p"}]}),
                "at most 2 per call",
            ),
            (
                json!({"tasks": [{"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}]}),
                "duplicate id",
            ),
            (json!({"tasks": [{"id": "a"}]}), "prompt"),
        ];
        for (args, needle) in cases {
            match tool.call(args.clone()).await {
                Err(ToolError::Recoverable(m)) => assert!(m.contains(needle), "{args}: {m}"),
                other => panic!("{args}: {other:?}"),
            }
        }
        // Valid tasks but no ask loop bound: fatal, not the model's fault.
        let r = tool
            .call(json!({"tasks": [{"id": "a", "prompt": "p"}]}))
            .await;
        assert!(matches!(r, Err(ToolError::Fatal(_))), "{r:?}");
    }
}
