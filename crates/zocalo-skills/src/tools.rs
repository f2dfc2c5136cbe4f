//! Progressive disclosure for the ask loop: the prompt lists names and descriptions only; the
//! model loads the rest with `skill_open`, `skill_read` and `skill_run`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use zocalo_core::{Tool, ToolError, ToolSpec};

use crate::paths::{list_files, resolve_inside};
use crate::runner::{run_script, RunLimits};
use crate::validate::read_capped;
use crate::{SkillError, Skills};

/// Files listed by `skill_open` at most.
pub const MAX_LISTED_FILES: usize = 200;
/// Bytes `skill_read` returns at most.
pub const MAX_READ_BYTES: usize = 256 * 1024;

/// The system-prompt section: names and descriptions only. `None` when there are no skills
/// (then no catalog and no tools, as the spec's client guide advises).
pub fn prompt_index(skills: &Skills) -> Option<String> {
    let list = skills.list();
    if list.is_empty() {
        return None;
    }
    let mut s = String::from(
        "## Skills\nSkills give specialised instructions (and sometimes scripts) for specific \
tasks. When a task matches a skill's description, call `skill_open` with its name to load its \
instructions before proceeding, then follow them: `skill_read` reads a file of the skill, \
`skill_run` runs one of its scripts.\n<available_skills>\n",
    );
    for skill in list {
        s.push_str(&format!(
            "- {}: {}\n",
            skill.name,
            skill
                .description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    s.push_str("</available_skills>");
    Some(s)
}

/// The three skill tools over a live registry.
pub fn skill_tools(skills: &Skills, limits: RunLimits) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(SkillOpen(skills.clone())),
        Arc::new(SkillRead(skills.clone())),
        Arc::new(SkillRun {
            skills: skills.clone(),
            limits,
        }),
    ]
}

fn name_schema(skills: &Skills) -> Value {
    let names = skills.names();
    if names.is_empty() {
        json!({"type": "string", "description": "skill name"})
    } else {
        json!({"type": "string", "enum": names, "description": "skill name from the list in the system prompt"})
    }
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::Recoverable(format!("missing required string argument `{key}`")))
}

fn recoverable(e: SkillError) -> ToolError {
    ToolError::Recoverable(e.to_string())
}

/// `skill_open {name}`: the instructions, the skill directory and its file list.
pub struct SkillOpen(pub Skills);

#[async_trait]
impl Tool for SkillOpen {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "skill_open".into(),
            description: "Load a skill's full instructions and the list of its files.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"name": name_schema(&self.0)},
                "required": ["name"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let skill = self
            .0
            .get(str_arg(&arguments, "name")?)
            .map_err(recoverable)?;
        let (files, truncated) = list_files(&skill.dir, MAX_LISTED_FILES);
        let mut out = format!(
            "<skill_content name=\"{}\">\n{}\n\nSkill directory: {}\nRelative paths in this skill are relative to the skill directory; read files with skill_read and run scripts with skill_run.\n<skill_resources>\n",
            skill.name,
            skill.body,
            skill.dir.display()
        );
        for f in files.iter().filter(|f| !f.eq_ignore_ascii_case("SKILL.md")) {
            out.push_str(&format!("  <file>{f}</file>\n"));
        }
        if truncated {
            out.push_str(&format!(
                "  (only the first {MAX_LISTED_FILES} files are listed)\n"
            ));
        }
        out.push_str("</skill_resources>\n</skill_content>");
        Ok(out)
    }
}

/// `skill_read {name, path}`: a file inside the skill directory.
pub struct SkillRead(pub Skills);

#[async_trait]
impl Tool for SkillRead {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "skill_read".into(),
            description: "Read a file of a skill (for example references/REFERENCE.md), by a path relative to the skill directory.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": name_schema(&self.0),
                    "path": {"type": "string", "description": "path relative to the skill directory"}
                },
                "required": ["name", "path"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let skill = self
            .0
            .get(str_arg(&arguments, "name")?)
            .map_err(recoverable)?;
        let rel = str_arg(&arguments, "path")?;
        read_skill_file(&skill, rel).map_err(recoverable)
    }
}

/// The text of `rel` inside the skill (a directory gives its file list).
pub fn read_skill_file(skill: &crate::Skill, rel: &str) -> Result<String, SkillError> {
    let path = resolve_inside(&skill.dir, rel, &skill.name)?;
    if path.is_dir() {
        let (files, _) = list_files(&path, MAX_LISTED_FILES);
        return Ok(format!("{rel} is a directory:\n{}", files.join("\n")));
    }
    let bytes = read_capped(&path, MAX_READ_BYTES)
        .map_err(|e| SkillError::io(&path, e))?
        .ok_or_else(|| SkillError::PathNotAllowed {
            path: rel.into(),
            reason: format!("larger than {} KiB", MAX_READ_BYTES / 1024),
        })?;
    String::from_utf8(bytes).map_err(|_| SkillError::PathNotAllowed {
        path: rel.into(),
        reason: "not a text file".into(),
    })
}

/// `skill_run {name, script, args}`: run a script in the sandboxed runner.
pub struct SkillRun {
    pub skills: Skills,
    pub limits: RunLimits,
}

#[async_trait]
impl Tool for SkillRun {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "skill_run".into(),
            description: format!(
                "Run a script of a skill (for example scripts/extract.py) with arguments. The working directory is the skill directory; the run is killed after {} s.",
                self.limits.timeout.as_secs()
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": name_schema(&self.skills),
                    "script": {"type": "string", "description": "script path relative to the skill directory, or its file name in scripts/"},
                    "args": {"type": "array", "items": {"type": "string"}, "description": "command-line arguments"}
                },
                "required": ["name", "script"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let skill = self
            .skills
            .get(str_arg(&arguments, "name")?)
            .map_err(recoverable)?;
        let script = str_arg(&arguments, "script")?;
        let args: Vec<String> = match arguments.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(_) => {
                return Err(ToolError::Recoverable(
                    "`args` must be an array of strings".into(),
                ))
            }
        };
        let out = run_script(&skill, Some(script), &args, &self.limits)
            .await
            .map_err(recoverable)?;
        if out.success() {
            Ok(out.render())
        } else {
            Err(ToolError::Recoverable(out.render()))
        }
    }
}
