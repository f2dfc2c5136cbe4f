//! Scripts: the JSON that `zocalo browser run` reads.
//!
//! ```json
//! {"timeout_ms": 5000,
//!  "steps": [
//!    {"goto": "http://127.0.0.1:8080/login"},
//!    {"type": "#user", "text": "ada"},
//!    {"type": {"ref": "e4"}, "text": "secret", "submit": true},
//!    {"wait_for": ".welcome"},
//!    {"wait_for": {"text": "Signed in"}, "timeout_ms": 10000},
//!    {"click": "a.logout"},
//!    {"eval": "document.title"},
//!    {"screenshot": "after.png", "full_page": true},
//!    {"snapshot": true}
//!  ]}
//! ```
//!
//! A bare array of steps is a script too. Each step is an object with exactly one action key;
//! the other keys are that action's options plus `timeout_ms`. Unknown keys are errors, so a
//! typo never silently changes what runs.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::browser::{validate_url, Target, TypeOptions, WaitCondition, WaitState};

/// A step's timeout when neither the step nor the script sets one.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a script may ask for.
const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

pub const ACTIONS: &[&str] = &[
    "goto",
    "click",
    "type",
    "wait_for",
    "eval",
    "screenshot",
    "snapshot",
];

/// A parsed script.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub steps: Vec<Step>,
    /// Default timeout of its steps.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: Action,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Goto {
        url: String,
    },
    Click {
        target: Target,
    },
    Type {
        target: Target,
        text: String,
        options: TypeOptions,
    },
    WaitFor {
        condition: WaitCondition,
    },
    Eval {
        expression: String,
    },
    Screenshot {
        path: PathBuf,
        full_page: bool,
    },
    Snapshot,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Goto { .. } => "goto",
            Action::Click { .. } => "click",
            Action::Type { .. } => "type",
            Action::WaitFor { .. } => "wait_for",
            Action::Eval { .. } => "eval",
            Action::Screenshot { .. } => "screenshot",
            Action::Snapshot => "snapshot",
        }
    }

    /// A short description for messages: `click "#send"`, `goto http://…`.
    pub fn describe(&self) -> String {
        let short = |s: &str| {
            let s: String = s.chars().take(60).collect();
            format!("{s:?}")
        };
        match self {
            Action::Goto { url } => format!("goto {url}"),
            Action::Click { target } => format!("click {target}"),
            Action::Type { target, .. } => format!("type into {target}"),
            Action::WaitFor { condition } => match condition {
                WaitCondition::Text(t) => format!("wait_for text {}", short(t)),
                WaitCondition::Element { target, .. } => format!("wait_for {target}"),
            },
            Action::Eval { expression } => format!("eval {}", short(expression)),
            Action::Screenshot { path, .. } => format!("screenshot {}", path.display()),
            Action::Snapshot => "snapshot".into(),
        }
    }
}

/// What is wrong with a script; `step` is the 0-based index when one step is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", match step { Some(i) => format!("step {i}: "), None => String::new() })]
pub struct ScriptError {
    pub step: Option<usize>,
    pub message: String,
}

fn err(step: Option<usize>, message: impl Into<String>) -> ScriptError {
    ScriptError {
        step,
        message: message.into(),
    }
}

/// Parse a script from JSON text.
pub fn parse_script(text: &str) -> Result<Script, ScriptError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| err(None, format!("not JSON: {e}")))?;
    let (steps, timeout) = match value {
        Value::Array(steps) => (steps, DEFAULT_STEP_TIMEOUT),
        Value::Object(mut map) => {
            let steps = match map.remove("steps") {
                Some(Value::Array(s)) => s,
                Some(_) => return Err(err(None, "\"steps\" must be an array of step objects")),
                None => return Err(err(None, "missing \"steps\": an array of step objects")),
            };
            let timeout = match map.remove("timeout_ms") {
                Some(v) => parse_timeout(None, &v)?,
                None => DEFAULT_STEP_TIMEOUT,
            };
            if let Some(k) = map.keys().next() {
                return Err(err(
                    None,
                    format!("unknown key {k:?} (a script has \"steps\" and \"timeout_ms\")"),
                ));
            }
            (steps, timeout)
        }
        _ => {
            return Err(err(
                None,
                "a script is an object {\"steps\": [...]} or an array of steps",
            ))
        }
    };
    if steps.is_empty() {
        return Err(err(None, "the script has no steps"));
    }
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| parse_step(i, s, timeout))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Script { steps, timeout })
}

