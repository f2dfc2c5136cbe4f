//! `zocalo mcp serve | tools`: zocalo's tools for other agents over MCP, and the tools of the
//! MCP servers configured in config.toml (`[mcp.servers.NAME]`) for zocalo's ask loop.
//!
//! The tools served here wire the subsystem libraries together the way the other commands
//! do; zocalo-mcp itself only speaks the protocol.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Subcommand;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zocalo_agent::{AgentRunner, SpawnAgentsTool};
use zocalo_core::{Tool, ToolError};
use zocalo_mcp::{typed_tool, McpClients, ToolServer};
use zocalo_memory::{Memory, NewMemory, DEFAULT_USER_SCOPE};
use zocalo_pool::{parse_labels, JobQueue, NewJob, SqlQueue};
use zocalo_scheduler::{Action, NewAutomation, Scheduler};
use zocalo_store::Store;

use super::print_json;
use crate::cli::ModelArgs;
use crate::exit::usage;
use crate::wiring::Ctx;

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Serve zocalo's tools (memory, skills, schedules, pool, agents) over MCP on stdin/stdout, for
    /// Claude Desktop, Codex, goose or any MCP client. Logs go to stderr.
    Serve {
        /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (loopback only, no
        /// token; `zocalo serve` mounts it behind its token).
        #[arg(long, value_name = "IP:PORT")]
        http: Option<String>,
    },
    /// List the tools of every MCP server in config.toml ([mcp.servers.NAME]); a server that
    /// cannot be reached is reported and the others are still listed.
    Tools {
        /// One JSON array: [{"server","name","description","qualified_name"}], and
        /// {"server","name":null,"description":null,"error"} for an unreachable server.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: McpCmd) -> anyhow::Result<()> {
    match cmd {
        McpCmd::Serve { http: Some(addr) } => serve_http(ctx, &addr).await,
        McpCmd::Serve { http: None } => {
            let store = ctx.store().await?;
            let server = tool_server(ctx, store.clone());
            let r = zocalo_mcp::serve_stdio(server).await;
            store.close().await;
            Ok(r?)
        }
        McpCmd::Tools { json } => tools(ctx, json).await,
    }
}

async fn tools(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let clients = McpClients::from_config(&ctx.config.mcp);
    let reports = clients.list().await;
    clients.shutdown().await;
    let mut rows = Vec::new();
    for r in &reports {
        match &r.tools {
            Ok(tools) => {
                for t in tools {
                    rows.push(json!({
                        "server": t.server,
                        "name": t.name,
                        "description": t.description,
                        "qualified_name": t.qualified_name,
                    }));
                }
            }
            Err(e) => {
                eprintln!("warning: {e}");
                rows.push(json!({
                    "server": r.server,
                    "name": null,
                    "description": null,
                    "error": e.to_string(),
                }));
            }
        }
    }
    if json {
        return print_json(&Value::Array(rows));
    }
    if reports.is_empty() {
        println!(
            "no MCP servers configured; add [mcp.servers.NAME] to {} (see docs/mcp.md)",
            ctx.home.config_file().display()
        );
    }
    for r in &reports {
        match &r.tools {
            Ok(tools) if tools.is_empty() => println!("{}: no tools", r.server),
            Ok(tools) => {
                for t in tools {
                    let d = one_line(&t.description, 90);
                    println!("{}  {}", t.qualified_name, d);
                }
            }
            Err(_) => println!("{}: unreachable (see the warning above)", r.server),
        }
    }
    Ok(())
}

fn one_line(text: &str, max: usize) -> String {
    let d = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if d.chars().count() > max {
        format!("{}…", d.chars().take(max - 1).collect::<String>())
    } else {
        d
    }
}

/// The configured MCP servers, one set of connections per process: every ask loop built in
/// it (`zocalo serve` builds one for chat and another for `agents_spawn`) shares them, so
/// each server runs once, not once per ask loop. The first config seen wins (a process loads
/// one config.toml).
static CLIENTS: OnceLock<McpClients> = OnceLock::new();

/// The configured MCP servers' tools for the ask loop, as `NAME__TOOL`. Servers start here,
/// the first time an ask loop with tools is built, not for other commands, and are shared by
/// later ask loops of the process; one that cannot be reached is logged and skipped (and
/// tried again by the next ask loop built). Needs the multi-thread runtime (the CLI's);
/// elsewhere MCP tools are left out with a warning.
pub fn client_tools(ctx: &Ctx) -> Vec<Arc<dyn Tool>> {
    let clients = CLIENTS.get_or_init(|| McpClients::from_config(&ctx.config.mcp));
    if clients.is_empty() {
        return Vec::new();
    }
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !multi_thread {
        tracing::warn!("MCP tools need the multi-thread runtime; left out");
        return Vec::new();
    }
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(clients.tools()))
}

