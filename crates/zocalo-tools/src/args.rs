//! Typed arguments: each tool parses the model's JSON into a struct that also derives the JSON
//! Schema the model is shown, so the two cannot drift apart. Arguments that do not fit are a
//! recoverable error naming the tool and the field.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zocalo_core::{ToolError, ToolSpec};

/// The JSON Schema of `T` as a plain object (no `$schema` / `title`): a tool's `parameters`.
pub fn schema_for<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(|s| s.meta_schema = None);
    let mut v = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Value::Object(o) = &mut v {
        o.remove("title");
        o.remove("description");
        o.entry("type")
            .or_insert_with(|| Value::String("object".into()));
    }
    v
}

/// The spec of a tool whose arguments are `T`.
pub fn spec_for<T: JsonSchema>(name: &str, description: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: schema_for::<T>(),
    }
}

/// Parse `arguments` for tool `tool`; `null` counts as `{}` (clients send it for tools whose
/// arguments are all optional).
pub fn parse<T: DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, ToolError> {
    let arguments = match arguments {
        Value::Null => Value::Object(Default::default()),
        v @ Value::Object(_) => v,
        other => {
            return Err(ToolError::Recoverable(format!(
                "invalid arguments for {tool}: expected a JSON object, got {}",
                short(&other.to_string())
            )))
        }
    };
    serde_json::from_value(arguments)
        .map_err(|e| ToolError::Recoverable(format!("invalid arguments for {tool}: {e}")))
}

/// At most 200 characters of `s`, for echoing model input in an error.
pub(crate) fn short(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A recoverable error: the model sees the text and can try again.
pub(crate) fn model_err(msg: impl Into<String>) -> ToolError {
    ToolError::Recoverable(msg.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct A {
        /// The path.
        path: String,
        #[serde(default)]
        n: Option<u32>,
    }

    #[test]
    fn schema_and_parse() {
        let s = schema_for::<A>();
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["path"]));
        assert_eq!(s["properties"]["path"]["description"], "The path.");
        assert_eq!(s["additionalProperties"], false);
        assert!(s.get("$schema").is_none() && s.get("title").is_none());

        let a: A = parse("t", json!({"path": "x", "n": 3})).unwrap();
        assert_eq!((a.path.as_str(), a.n), ("x", Some(3)));
        for (bad, needle) in [
            (json!({}), "`path`"),
            (json!({"path": 1}), "invalid type"),
            (json!({"path": "x", "n": -1}), "invalid value"),
            (json!({"path": "x", "zz": 1}), "`zz`"),
            (json!("x"), "expected a JSON object"),
        ] {
            match parse::<A>("t", bad.clone()) {
                Err(ToolError::Recoverable(m)) => assert!(m.contains(needle), "{bad}: {m}"),
                Err(e) => panic!("{bad}: not recoverable: {e:?}"),
                Ok(_) => panic!("{bad}: accepted"),
            }
        }
    }
}
