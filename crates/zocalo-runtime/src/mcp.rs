//! zocalo's tools for other agents over MCP (`zocalo mcp serve`, `/mcp` of `zocalo serve`):
//! memory, skills, automations, the pool and sub-agents, on the runtime's shared resources.
//! zocalo-mcp itself only speaks the protocol.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zocalo_agent::{AgentRunner, SpawnAgentsTool};
use zocalo_core::{Tool, ToolError};
use zocalo_mcp::{typed_tool, ToolServer};
use zocalo_memory::{NewMemory, DEFAULT_USER_SCOPE};
use zocalo_pool::{JobQueue, SqlQueue};
use zocalo_scheduler::{NewAutomation, Scheduler};
use zocalo_store::Store;

use crate::{ModelChoice, Runtime};

/// The MCP server of zocalo's tools on `store`.
pub fn tool_server(ctx: &Runtime, store: Store) -> ToolServer {
    ToolServer::new(served_tools(ctx, store)).with_instructions(
        "zocalo is the user's personal AI computer. memory_* tools read and write their \
         long-term memory; skills_list / skill_run run their Agent Skills; schedule_* manage \
         recurring automations; pool_* submit and inspect jobs on their compute pool; \
         agents_spawn runs several agents at once on their configured model.",
    )
}

/// The streamable-HTTP MCP endpoint over zocalo's tools, for `zocalo serve` to mount at `/mcp`
/// behind its bearer token (`allowed_hosts: None` accepts any `Host`, the token being the
/// protection), or for `mcp serve --http` on loopback. Cancelling `shutdown` ends the sessions.
pub fn http_router(
    ctx: &Runtime,
    store: Store,
    allowed_hosts: Option<Vec<String>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> axum::Router {
    zocalo_mcp::http_router(tool_server(ctx, store), allowed_hosts, shutdown)
}

/// `mcp serve` on stdin/stdout until the client hangs up.
pub async fn serve_stdio(ctx: &Runtime) -> anyhow::Result<()> {
    let store = ctx.store().await?;
    let r = zocalo_mcp::serve_stdio(tool_server(ctx, store.clone())).await;
    store.close().await;
    Ok(r?)
}

/// `mcp serve --http ADDR`: the streamable-HTTP endpoint at `/mcp`, loopback only (it has no
/// token; `zocalo serve` mounts the same endpoint behind one), until Ctrl-C. `listening` is
/// told the address once it listens.
pub async fn serve_http(
    ctx: &Runtime,
    addr: &str,
    listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| crate::usage(format!("--http {addr:?}: expected IP:PORT ({e})")))?;
    if !addr.ip().is_loopback() {
        return Err(crate::usage(format!(
            "--http {addr}: only loopback addresses (this endpoint has no token); use \
             `zocalo serve` for a token-protected /mcp"
        )));
    }
    let store = ctx.store().await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hosts = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .map(String::from)
        .to_vec();
    let app = axum::Router::new().nest_service(
        "/mcp",
        http_router(ctx, store.clone(), Some(hosts), shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listening(listener.local_addr()?);
    let stop = shutdown.clone();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await;
    shutdown.cancel();
    store.close().await;
    Ok(r?)
}

/// One row of `mcp tools`: a configured server's tool, or the server's error.
#[derive(Debug, serde::Serialize)]
pub struct ToolRow {
    pub server: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualified_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The tools of every MCP server in config.toml (`[mcp.servers.NAME]`): a server that cannot
/// be reached gives one row with its error, and the others are still listed. Also: how many
/// servers are configured.
pub async fn configured_tools(ctx: &Runtime) -> (usize, Vec<ToolRow>) {
    let clients = ctx.mcp_clients();
    let reports = clients.list().await;
    clients.shutdown().await;
    let servers = reports.len();
    let mut rows = Vec::new();
    for r in reports {
        match r.tools {
            Ok(tools) => rows.extend(tools.into_iter().map(|t| ToolRow {
                server: t.server,
                name: Some(t.name),
                description: Some(t.description),
                qualified_name: Some(t.qualified_name),
                error: None,
            })),
            Err(e) => rows.push(ToolRow {
                server: r.server,
                name: None,
                description: None,
                qualified_name: None,
                error: Some(e.to_string()),
            }),
        }
    }
    (servers, rows)
}

fn recoverable(e: impl std::fmt::Display) -> ToolError {
    ToolError::Recoverable(e.to_string())
}

fn to_text(v: Value) -> Result<String, ToolError> {
    serde_json::to_string_pretty(&v).map_err(|e| ToolError::Fatal(e.to_string()))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemorySaveArgs {
    /// What to remember: one self-contained fact, note or preference.
    text: String,
    /// Scope to store it in: user:NAME, agent:NAME, conv:ID, ... (default user:default).
    #[serde(default)]
    scope: Option<String>,
    /// Extra key/value metadata stored with it.
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemorySearchArgs {
    /// What to look for (keywords and meaning both count).
    query: String,
    /// Scopes to search (default ["user:default"]).
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Most results to return, 1 to 50 (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    limit: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryForgetArgs {
    /// The memory's id (mem_…), as memory_save or memory_search returned it.
    id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SkillRunArgs {
    /// The skill's name, as skills_list shows it.
    name: String,
    /// Arguments passed to the script.
    #[serde(default)]
    args: Vec<String>,
    /// Which script inside the skill (path or file name in scripts/); default: its only
    /// script, or scripts/NAME.*.
    #[serde(default)]
    script: Option<String>,
    /// Wall-clock limit in seconds, 1 to 600 (default 60).
    #[serde(default)]
    #[schemars(range(min = 1, max = 600))]
    timeout_secs: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleAddArgs {
    /// A unique name: letters, digits, '-', '_', '.'.
    name: String,
    /// RFC 5545 recurrence rule, e.g. "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR".
    rrule: String,
    /// First occurrence in local wall time, YYYY-MM-DDTHH:MM:SS.
    start: String,
    /// IANA time zone, e.g. "Europe/Berlin".
    tz: String,
    /// Ask the model this message at each occurrence. Give exactly one of ask, skill, shell.
    #[serde(default)]
    ask: Option<String>,
    /// Run this skill at each occurrence.
    #[serde(default)]
    skill: Option<String>,
    /// Arguments for `skill`.
    #[serde(default)]
    skill_args: Vec<String>,
    /// Run this shell command (sh -c) at each occurrence.
    #[serde(default)]
    shell: Option<String>,
    /// Missed occurrences: "skip", "run-once" (default) or "run-all".
    #[serde(default)]
    misfire: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PoolSubmitArgs {
    /// Job kind: "noop", "shell", "ask" or "skill".
    kind: String,
    /// The job's input: shell {"cmd": [prog, args...]}, ask {"message": ...}, skill
    /// {"name": ..., "args": [...]}.
    #[serde(default)]
    payload: Option<Value>,
    /// -1000 to 1000; higher runs first (default 0).
    #[serde(default)]
    priority: i32,
    /// Only worker nodes with all of these labels run it.
    #[serde(default)]
    labels: Vec<String>,
    /// How many identical jobs, 1 to 1000 (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    count: Option<u64>,
    /// Idempotency key: submitting again with it returns the existing job.
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PoolStatusArgs {
    /// A job id (job_…): that job's state, result and error. Without it: job counts per
    /// state.
    #[serde(default)]
    id: Option<String>,
}

/// Most jobs one pool_submit may enqueue (the CLI allows more).
const MCP_MAX_COUNT: u64 = 1000;

/// The MCP name of the sub-agent tool (the ask loop's own is `spawn_agents`).
pub const AGENTS_SPAWN: &str = "agents_spawn";

/// `agents_spawn`: the ask loop's `spawn_agents` tool served to MCP clients. Its agents run
/// in an ask loop like `zocalo agents spawn-all`'s (the configured provider and model, tools
/// on), built on the first valid call so that serving MCP needs no provider until then; every
/// batch is recorded in `store`. `[agents]` in config.toml sets the budget per call
/// (`max_agents_per_call`) and the defaults of `concurrency` and `timeout_secs`.
fn agents_spawn(ctx: &Runtime, store: Store) -> Arc<dyn Tool> {
    let own = ctx.clone();
    let agents_store = store.clone();
    SpawnAgentsTool::served(AGENTS_SPAWN, ctx.spawn_limits(), Some(store), move || {
        let (provider, model) = own
            .provider(&ModelChoice::default())
            .map_err(|e| format!("{e:#}"))?;
        let runner: Arc<dyn AgentRunner> = own.agent_asker(&agents_store, provider, true);
        Ok((runner, model))
    })
}

/// The tools `zocalo mcp serve` and `/mcp` offer, minus those `[permissions]` denies: an
/// MCP client is its own approver (it asks its user before a call), so `ask` tools are
/// served, `deny` ones are not (not listed, not callable).
pub fn served_tools(ctx: &Runtime, store: Store) -> Vec<Arc<dyn Tool>> {
    let mut tools = all_served_tools(ctx, store);
    // The config was checked when the runtime loaded it; a broken rule denies everything.
    match zocalo_agent::Policy::from_config(&ctx.config, None) {
        Ok(policy) => {
            tools.retain(|t| policy.decide(&t.spec().name) != zocalo_core::config::Decision::Deny)
        }
        Err(e) => {
            tracing::error!("[permissions]: {e}; serving no tools");
            tools.clear();
        }
    }
    tools
}

fn all_served_tools(ctx: &Runtime, store: Store) -> Vec<Arc<dyn Tool>> {
    let memory = ctx.memory_on(&store);
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();

    let m = memory.clone();
    tools.push(typed_tool(
        "memory_save",
        "Save something to the user's long-term memory (a fact, preference, decision or \
         note), so later conversations can recall it. Returns {\"id\"}.",
        move |a: MemorySaveArgs| {
            let m = m.clone();
            async move {
                let mut new = NewMemory::new(
                    a.scope.unwrap_or_else(|| DEFAULT_USER_SCOPE.to_owned()),
                    a.text,
                )
                .with_source("mcp");
                new.metadata = a.metadata.unwrap_or_default();
                new.validate().map_err(recoverable)?;
                let r = m.memorize(new).await.map_err(recoverable)?;
                to_text(json!({ "id": r.id }))
            }
        },
    ));

    let m = memory.clone();
    tools.push(typed_tool(
        "memory_search",
        "Search the user's long-term memory by keywords and meaning. Returns {\"results\": \
         [{\"id\",\"text\",\"score\",\"scope\",\"metadata\"}]}, best first.",
        move |a: MemorySearchArgs| {
            let m = m.clone();
            async move {
                if a.query.trim().is_empty() {
                    return Err(recoverable("`query` is empty"));
                }
                let limit = a.limit.unwrap_or(5);
                if !(1..=50).contains(&limit) {
                    return Err(recoverable("`limit` must be 1 to 50"));
                }
                let scopes = a
                    .scopes
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| vec![DEFAULT_USER_SCOPE.to_owned()]);
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                let hits = m
                    .recall(&a.query, &scopes, limit)
                    .await
                    .map_err(recoverable)?;
                let results: Vec<Value> = hits
                    .iter()
                    .map(|h| {
                        json!({
                            "id": h.id, "text": h.text, "score": h.score,
                            "scope": h.scope, "metadata": h.metadata,
                        })
                    })
                    .collect();
                to_text(json!({ "results": results }))
            }
        },
    ));

    let m = memory;
    tools.push(typed_tool(
        "memory_forget",
        "Delete one memory for good, by id. Returns {\"forgotten\": id}.",
        move |a: MemoryForgetArgs| {
            let m = m.clone();
            async move {
                m.forget(&a.id).await.map_err(recoverable)?;
                to_text(json!({ "forgotten": a.id }))
            }
        },
    ));

    let rt = ctx.clone();
    tools.push(typed_tool(
        "skills_list",
        "List the user's Agent Skills (name and description). Returns {\"skills\": \
         [{\"name\",\"description\"}]}.",
        move |_: NoArgs| {
            let skills = rt.skills();
            async move {
                let list: Vec<Value> = skills
                    .list()
                    .iter()
                    .map(|s| json!({ "name": s.name, "description": s.description }))
                    .collect();
                to_text(json!({ "skills": list }))
            }
        },
    ));

    let rt = ctx.clone();
    tools.push(typed_tool(
        "skill_run",
        "Run a script of one of the user's Agent Skills, sandboxed, with a time limit. \
         Returns {\"exit_code\",\"timed_out\",\"stdout\",\"stderr\"}; a failing script is \
         a tool error carrying the same fields.",
        move |a: SkillRunArgs| {
            let skills = rt.skills();
            let launcher = rt.skill_limits().launcher;
            async move {
                let timeout = a.timeout_secs.unwrap_or(60);
                if !(1..=600).contains(&timeout) {
                    return Err(recoverable("`timeout_secs` must be 1 to 600"));
                }
                let skill = skills.get(&a.name).map_err(recoverable)?;
                let limits = zocalo_skills::RunLimits {
                    timeout: Duration::from_secs(timeout),
                    // This binary is the Landlock launcher (`zocalo __skill-sandbox`).
                    launcher,
                    ..zocalo_skills::RunLimits::default()
                };
                let out = zocalo_skills::run_script(&skill, a.script.as_deref(), &a.args, &limits)
                    .await
                    .map_err(recoverable)?;
                let text = to_text(json!({
                    "exit_code": out.exit_code,
                    "timed_out": out.timed_out,
                    "stdout": out.stdout,
                    "stderr": out.stderr,
                }))?;
                if out.exit_code == Some(0) && !out.timed_out {
                    Ok(text)
                } else {
                    Err(ToolError::Recoverable(text))
                }
            }
        },
    ));

    let s = store.clone();
    let rt = ctx.clone();
    tools.push(typed_tool(
        "schedule_add",
        "Add a recurring automation: an RFC 5545 rule from a local start time in an IANA \
         zone, that asks the model, runs a skill or runs a shell command at each occurrence. \
         Returns the automation with its next_run_at (UTC).",
        move |a: ScheduleAddArgs| {
            let s = s.clone();
            let rt = rt.clone();
            async move {
                let action = crate::automations::action(
                    &rt,
                    crate::automations::ActionSpec {
                        ask: a.ask,
                        skill: a.skill,
                        skill_args: a.skill_args,
                        shell: a.shell,
                        ..Default::default()
                    },
                )
                .map_err(|_| recoverable("give exactly one of `ask`, `skill`, `shell`"))?;
                let mut new = NewAutomation::new(&a.name, &a.rrule, &a.start, &a.tz, action);
                if let Some(m) = a.misfire {
                    new.misfire = m.parse().map_err(recoverable)?;
                }
                let added = crate::automations::create(&s, new)
                    .await
                    .map_err(|e| recoverable(format!("{e:#}")))?;
                to_text(serde_json::to_value(&added).map_err(recoverable)?)
            }
        },
    ));

    let s = store.clone();
    tools.push(typed_tool(
        "schedule_list",
        "List every automation with its rule, zone, action, paused flag and next run. \
         Returns {\"automations\": [...]}.",
        move |_: NoArgs| {
            let s = s.clone();
            async move {
                let list = Scheduler::new(s).list().await.map_err(recoverable)?;
                to_text(json!({ "automations": list }))
            }
        },
    ));

    let s = store.clone();
    tools.push(typed_tool(
        "pool_submit",
        "Submit jobs to the compute pool: kind noop, shell ({\"cmd\": [prog, args...]}), ask \
         ({\"message\"}) or skill ({\"name\", \"args\"}). Returns {\"ids\": [...]}; poll \
         them with pool_status.",
        move |a: PoolSubmitArgs| {
            let s = s.clone();
            async move {
                let submit = crate::jobs::Submit {
                    priority: a.priority,
                    labels: a.labels,
                    key: a.key,
                    count: a.count.unwrap_or(1),
                    ..crate::jobs::Submit::new(a.kind, a.payload.unwrap_or(Value::Null))
                };
                let ids = crate::jobs::submit(&s, &submit, MCP_MAX_COUNT)
                    .await
                    .map_err(|e| recoverable(format!("{e:#}")))?;
                let ids: Vec<&str> = ids.iter().map(|e| e.id.as_str()).collect();
                to_text(json!({ "ids": ids }))
            }
        },
    ));

    let s = store.clone();
    tools.push(typed_tool(
        "pool_status",
        "The compute pool's state: with `id`, that job (state, attempts, result, error); \
         without, job counts per state {\"queued\",\"running\",\"succeeded\",\"failed\",\
         \"dead\",\"cancelled\"}.",
        move |a: PoolStatusArgs| {
            let s = s.clone();
            async move {
                let q = SqlQueue::new(s);
                match a.id {
                    Some(id) => match q.get(&id).await.map_err(recoverable)? {
                        Some(job) => to_text(serde_json::to_value(&job).map_err(recoverable)?),
                        None => Err(recoverable(format!("no job {id}"))),
                    },
                    None => {
                        let stats = q.stats().await.map_err(recoverable)?;
                        to_text(serde_json::to_value(stats).map_err(recoverable)?)
                    }
                }
            }
        },
    ));

    tools.push(agents_spawn(ctx, store));
    tools
}
