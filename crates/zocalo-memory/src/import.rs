//! One line of a `zocalo memory import` file: `{"text", "scope"?, "metadata"?}`. Kept apart
//! from the file reading so the parser can be fuzzed on its own (`fuzz/`, `memory_import`).

use serde_json::Value;

use crate::model::{Metadata, NewMemory, DEFAULT_USER_SCOPE};

/// The memory a line describes, checked as `Memory::memorize` would check it; Err says why
/// the line is refused (the caller adds the file and line number).
pub fn parse_import_line(line: &str) -> Result<NewMemory, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(o) = v else {
        return Err("expected a JSON object {\"text\",\"scope\",\"metadata\"}".into());
    };
    let text = match o.get("text") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("\"text\" must be a string".into()),
    };
    let scope = match o.get("scope") {
        None | Some(Value::Null) => DEFAULT_USER_SCOPE.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"scope\" must be a string".into()),
    };
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("\"metadata\" must be an object".into()),
    };
    let item = NewMemory {
        scope,
        text,
        metadata,
        source: Some("import".into()),
    };
    item.validate().map_err(|e| e.to_string())?;
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_field_by_field() {
        let m = parse_import_line(r#"{"text":"likes tea","metadata":{"k":1}}"#).unwrap();
        assert_eq!(m.scope, DEFAULT_USER_SCOPE);
        assert_eq!(m.text, "likes tea");
        assert_eq!(m.metadata["k"], 1);
        for (line, why) in [
            ("nope", "not JSON"),
            ("[1]", "expected a JSON object"),
            (r#"{"text":1}"#, "\"text\" must be a string"),
            (r#"{"text":"a","scope":2}"#, "\"scope\" must be a string"),
            (
                r#"{"text":"a","metadata":[]}"#,
                "\"metadata\" must be an object",
            ),
        ] {
            let e = parse_import_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
