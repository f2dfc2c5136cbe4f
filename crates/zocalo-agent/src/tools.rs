//! The tool registry and built-in tools.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolContext, ToolError, ToolSpec};

/// Tools offered to the model, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in tools that need nothing but the clock.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(CurrentTime));
        r
    }

    /// Add a tool; a later tool with the same name replaces the earlier one.
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Whether a tool of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The registered tools' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Run a call. An unknown tool is the model's mistake: a recoverable error it can see.
    pub async fn call(&self, name: &str, arguments: Value) -> Result<String, ToolError> {
        self.call_with(&ToolContext::default(), name, arguments)
            .await
    }

    /// Run a call on behalf of `ctx` (the ask loop passes the conversation).
    pub async fn call_with(
        &self,
        ctx: &ToolContext,
        name: &str,
        arguments: Value,
    ) -> Result<String, ToolError> {
        match self.tools.get(name) {
            Some(tool) => tool.call_with(ctx, arguments).await,
            None => Err(ToolError::Recoverable(format!(
                "there is no tool named {name:?}; available: {}",
                self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// `current_time {timezone}`: the local date and time in an IANA zone.
pub struct CurrentTime;

#[async_trait]
impl Tool for CurrentTime {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "current_time".into(),
            description: "Get the current local date and time in a time zone.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "IANA time zone name, for example Europe/Paris or America/New_York"
                    }
                },
                "required": ["timezone"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let zone = arguments
            .get("timezone")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ToolError::Recoverable(
                    "missing required string argument `timezone` (an IANA zone such as Europe/Paris)".into(),
                )
            })?;
        Ok(current_time_in(zone, chrono::Utc::now())?)
    }
}

/// The answer of `current_time` for a given instant (separate so tests control the clock).
pub fn current_time_in(
    zone: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, ToolError> {
    let tz: chrono_tz::Tz = zone.trim().parse().map_err(|_| {
        ToolError::Recoverable(format!(
            "unknown time zone {zone:?}: use an IANA name such as Europe/Paris"
        ))
    })?;
    let local = now.with_timezone(&tz);
    Ok(format!(
        "{} ({}, {})",
        local.format("%Y-%m-%dT%H:%M:%S%:z"),
        local.format("%A"),
        tz.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn current_time_uses_zone_offset_and_dst() {
        let winter = chrono::Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
        let summer = chrono::Utc.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap();
        assert_eq!(
            current_time_in("Europe/Paris", winter).unwrap(),
            "2026-01-15T13:00:00+01:00 (Thursday, Europe/Paris)"
        );
        assert_eq!(
            current_time_in("Europe/Paris", summer).unwrap(),
            "2026-07-15T14:00:00+02:00 (Wednesday, Europe/Paris)"
        );
        assert!(current_time_in("Asia/Kolkata", winter)
            .unwrap()
            .starts_with("2026-01-15T17:30:00+05:30"));
    }

    #[tokio::test]
    async fn bad_arguments_are_recoverable() {
        for args in [
            json!({}),
            json!({"timezone": 3}),
            json!({"timezone": "Mars/Olympus"}),
        ] {
            let e = CurrentTime.call(args.clone()).await.unwrap_err();
            assert!(matches!(e, ToolError::Recoverable(_)), "{args}: {e:?}");
        }
    }

    #[tokio::test]
    async fn unknown_tool_lists_available() {
        let e = ToolRegistry::builtin()
            .call("nope", json!({}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("current_time"), "{e}");
    }
}
