//! A zocalo [`Tool`] from a typed argument struct: the JSON Schema the model (or MCP client)
//! sees is derived with `schemars` from the same type the arguments are parsed into, so the
//! two never drift apart. Arguments that do not fit are a recoverable error naming the field.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zocalo_core::{Tool, ToolError, ToolSpec};

/// The JSON Schema of `T` as a plain object (no `$schema` / `title` noise): what a tool's
/// `parameters` / MCP `inputSchema` holds.
pub fn schema_for<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(|s| {
            s.meta_schema = None;
        });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut v = schema.to_value();
    if let Value::Object(o) = &mut v {
        o.remove("title");
        // An argument struct with no fields still takes an object.
        o.entry("type")
            .or_insert_with(|| Value::String("object".into()));
    }
    v
}

type Handler<A> = dyn Fn(A) -> BoxFuture<'static, Result<String, ToolError>> + Send + Sync;

struct TypedTool<A> {
    name: String,
    description: String,
    parameters: Value,
    handler: Arc<Handler<A>>,
    _args: PhantomData<fn(A)>,
}

/// A tool named `name` whose arguments parse into `A` and run `f`.
pub fn typed_tool<A, F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> Arc<dyn Tool>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, ToolError>> + Send + 'static,
{
    Arc::new(TypedTool {
        name: name.into(),
        description: description.into(),
        parameters: schema_for::<A>(),
        handler: Arc::new(move |a| Box::pin(f(a))),
        _args: PhantomData,
    })
}

#[async_trait]
impl<A> Tool for TypedTool<A>
where
    A: DeserializeOwned + Send + 'static,
{
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        // Clients may send no arguments at all for a tool without required ones.
        let arguments = match arguments {
            Value::Null => Value::Object(Default::default()),
            v @ Value::Object(_) => v,
            other => {
                return Err(ToolError::Recoverable(format!(
                    "invalid arguments for {}: expected a JSON object, got {other}",
                    self.name
                )))
            }
        };
        let args: A = serde_json::from_value(arguments).map_err(|e| {
            ToolError::Recoverable(format!("invalid arguments for {}: {e}", self.name))
        })?;
        (self.handler)(args).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    /// Add two numbers.
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct AddArgs {
        /// The first number.
        a: i64,
        /// The second number.
        #[serde(default)]
        b: Option<i64>,
    }

    fn adder() -> Arc<dyn Tool> {
        typed_tool("add", "Adds.", |a: AddArgs| async move {
            Ok((a.a + a.b.unwrap_or(0)).to_string())
        })
    }

    #[test]
    fn schema_comes_from_the_type() {
        let spec = adder().spec();
        let p = &spec.parameters;
        assert_eq!(p["type"], "object");
        assert_eq!(p["required"], serde_json::json!(["a"]));
        assert_eq!(p["properties"]["a"]["description"], "The first number.");
        assert_eq!(p["additionalProperties"], false);
        assert!(p.get("$schema").is_none());
    }

    #[tokio::test]
    async fn bad_arguments_are_recoverable_and_name_the_field() {
        let t = adder();
        assert_eq!(
            t.call(serde_json::json!({"a": 2, "b": 3})).await.unwrap(),
            "5"
        );
        for (args, needle) in [
            (serde_json::json!({}), "`a`"),
            (serde_json::json!({"a": "x"}), "invalid type"),
            (serde_json::json!({"a": 1, "c": 2}), "`c`"),
            (serde_json::json!([1]), "expected a JSON object"),
            (Value::Null, "`a`"),
        ] {
            match t.call(args.clone()).await {
                Err(ToolError::Recoverable(m)) => {
                    assert!(m.contains(needle), "{args}: {m}");
                    assert!(m.contains("add"), "{m}");
                }
                other => panic!("{args}: {other:?}"),
            }
        }
    }
}