fn parse_timeout(step: Option<usize>, v: &Value) -> Result<Duration, ScriptError> {
    match v.as_u64() {
        Some(ms) if ms > 0 && ms <= MAX_TIMEOUT_MS => Ok(Duration::from_millis(ms)),
        _ => Err(err(
            step,
            format!("\"timeout_ms\" must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}, not {v}"),
        )),
    }
}

/// Take the options of one action out of the step object.
struct Opts<'a> {
    step: usize,
    action: &'static str,
    map: &'a mut Map<String, Value>,
}

impl Opts<'_> {
    fn string(&mut self, key: &str) -> Result<Option<String>, ScriptError> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(err(
                Some(self.step),
                format!("{}: \"{key}\" must be a string, not {other}", self.action),
            )),
        }
    }

    fn bool(&mut self, key: &str) -> Result<bool, ScriptError> {
        match self.map.remove(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(err(
                Some(self.step),
                format!(
                    "{}: \"{key}\" must be true or false, not {other}",
                    self.action
                ),
            )),
        }
    }

    fn finish(self) -> Result<(), ScriptError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(err(
                Some(self.step),
                format!("{}: unknown option {k:?}", self.action),
            )),
        }
    }
}

/// `"css"` or `{"ref": "e3"}` (or `{"css": "..."}`).
fn parse_target(step: usize, action: &str, v: Value) -> Result<Target, ScriptError> {
    let bad = || {
        err(
            Some(step),
            format!("{action}: the element is a CSS selector string or {{\"ref\": \"eN\"}} from the latest snapshot"),
        )
    };
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(Target::Css(s)),
        Value::Object(m) if m.len() == 1 => match m.into_iter().next() {
            Some((k, Value::String(r))) if k == "ref" => {
                let ok =
                    r.len() > 1 && r.starts_with('e') && r[1..].bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(Target::Ref(r))
                } else {
                    Err(err(
                        Some(step),
                        format!("{action}: {r:?} is not a ref (refs look like e1, e2, ...)"),
                    ))
                }
            }
            Some((k, Value::String(s))) if k == "css" && !s.trim().is_empty() => Ok(Target::Css(s)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn parse_step(i: usize, v: Value, default_timeout: Duration) -> Result<Step, ScriptError> {
    let Value::Object(mut map) = v else {
        return Err(err(
            Some(i),
            format!(
                "a step is an object with one action key ({})",
                ACTIONS.join(", ")
            ),
        ));
    };
    let present: Vec<&'static str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| map.contains_key(*a))
        .collect();
    let name = match present.as_slice() {
        [one] => *one,
        [] => {
            let keys: Vec<&String> = map.keys().collect();
            return Err(err(
                Some(i),
                format!(
                    "no action in {keys:?}: a step needs one of {}",
                    ACTIONS.join(", ")
                ),
            ));
        }
        many => {
            return Err(err(
                Some(i),
                format!("one action per step, found {}", many.join(" and ")),
            ))
        }
    };
    let main = map.remove(name).unwrap_or(Value::Null);
    let timeout = match map.remove("timeout_ms") {
        Some(v) => parse_timeout(Some(i), &v)?,
        None => default_timeout,
    };
    let mut opts = Opts {
        step: i,
        action: name,
        map: &mut map,
    };
    let action = match name {
        "goto" => {
            let Value::String(url) = main else {
                return Err(err(Some(i), "goto: the value is the URL string"));
            };
            validate_url(&url).map_err(|e| err(Some(i), format!("goto: {e}")))?;
            Action::Goto { url }
        }
        "click" => Action::Click {
            target: parse_target(i, name, main)?,
        },
        "type" => {
            let target = parse_target(i, name, main)?;
            let text = opts
                .string("text")?
                .ok_or_else(|| err(Some(i), "type: missing \"text\""))?;
            let options = TypeOptions {
                append: opts.bool("append")?,
                submit: opts.bool("submit")?,
            };
            Action::Type {
                target,
                text,
                options,
            }
        }
        "wait_for" => {
            let condition = match main {
                Value::Object(m) if m.len() == 1 && m.contains_key("text") => match m.get("text") {
                    Some(Value::String(t)) if !t.is_empty() => WaitCondition::Text(t.clone()),
                    _ => {
                        return Err(err(
                            Some(i),
                            "wait_for: \"text\" must be a non-empty string",
                        ))
                    }
                },
                other => {
                    let target = parse_target(i, name, other).map_err(|_| {
                        err(
                            Some(i),
                            "wait_for: the value is a CSS selector, {\"ref\": \"eN\"} or {\"text\": \"...\"}",
                        )
                    })?;
                    let state = match opts.string("state")?.as_deref() {
                        None | Some("visible") => WaitState::Visible,
                        Some("attached") => WaitState::Attached,
                        Some("hidden") => WaitState::Hidden,
                        Some(s) => {
                            return Err(err(
                                Some(i),
                                format!(
                                    "wait_for: state {s:?} is not one of visible, attached, hidden"
                                ),
                            ))
                        }
                    };
                    WaitCondition::Element { target, state }
                }
            };
            Action::WaitFor { condition }
        }
        "eval" => match main {
            Value::String(expression) if !expression.trim().is_empty() => {
                Action::Eval { expression }
            }
            _ => {
                return Err(err(
                    Some(i),
                    "eval: the value is a JavaScript expression string",
                ))
            }
        },
        "screenshot" => match main {
            Value::String(p) if !p.trim().is_empty() => Action::Screenshot {
                path: PathBuf::from(p),
                full_page: opts.bool("full_page")?,
            },
            _ => {
                return Err(err(
                    Some(i),
                    "screenshot: the value is the file to write, e.g. \"page.png\"",
                ))
            }
        },
        "snapshot" => match main {
            Value::Bool(true) | Value::Null => Action::Snapshot,
            Value::Object(m) if m.is_empty() => Action::Snapshot,
            _ => return Err(err(Some(i), "snapshot: write {\"snapshot\": true}")),
        },
        _ => return Err(err(Some(i), format!("unknown action {name}"))),
    };
    opts.finish()?;
    Ok(Step { action, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_action_parses() {
        let s = parse_script(
            r##"{"timeout_ms": 2000, "steps": [
                {"goto": "http://127.0.0.1:1/"},
                {"click": "#a"},
                {"click": {"ref": "e12"}, "timeout_ms": 100},
                {"type": "#name", "text": "Ada", "submit": true},
                {"type": {"css": "textarea"}, "text": "", "append": true},
                {"wait_for": ".late"},
                {"wait_for": "#spinner", "state": "hidden"},
                {"wait_for": {"text": "Saved"}},
                {"eval": "1 + 1"},
                {"screenshot": "out.png", "full_page": true},
                {"snapshot": true}
            ]}"##,
        )
        .unwrap();
        assert_eq!(s.steps.len(), 11);
        assert_eq!(s.steps[0].timeout, Duration::from_millis(2000));
        assert_eq!(s.steps[2].timeout, Duration::from_millis(100));
        assert_eq!(
            s.steps[2].action,
            Action::Click {
                target: Target::Ref("e12".into())
            }
        );
        assert_eq!(
            s.steps[3].action,
            Action::Type {
                target: Target::Css("#name".into()),
                text: "Ada".into(),
                options: TypeOptions {
                    append: false,
                    submit: true
                }
            }
        );
        assert_eq!(
            s.steps[6].action,
            Action::WaitFor {
                condition: WaitCondition::Element {
                    target: Target::Css("#spinner".into()),
                    state: WaitState::Hidden
                }
            }
        );
        assert_eq!(s.steps[10].action, Action::Snapshot);
    }

    #[test]
    fn a_bare_array_uses_the_default_timeout() {
        let s = parse_script(r#"[{"snapshot": true}]"#).unwrap();
        assert_eq!(s.steps[0].timeout, DEFAULT_STEP_TIMEOUT);
    }

    #[test]
    fn malformed_scripts_name_the_step_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "not JSON"),
            ("{", "not JSON"),
            ("42", "a script is an object"),
            ("[]", "no steps"),
            (r##"{"stepz": []}"##, "missing \"steps\""),
            (r##"{"steps": [], "x": 1}"##, "unknown key"),
            (
                r##"{"steps": [{"snapshot": true}], "timeout_ms": 0}"##,
                "timeout_ms",
            ),
            (
                r##"[{"snapshot": true}, 7]"##,
                "step 1: a step is an object",
            ),
            (r##"[{"clik": "#a"}]"##, "step 0: no action"),
            (
                r##"[{"click": "#a", "goto": "http://x"}]"##,
                "one action per step",
            ),
            (
                r##"[{"goto": "example.com"}]"##,
                "step 0: goto: invalid URL",
            ),
            (r##"[{"goto": 5}]"##, "the value is the URL"),
            (r##"[{"click": {"ref": "x1"}}]"##, "not a ref"),
            (r##"[{"click": ""}]"##, "CSS selector string"),
            (
                r##"[{"click": "#a", "text": "x"}]"##,
                "unknown option \"text\"",
            ),
            (r##"[{"type": "#a"}]"##, "missing \"text\""),
            (r##"[{"type": "#a", "text": 5}]"##, "must be a string"),
            (
                r##"[{"type": "#a", "text": "x", "submit": "yes"}]"##,
                "true or false",
            ),
            (r##"[{"wait_for": "#a", "state": "gone"}]"##, "not one of"),
            (r##"[{"wait_for": {"text": ""}}]"##, "non-empty"),
            (r##"[{"eval": ""}]"##, "JavaScript expression"),
            (r##"[{"screenshot": true}]"##, "the file to write"),
            (r##"[{"snapshot": "yes"}]"##, "snapshot"),
            (r##"[{"snapshot": true, "timeout_ms": -1}]"##, "timeout_ms"),
        ];
        for (text, expected) in cases {
            let e = parse_script(text).expect_err(text);
            assert!(
                e.to_string().contains(expected),
                "{text}: {e} (wanted {expected:?})"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = parse_script(&s);
        }

        #[test]
        fn arbitrary_json_steps_never_panic(
            keys in proptest::collection::vec(prop_oneof![
                Just("goto"), Just("click"), Just("type"), Just("wait_for"), Just("eval"),
                Just("screenshot"), Just("snapshot"), Just("text"), Just("timeout_ms"),
                Just("ref"), Just("state"), Just("submit"), Just("full_page")], 0..4),
            vals in proptest::collection::vec(prop_oneof![
                Just(Value::Null), Just(Value::Bool(true)), Just(serde_json::json!(5)),
                Just(serde_json::json!("#a")), Just(serde_json::json!({"ref": "e1"})),
                Just(serde_json::json!({"text": "x"})), Just(serde_json::json!("http://h/")),
                Just(serde_json::json!(-3))], 0..4),
        ) {
            let step: Map<String, Value> = keys.iter().zip(vals.iter())
                .map(|(k, v)| (k.to_string(), v.clone())).collect();
            let text = Value::Array(vec![Value::Object(step)]).to_string();
            if let Err(e) = parse_script(&text) {
                prop_assert!(e.step == Some(0) || e.step.is_none());
            }
        }
    }
}
