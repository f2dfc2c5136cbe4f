//! `spawn_agents {tasks: [{id, prompt}]}`: the model fans work out to sub-agents itself.
//!
//! Each task runs as its own agent (a new conversation, the same provider, tools and limits
//! as the caller) through a [`Spawner`]; the tool returns every answer, in input order, as
//! JSON. Two limits keep a model from running away: a depth limit (agents spawned by agents
//! spawned by ... stop at [`SpawnLimits::max_depth`]) and a budget of agents per call.
//!
//! The same tool serves callers outside any ask loop ([`SpawnAgentsTool::served`], zocalo's
//! MCP `agents_spawn`): its agents run on a runner built on the first call, they are top-level
//! agents (no depth limit, like `zocalo agents spawn-all`), and the caller may also choose
//! `concurrency` and `timeout_secs`.

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

/// Longest `timeout_secs` a [served](SpawnAgentsTool::served) caller may ask for.
pub const MAX_CALLER_TIMEOUT_SECS: f64 = 3600.0;

/// Builds the runner of a [served](SpawnAgentsTool::served) tool and the model its agents
/// ask (`None`: the provider's default); an error is the tool call's error.
pub type MakeRunner =
    dyn Fn() -> Result<(Arc<dyn AgentRunner>, Option<String>), String> + Send + Sync;

/// Where the tool's agents run.
enum Runner {
    /// The ask loop the tool is registered in, held weakly (see [`SpawnAgentsTool::bind`]).
    Bound(OnceLock<Weak<dyn AgentRunner>>),
    /// Built on the first call that needs it and kept; a failed build is tried again.
    Lazy {
        built: tokio::sync::OnceCell<(Arc<dyn AgentRunner>, Option<String>)>,
        make: Box<MakeRunner>,
    },
}

/// The `spawn_agents` tool. Built before the ask loop that owns it, then [bound](Self::bind)
/// to that loop (held weakly, so the loop and its tool do not keep each other alive); or
/// [served](Self::served) to callers outside any ask loop.
pub struct SpawnAgentsTool {
    name: String,
    limits: SpawnLimits,
    store: Option<Store>,
    runner: Runner,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    tasks: Vec<AgentTask>,
    /// Served tools only.
    #[serde(default)]
    concurrency: Option<usize>,
    /// Served tools only.
    #[serde(default)]
    timeout_secs: Option<f64>,
}

impl SpawnAgentsTool {
    /// With `store`, every batch it starts is recorded (linked to the calling conversation).
    pub fn new(limits: SpawnLimits, store: Option<Store>) -> Arc<Self> {
        Arc::new(Self {
            name: SPAWN_AGENTS.into(),
            limits,
            store,
            runner: Runner::Bound(OnceLock::new()),
        })
    }

    /// The tool for callers outside any ask loop, named `name`: agents run on the runner
    /// `make` builds on the first valid call (and kept for later calls). They are top-level
    /// agents, so no depth limit applies; `limits.max_agents` is the budget per call,
    /// `limits.concurrency` and `limits.timeout` the defaults of the caller's `concurrency`
    /// (1 to `max_agents`) and `timeout_secs` (above 0, at most [`MAX_CALLER_TIMEOUT_SECS`]).
    pub fn served(
        name: impl Into<String>,
        limits: SpawnLimits,
        store: Option<Store>,
        make: impl Fn() -> Result<(Arc<dyn AgentRunner>, Option<String>), String>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            limits,
            store,
            runner: Runner::Lazy {
                built: tokio::sync::OnceCell::new(),
                make: Box::new(make),
            },
        })
    }

    /// The runner sub-agents use (normally the ask loop this tool is registered in). Only
    /// the first call counts; a [served](Self::served) tool ignores it.
    pub fn bind(&self, runner: &Arc<dyn AgentRunner>) {
        if let Runner::Bound(cell) = &self.runner {
            let _ = cell.set(Arc::downgrade(runner));
        }
    }

    fn served_mode(&self) -> bool {
        matches!(self.runner, Runner::Lazy { .. })
    }

    /// The runner, and the model to ask (`None`: the provider's default).
    async fn runner(&self) -> Result<(Arc<dyn AgentRunner>, Option<String>), ToolError> {
        match &self.runner {
            Runner::Bound(cell) => cell
                .get()
                .and_then(Weak::upgrade)
                .map(|r| (r, None))
                .ok_or_else(|| {
                    ToolError::Fatal(format!("{} is not connected to an ask loop", self.name))
                }),
            Runner::Lazy { built, make } => built
                .get_or_try_init(|| async { make() })
                .await
                .cloned()
                .map_err(|e| ToolError::Fatal(format!("cannot start agents: {e}"))),
        }
    }

    /// The batch's options from the limits and, for a served tool, the caller's choices.
    fn options(&self, args: &Args) -> Result<SpawnOptions, ToolError> {
        let served = self.served_mode();
        let bad = |m: String| Err(ToolError::Recoverable(m));
        let max = self.limits.max_agents;
        let concurrency = match args.concurrency {
            Some(_) if !served => {
                return bad("unknown field `concurrency`, expected `tasks`".into())
            }
            Some(c) if !(1..=max).contains(&c) => {
                return bad(format!("`concurrency` must be 1 to {max}, got {c}"))
            }
            Some(c) => c,
            None => self.limits.concurrency,
        };
        let timeout = match args.timeout_secs {
            Some(_) if !served => {
                return bad("unknown field `timeout_secs`, expected `tasks`".into())
            }
            Some(t) if !(t.is_finite() && t > 0.0 && t <= MAX_CALLER_TIMEOUT_SECS) => {
                return bad(format!(
                    "`timeout_secs` must be above 0 and at most {MAX_CALLER_TIMEOUT_SECS}, got {t}"
                ))
            }
            Some(t) => Some(Duration::from_secs_f64(t)),
            None => self.limits.timeout,
        };
        Ok(SpawnOptions {
            concurrency,
            timeout,
            ..SpawnOptions::default()
        })
    }

    pub fn limits(&self) -> &SpawnLimits {
        &self.limits
    }
}

