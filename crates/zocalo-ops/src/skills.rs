//! Installed skills in an export document: read from a home's `skills/` directory, written into
//! another's. Each skill is its folder (`NAME/SKILL.md`, scripts, ...); a folder the target
//! already has is a conflict like a record with an existing id.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::OpsError;

/// One file of an installed skill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSkillFile {
    /// Relative to the skills directory: `NAME/SKILL.md`, `NAME/scripts/run.sh`.
    pub path: String,
    /// Unix permission bits (scripts stay executable).
    pub mode: u32,
    /// The content, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The content as lowercase hex, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl ExportSkillFile {
    /// The skill (top folder) this file belongs to, if the path is one an import accepts.
    pub(crate) fn skill(&self) -> Option<&str> {
        let path = Path::new(&self.path);
        let plain = !self.path.contains('\\')
            && path.components().count() >= 2
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        plain.then(|| self.path.split('/').next()).flatten()
    }

    pub(crate) fn bytes(&self) -> Result<Vec<u8>, OpsError> {
        match (&self.text, &self.hex) {
            (Some(text), None) => Ok(text.clone().into_bytes()),
            (None, Some(hex)) => hex::decode(hex)
                .map_err(|e| OpsError::BadExport(format!("skill file {}: hex: {e}", self.path))),
            _ => Err(OpsError::BadExport(format!(
                "skill file {} needs exactly one of text and hex",
                self.path
            ))),
        }
    }
}

/// Every regular file under `dir` (none if it does not exist), sorted by path.
pub fn read_skills(dir: &Path) -> Result<Vec<ExportSkillFile>, OpsError> {
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, "", &mut out)?;
    }
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<ExportSkillFile>) -> Result<(), OpsError> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(OpsError::io(dir))?
        .collect::<Result<_, _>>()
        .map_err(OpsError::io(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = child.file_type().map_err(OpsError::io(&path))?;
        if kind.is_dir() {
            walk(&path, &rel, out)?;
        } else if kind.is_file() && rel.contains('/') {
            let bytes = std::fs::read(&path).map_err(OpsError::io(&path))?;
            let mode = crate::archive::file_mode(&path)?;
            let (text, hex) = match String::from_utf8(bytes) {
                Ok(text) => (Some(text), None),
                Err(e) => (None, Some(hex::encode(e.into_bytes()))),
            };
            out.push(ExportSkillFile {
                path: rel,
                mode,
                text,
                hex,
            });
        }
    }
    Ok(())
}

/// A document's skill files, by skill (folder name).
pub(crate) type BySkill = BTreeMap<String, Vec<ExportSkillFile>>;

/// Checks the files and groups them by skill; `dir` is the target skills directory, for the
/// conflict check. Returns the skills to install and the names of those already there.
pub(crate) fn plan(
    files: &[ExportSkillFile],
    dir: &Path,
) -> Result<(BySkill, Vec<String>), OpsError> {
    let mut by_skill = BySkill::new();
    for f in files {
        let skill = f.skill().ok_or_else(|| {
            OpsError::BadExport(format!(
                "skill file path {:?} must be NAME/FILE inside the skills directory",
                f.path
            ))
        })?;
        f.bytes()?;
        by_skill
            .entry(skill.to_owned())
            .or_default()
            .push(f.clone());
    }
    let existing = by_skill
        .keys()
        .filter(|name| dir.join(name).exists())
        .cloned()
        .collect();
    Ok((by_skill, existing))
}

/// Skill folders written beside the skills directory, moved into it by [`Staged::install`].
pub(crate) struct Staged {
    dir: Option<tempfile::TempDir>,
    skills: Vec<String>,
    target: PathBuf,
}

/// Writes `skills` (minus `skip`) into a staging directory next to `target`.
pub(crate) fn stage(skills: &BySkill, skip: &[String], target: &Path) -> Result<Staged, OpsError> {
    let wanted: Vec<&String> = skills.keys().filter(|s| !skip.contains(s)).collect();
    if wanted.is_empty() {
        return Ok(Staged {
            dir: None,
            skills: Vec::new(),
            target: target.to_owned(),
        });
    }
    std::fs::create_dir_all(target).map_err(OpsError::io(target))?;
    let dir = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(target)
        .map_err(OpsError::io(target))?;
    for name in &wanted {
        for f in &skills[*name] {
            let dest = dir.path().join(&f.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(OpsError::io(parent))?;
            }
            std::fs::write(&dest, f.bytes()?).map_err(OpsError::io(&dest))?;
            crate::archive::set_mode(&dest, f.mode & 0o777)?;
        }
    }
    Ok(Staged {
        dir: Some(dir),
        skills: wanted.into_iter().cloned().collect(),
        target: target.to_owned(),
    })
}

impl Staged {
    /// Moves each staged skill folder into place (a rename each); `replace` first removes a
    /// folder of the same name.
    pub(crate) fn install(self, replace: bool) -> Result<usize, OpsError> {
        let Some(dir) = &self.dir else {
            return Ok(0);
        };
        for name in &self.skills {
            let to = self.target.join(name);
            if replace && to.exists() {
                std::fs::remove_dir_all(&to).map_err(OpsError::io(&to))?;
            }
            std::fs::rename(dir.path().join(name), &to).map_err(OpsError::io(&to))?;
        }
        Ok(self.skills.len())
    }
}
