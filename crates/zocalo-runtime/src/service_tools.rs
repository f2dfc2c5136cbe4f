//! `services_list`, `services_start {name}`, `services_stop {name}`, `services_logs {name,
//! lines?}`: the model looks after the long-running processes the daemon supervises. They
//! talk to the data home's daemon over its socket, as `zocalo services` does; with no daemon
//! running they say so (they do not start one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::daemon::{Client, Request};

/// The services tools for the daemon of `home`.
pub fn service_tools(home: &Path) -> Vec<Arc<dyn Tool>> {
    [Op::List, Op::Start, Op::Stop, Op::Logs]
        .into_iter()
        .map(|op| {
            Arc::new(ServiceTool {
                op,
                home: home.to_path_buf(),
            }) as Arc<dyn Tool>
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Op {
    List,
    Start,
    Stop,
    Logs,
}

struct ServiceTool {
    op: Op,
    home: PathBuf,
}

/// Most log lines one call returns.
const MAX_LINES: u64 = 500;

fn recoverable(e: impl std::fmt::Display) -> ToolError {
    ToolError::Recoverable(e.to_string())
}

fn name_of(args: &Value) -> Result<String, ToolError> {
    match args.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => {
            zocalo_services::spec::validate_name(n).map_err(recoverable)?;
            Ok(n.to_owned())
        }
        _ => Err(recoverable("`name` must be a service's name")),
    }
}

#[async_trait]
impl Tool for ServiceTool {
    fn spec(&self) -> ToolSpec {
        let name = json!({"type": "string", "description": "The service's name."});
        let (n, d, p) = match self.op {
            Op::List => (
                "services_list",
                "List the supervised services: name, state, pid, restarts, command.",
                json!({"type": "object", "properties": {}}),
            ),
            Op::Start => (
                "services_start",
                "Start a supervised service by name (it is restarted by its policy after).",
                json!({"type": "object", "properties": {"name": name}, "required": ["name"]}),
            ),
            Op::Stop => (
                "services_stop",
                "Stop a supervised service by name (SIGTERM, then SIGKILL after its grace).",
                json!({"type": "object", "properties": {"name": name}, "required": ["name"]}),
            ),
            Op::Logs => (
                "services_logs",
                "The last lines of a service's own output (stdout and stderr).",
                json!({"type": "object", "properties": {
                    "name": name,
                    "lines": {"type": "integer", "minimum": 1, "maximum": MAX_LINES}
                }, "required": ["name"]}),
            ),
        };
        ToolSpec {
            name: n.into(),
            description: d.into(),
            parameters: p,
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let request = match self.op {
            Op::List => Request::List,
            Op::Start => Request::Start {
                name: name_of(&arguments)?,
            },
            Op::Stop => Request::Stop {
                name: name_of(&arguments)?,
            },
            Op::Logs => Request::Status {
                name: name_of(&arguments)?,
            },
        };
        let lines = match arguments.get("lines") {
            None | Some(Value::Null) => 50,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_LINES).contains(&n) => n,
                _ => return Err(recoverable(format!("`lines` must be 1 to {MAX_LINES}"))),
            },
        };
        let Some(mut client) = Client::connect(&self.home).await else {
            return Err(recoverable(
                "the daemon is not running, so no service is supervised: the user can start \
                 it with `zocalo daemon start`",
            ));
        };
        let answer = client
            .call(&request)
            .await
            .map_err(|e| recoverable(format!("{e:#}")))?;
        if let Op::Logs = self.op {
            let path = PathBuf::from(answer["log"].as_str().unwrap_or_default());
            let tail = zocalo_services::logs::tail(&path, lines as usize).map_err(recoverable)?;
            return Ok(if tail.is_empty() {
                "(no output yet)".into()
            } else {
                tail.join("\n")
            });
        }
        serde_json::to_string_pretty(&answer).map_err(|e| ToolError::Fatal(e.to_string()))
    }
}
