//! The scheduler's tools for the model: it sets up, lists, pauses, resumes and deletes its
//! own automations (`schedule_create`, `schedule_list`, `schedule_pause`, `schedule_resume`,
//! `schedule_delete`). Names and arguments are a contract (DESIGN section 3). An automation
//! the model makes asks the model again at each occurrence, unattended.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError, ToolSpec};
use zocalo_store::Store;

use crate::{fmt_utc, Action, Automation, NewAutomation, Scheduler};

/// Every scheduler tool over `store`.
pub fn tools(store: Store) -> Vec<Arc<dyn Tool>> {
    let s = Scheduler::new(store);
    [Op::Create, Op::List, Op::Pause, Op::Resume, Op::Delete]
        .into_iter()
        .map(|op| {
            Arc::new(ScheduleTool {
                op,
                scheduler: s.clone(),
            }) as Arc<dyn Tool>
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Create,
    List,
    Pause,
    Resume,
    Delete,
}

struct ScheduleTool {
    op: Op,
    scheduler: Scheduler,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    /// A short unique name: letters, digits, `-` and `_`.
    name: String,
    /// RFC 5545 recurrence rule, e.g. `FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR`.
    rrule: String,
    /// The first occurrence in local wall time, `YYYY-MM-DDTHH:MM:SS`.
    start: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    tz: String,
    /// What to ask at each occurrence (the answer is kept in the automation's runs).
    ask: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NameArgs {
    /// The automation's name.
    name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn schema<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

fn args<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ToolError> {
    // No arguments at all is an empty object for the tools that take none.
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v).map_err(|e| ToolError::Recoverable(format!("bad arguments: {e}")))
}

fn recoverable(e: impl std::fmt::Display) -> ToolError {
    ToolError::Recoverable(e.to_string())
}

fn describe(a: &Automation) -> String {
    let what = match &a.action {
        Action::Ask { message, .. } => format!("asks {message:?}"),
        Action::Skill { name, .. } => format!("runs the skill {name}"),
        Action::Shell { command } => format!("runs `{command}`"),
    };
    format!(
        "{}: {} ({} from {} {}), {}; next run {}",
        a.name,
        what,
        a.rrule.replace('\n', " "),
        a.start,
        a.tz,
        if a.paused { "paused" } else { "active" },
        a.next_run_at.map(fmt_utc).unwrap_or_else(|| "none".into())
    )
}

#[async_trait]
impl Tool for ScheduleTool {
    fn spec(&self) -> ToolSpec {
        let (name, description, parameters) = match self.op {
            Op::Create => (
                "schedule_create",
                "Create a recurring automation that asks you `ask` at each occurrence of an \
                 RFC 5545 rule, starting at a local time in an IANA zone (e.g. every weekday \
                 at 8: rrule FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR, start 2026-01-05T08:00:00). \
                 The runs are unattended: tools that need approval are refused there.",
                schema::<CreateArgs>(),
            ),
            Op::List => (
                "schedule_list",
                "List every automation: what it does, its rule and zone, and its next run.",
                schema::<NoArgs>(),
            ),
            Op::Pause => (
                "schedule_pause",
                "Pause an automation by name (it stops firing until resumed).",
                schema::<NameArgs>(),
            ),
            Op::Resume => (
                "schedule_resume",
                "Resume a paused automation by name (occurrences during the pause are skipped).",
                schema::<NameArgs>(),
            ),
            Op::Delete => (
                "schedule_delete",
                "Delete an automation by name, with its run history.",
                schema::<NameArgs>(),
            ),
        };
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let s = &self.scheduler;
        match self.op {
            Op::Create => {
                let a: CreateArgs = args(arguments)?;
                let new = NewAutomation::new(
                    &a.name,
                    &a.rrule,
                    &a.start,
                    &a.tz,
                    Action::Ask {
                        message: a.ask,
                        conversation_id: None,
                        persona: None,
                        deliver: None,
                    },
                );
                let added = s.add(new, Utc::now()).await.map_err(recoverable)?;
                Ok(format!("created {}", describe(&added)))
            }
            Op::List => {
                let _: NoArgs = args(arguments)?;
                let list = s.list().await.map_err(recoverable)?;
                if list.is_empty() {
                    return Ok("no automations".into());
                }
                Ok(list.iter().map(describe).collect::<Vec<_>>().join("\n"))
            }
            Op::Pause => {
                let a: NameArgs = args(arguments)?;
                let p = s.pause(&a.name, Utc::now()).await.map_err(recoverable)?;
                Ok(format!("paused {}", describe(&p)))
            }
            Op::Resume => {
                let a: NameArgs = args(arguments)?;
                let r = s.resume(&a.name, Utc::now()).await.map_err(recoverable)?;
                Ok(format!("resumed {}", describe(&r)))
            }
            Op::Delete => {
                let a: NameArgs = args(arguments)?;
                s.remove(&a.name).await.map_err(recoverable)?;
                Ok(format!("deleted {}", a.name))
            }
        }
    }
}