/// zocalo's tools as an MCP server over `store`: what `zocalo mcp serve` serves on stdio, and
/// what `zocalo serve` mounts at /mcp.
pub fn tool_server(ctx: &Ctx, store: Store) -> ToolServer {
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
    ctx: &Ctx,
    store: Store,
    allowed_hosts: Option<Vec<String>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> axum::Router {
    zocalo_mcp::http_router(tool_server(ctx, store), allowed_hosts, shutdown)
}

/// `mcp serve --http ADDR`: the streamable-HTTP endpoint at `/mcp`, loopback only (it has no
/// token; `zocalo serve` mounts the same endpoint behind one).
async fn serve_http(ctx: &Ctx, addr: &str) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| usage(format!("--http {addr:?}: expected IP:PORT ({e})")))?;
    if !addr.ip().is_loopback() {
        return Err(usage(format!(
            "--http {addr}: only loopback addresses (this endpoint has no token); use \
             `zocalo serve` for a token-protected /mcp"
        )));
    }
    let store = ctx.store().await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hosts = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
    ];
    let app = axum::Router::new().nest_service(
        "/mcp",
        http_router(ctx, store.clone(), Some(hosts), shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    eprintln!("zocalo MCP endpoint: http://{}/mcp", listener.local_addr()?);
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
fn agents_spawn(ctx: &Ctx, store: Store) -> Arc<dyn Tool> {
    let own = ctx.clone();
    let agents_store = store.clone();
    SpawnAgentsTool::served(AGENTS_SPAWN, ctx.spawn_limits(), Some(store), move || {
        let args = ModelArgs {
            provider: None,
            model: None,
            no_tools: false,
        };
        let (provider, model) = own.provider(&args).map_err(|e| format!("{e:#}"))?;
        let runner: Arc<dyn AgentRunner> = own.agent_asker(agents_store.clone(), provider, true);
        Ok((runner, model))
    })
}

fn served_tools(ctx: &Ctx, store: Store) -> Vec<Arc<dyn Tool>> {
    let memory = Arc::new(Memory::new(
        store.clone(),
        super::memory::embedder(ctx),
        super::memory::memory_config(ctx),
    ));
    let home = ctx.home.root().to_owned();
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

    let h = home.clone();
    tools.push(typed_tool(
        "skills_list",
        "List the user's Agent Skills (name and description). Returns {\"skills\": \
         [{\"name\",\"description\"}]}.",
        move |_: NoArgs| {
            let skills = zocalo_skills::Skills::load(zocalo_skills::default_roots(&h, &[]));
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

    let h = home;
    tools.push(typed_tool(
        "skill_run",
        "Run a script of one of the user's Agent Skills, sandboxed, with a time limit. \
         Returns {\"exit_code\",\"timed_out\",\"stdout\",\"stderr\"}; a failing script is \
         a tool error carrying the same fields.",
        move |a: SkillRunArgs| {
            let skills = zocalo_skills::Skills::load(zocalo_skills::default_roots(&h, &[]));
            async move {
                let timeout = a.timeout_secs.unwrap_or(60);
                if !(1..=600).contains(&timeout) {
                    return Err(recoverable("`timeout_secs` must be 1 to 600"));
                }
                let skill = skills.get(&a.name).map_err(recoverable)?;
                let limits = zocalo_skills::RunLimits {
                    timeout: Duration::from_secs(timeout),
                    // This binary is the Landlock launcher (`zocalo __skill-sandbox`).
                    launcher: std::env::current_exe().ok(),
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
    tools.push(typed_tool(
        "schedule_add",
        "Add a recurring automation: an RFC 5545 rule from a local start time in an IANA \
         zone, that asks the model, runs a skill or runs a shell command at each occurrence. \
         Returns the automation with its next_run_at (UTC).",
        move |a: ScheduleAddArgs| {
            let s = s.clone();
            async move {
                let action = match (a.ask, a.skill, a.shell) {
                    (Some(message), None, None) => Action::Ask {
                        message,
                        conversation_id: None,
                    },
                    (None, Some(name), None) => Action::Skill {
                        name,
                        args: a.skill_args,
                    },
                    (None, None, Some(command)) => Action::Shell { command },
                    _ => return Err(recoverable("give exactly one of `ask`, `skill`, `shell`")),
                };
                let mut new = NewAutomation::new(&a.name, &a.rrule, &a.start, &a.tz, action);
                if let Some(m) = a.misfire {
                    new.misfire = m.parse().map_err(recoverable)?;
                }
                let added = Scheduler::new(s)
                    .add(new, chrono::Utc::now())
                    .await
                    .map_err(recoverable)?;
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
                let payload = a.payload.unwrap_or(Value::Null);
                super::pool::submit_registry()
                    .validate(&a.kind, &payload)
                    .map_err(recoverable)?;
                let count = a.count.unwrap_or(1);
                if !(1..=MCP_MAX_COUNT).contains(&count) {
                    return Err(recoverable(format!("`count` must be 1 to {MCP_MAX_COUNT}")));
                }
                let mut template = NewJob::new(a.kind, payload);
                template.priority = a.priority;
                template.labels = parse_labels(&a.labels.join(",")).map_err(recoverable)?;
                template.key = a.key.clone();
                template.validate().map_err(recoverable)?;
                let jobs: Vec<NewJob> = (1..=count)
                    .map(|i| {
                        let mut j = template.clone();
                        if count > 1 {
                            j.key = a.key.as_ref().map(|k| format!("{k}#{i}"));
                        }
                        j
                    })
                    .collect();
                let ids = SqlQueue::new(s).enqueue(&jobs).await.map_err(recoverable)?;
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