#[async_trait]
impl Tool for SpawnAgentsTool {
    fn spec(&self) -> ToolSpec {
        let max = self.limits.max_agents;
        let mut parameters = json!({
                "type": "object",
                "properties": {
                    "tasks": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max,
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
        });
        let description = if self.served_mode() {
            parameters["properties"]["concurrency"] = json!({
                "type": "integer",
                "minimum": 1,
                "maximum": max,
                "description": format!("Agents running at once (default {})", self.limits.concurrency),
            });
            parameters["properties"]["timeout_secs"] = json!({
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_CALLER_TIMEOUT_SECS,
                "description": match self.limits.timeout {
                    Some(t) => format!("Seconds one agent may run (default {})", t.as_secs_f64()),
                    None => "Seconds one agent may run (default: no limit)".to_owned(),
                },
            });
            format!(
                "Run up to {max} agents in parallel, one per task, each a fresh conversation \
                 with zocalo's configured model and tools, and get all their answers back in \
                 input order. Each agent sees only its own prompt, so make every prompt \
                 self-contained. Returns {{\"batch_id\", \"results\": [{{\"id\", \"status\": \
                 \"ok\"|\"error\", \"output\"|\"error\"}}]}}; the batch is recorded \
                 (`zocalo agents list`)."
            )
        } else {
            format!(
                "Run up to {max} sub-agents in parallel, one per task, and get all their answers \
                 back in order. Each sub-agent starts a fresh conversation and sees only its \
                 own prompt, so make every prompt self-contained. Use it for independent \
                 pieces of work that can be done at the same time."
            )
        };
        ToolSpec {
            name: self.name.clone(),
            description,
            parameters,
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let arguments = match arguments {
            // Clients may send no arguments at all.
            Value::Null => json!({}),
            v => v,
        };
        let args: Args = serde_json::from_value(arguments).map_err(|e| {
            ToolError::Recoverable(format!(
                "bad arguments: {e}; expected {{\"tasks\": [{{\"id\": \"...\", \"prompt\": \"...\"}}]}}"
            ))
        })?;
        let depth = current_depth();
        if !self.served_mode() && depth >= self.limits.max_depth {
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
        let mut options = self.options(&args)?;
        let (runner, model) = self.runner().await?;
        options.model = model;
        let mut spawner = Spawner::new(runner);
        if let Some(store) = &self.store {
            spawner = spawner.with_store(store.clone());
        }
        let n = args.tasks.len();
        let report = spawner
            .spawn_all(args.tasks, options, |_| {})
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
    #![allow(clippy::unwrap_used)]
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
        // The caller's knobs belong to the served tool only.
        let r = tool
            .call(json!({"tasks": [{"id": "a", "prompt": "p"}], "concurrency": 1}))
            .await;
        assert!(
            matches!(&r, Err(ToolError::Recoverable(m)) if m.contains("unknown field `concurrency`")),
            "{r:?}"
        );
        assert!(!tool.spec().parameters["properties"]
            .as_object()
            .is_some_and(|p| p.contains_key("concurrency")));
    }

    /// Answers "echo: PROMPT" after a delay the prompt names ("wait 30: ..."), counting how
    /// many run at once.
    #[derive(Default)]
    struct Echo {
        running: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl AgentRunner for Echo {
        async fn run(&self, run: &crate::AgentRun) -> Result<crate::AgentAnswer, crate::RunError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            let ms = run
                .prompt
                .strip_prefix("wait ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.running.fetch_sub(1, SeqCst);
            Ok(crate::AgentAnswer {
                text: format!("echo: {}", run.prompt),
                ..Default::default()
            })
        }
    }

    fn served(
        echo: Arc<Echo>,
        builds: Arc<std::sync::atomic::AtomicUsize>,
        fail_first: bool,
    ) -> Arc<SpawnAgentsTool> {
        SpawnAgentsTool::served(
            "agents_spawn",
            SpawnLimits {
                max_agents: 3,
                concurrency: 3,
                // A depth limit of 0 would refuse every ask-loop call: a served tool's
                // callers are not sub-agents, so it must not apply.
                max_depth: 0,
                ..SpawnLimits::default()
            },
            None,
            move || {
                let n = builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if fail_first && n == 0 {
                    return Err("no provider configured".into());
                }
                let runner: Arc<dyn AgentRunner> = echo.clone();
                Ok((runner, None))
            },
        )
    }

    fn results(text: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        assert!(v["batch_id"].is_string(), "{v}");
        v["results"].as_array().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn served_tool_checks_the_callers_input_before_building_a_runner() {
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tool = served(Arc::new(Echo::default()), builds.clone(), false);
        let one = json!([{"id": "a", "prompt": "p"}]);
        let cases = [
            (json!({"tasks": []}), "empty"),
            (
                json!({"tasks": [{"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}]}),
                "duplicate id",
            ),
            (
                json!({"tasks": [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p"},
                                 {"id": "c", "prompt": "p"}, {"id": "d", "prompt": "p"}]}),
                "at most 3 per call",
            ),
            (
                json!({"tasks": one, "concurrency": 0}),
                "`concurrency` must be 1 to 3",
            ),
            (
                json!({"tasks": one, "concurrency": 4}),
                "`concurrency` must be 1 to 3",
            ),
            (json!({"tasks": one, "concurrency": -1}), "invalid value"),
            (
                json!({"tasks": one, "timeout_secs": 0}),
                "`timeout_secs` must be above 0",
            ),
            (
                json!({"tasks": one, "timeout_secs": -3.5}),
                "`timeout_secs`",
            ),
            (json!({"tasks": one, "timeout_secs": 3601}), "at most 3600"),
            (json!({"tasks": one, "timeout_secs": "10"}), "invalid type"),
            (json!({"tasks": one, "model": "x"}), "unknown field `model`"),
            (Value::Null, "missing field `tasks`"),
        ];
        for (args, needle) in cases {
            match tool.call(args.clone()).await {
                Err(ToolError::Recoverable(m)) => assert!(m.contains(needle), "{args}: {m}"),
                other => panic!("{args}: {other:?}"),
            }
        }
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 0);
        let spec = tool.spec();
        assert_eq!(spec.name, "agents_spawn");
        assert_eq!(spec.parameters["properties"]["tasks"]["maxItems"], 3);
        assert_eq!(spec.parameters["properties"]["concurrency"]["maximum"], 3);
        assert_eq!(
            spec.parameters["properties"]["timeout_secs"]["type"],
            "number"
        );
    }

    #[tokio::test]
    async fn served_tool_runs_in_input_order_with_the_callers_limits() {
        use std::sync::atomic::Ordering::SeqCst;
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let echo = Arc::new(Echo::default());
        let tool = served(echo.clone(), builds.clone(), false);
        // The first task finishes last.
        let tasks = json!([
            {"id": "a", "prompt": "wait 150: first"},
            {"id": "b", "prompt": "wait 50: second"},
            {"id": "c", "prompt": "third"},
        ]);
        let out = tool.call(json!({"tasks": tasks})).await.unwrap();
        let r = results(&out);
        let ids: Vec<&str> = r.iter().filter_map(|v| v["id"].as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(r[0]["output"], "echo: wait 150: first");
        assert_eq!(r[2]["output"], "echo: third");
        assert_eq!(
            echo.peak.load(SeqCst),
            3,
            "default concurrency is the limit's"
        );

        // concurrency: 1 runs them one at a time; the runner is built once for both calls.
        echo.peak.store(0, SeqCst);
        let out = tool
            .call(json!({"tasks": tasks, "concurrency": 1}))
            .await
            .unwrap();
        assert_eq!(results(&out).len(), 3);
        assert_eq!(echo.peak.load(SeqCst), 1);
        assert_eq!(builds.load(SeqCst), 1);

        // timeout_secs stops a slow agent; the others still answer.
        let out = tool
            .call(json!({
                "tasks": [{"id": "slow", "prompt": "wait 5000: x"}, {"id": "fast", "prompt": "y"}],
                "timeout_secs": 0.2,
            }))
            .await
            .unwrap();
        let r = results(&out);
        assert_eq!(r[0]["status"], "error", "{r:?}");
        assert!(
            r[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r:?}"
        );
        assert_eq!(r[1]["status"], "ok");
    }

    #[tokio::test]
    async fn served_tool_reports_a_failed_build_and_tries_again() {
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tool = served(Arc::new(Echo::default()), builds.clone(), true);
        let args = json!({"tasks": [{"id": "a", "prompt": "p"}]});
        match tool.call(args.clone()).await {
            Err(ToolError::Fatal(m)) => assert!(m.contains("no provider configured"), "{m}"),
            other => panic!("{other:?}"),
        }
        let out = tool.call(args).await.unwrap();
        assert_eq!(results(&out)[0]["output"], "echo: p");
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
