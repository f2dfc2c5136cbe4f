//! `pool_submit {kind, payload}`: the model puts work on the compute pool (DESIGN section 3).
//! The payload is checked against the kinds the caller's registry knows before anything is
//! enqueued.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::{JobQueue, NewJob, Registry, SqlQueue};

/// The `pool_submit` tool over `queue`, accepting the kinds of `kinds`.
pub struct PoolSubmit {
    queue: SqlQueue,
    kinds: Registry,
}

impl PoolSubmit {
    pub fn new(queue: SqlQueue, kinds: Registry) -> Self {
        Self { queue, kinds }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubmitArgs {
    /// noop, shell ({"cmd": ["prog", "arg", ...]}), ask ({"message": "..."}) or skill
    /// ({"name": "...", "args": [...]}).
    kind: String,
    /// The job's input, shaped for its kind.
    #[serde(default)]
    payload: Value,
}

#[async_trait]
impl Tool for PoolSubmit {
    fn spec(&self) -> ToolSpec {
        let mut parameters =
            serde_json::to_value(schemars::schema_for!(SubmitArgs)).unwrap_or_else(|_| json!({}));
        if let Some(o) = parameters.as_object_mut() {
            o.remove("$schema");
            o.remove("title");
        }
        ToolSpec {
            name: "pool_submit".into(),
            description: format!(
                "Submit one job to the compute pool; a worker runs it. Kinds: {}. Returns the \
                 job id.",
                self.kinds.known().join(", ")
            ),
            parameters,
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let a: SubmitArgs = serde_json::from_value(arguments)
            .map_err(|e| ToolError::Recoverable(format!("bad arguments: {e}")))?;
        self.kinds
            .validate(&a.kind, &a.payload)
            .map_err(|e| ToolError::Recoverable(e.to_string()))?;
        let job = NewJob::new(a.kind, a.payload);
        job.validate()
            .map_err(|e| ToolError::Recoverable(e.to_string()))?;
        let ids = self
            .queue
            .enqueue(&[job])
            .await
            .map_err(|e| ToolError::Recoverable(e.to_string()))?;
        match ids.first() {
            Some(e) => Ok(format!("submitted {}", e.id)),
            None => Err(ToolError::Fatal("the queue returned no id".into())),
        }
    }
}
