//! `skills install DIR`: validate, then copy into the data home's skills root.

use std::path::{Path, PathBuf};

use crate::validate::{check_dir, Report};
use crate::{Skill, SkillError};

/// What an install did.
#[derive(Debug)]
pub struct Installed {
    pub skill: Skill,
    pub report: Report,
    /// Where the skill now lives.
    pub dest: PathBuf,
    /// Symlinks and special files that were not copied.
    pub skipped: Vec<String>,
}

/// Copy the skill at `src` to `root/NAME`. Nothing is written unless it validates; an
/// existing skill of that name is kept unless `force`. The copy goes to a temporary sibling
/// first and is renamed into place, so a failed copy leaves no half skill.
pub fn install(src: &Path, root: &Path, force: bool) -> Result<Installed, SkillError> {
    let checked = check_dir(src);
    // Strict: an installed skill must meet the spec, not just be loadable.
    let (Some(skill), true) = (checked.skill, checked.report.valid) else {
        return Err(SkillError::Invalid {
            dir: src.to_path_buf(),
            errors: checked.report.errors,
        });
    };
    let dest = root.join(&skill.name);
    if dest.exists() && !force {
        return Err(SkillError::AlreadyInstalled(dest));
    }
    std::fs::create_dir_all(root).map_err(|e| SkillError::io(root, e))?;
    let tmp = root.join(format!(".{}.installing-{}", skill.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut skipped = Vec::new();
    if let Err(e) = copy_tree(src, &tmp, Path::new(""), &mut skipped) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| SkillError::io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| SkillError::io(&dest, e))?;
    let skill = Skill {
        dir: dest.clone(),
        ..skill
    };
    Ok(Installed {
        skill,
        report: checked.report,
        dest,
        skipped,
    })
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    rel: &Path,
    skipped: &mut Vec<String>,
) -> Result<(), SkillError> {
    let from = src.join(rel);
    let to = dst.join(rel);
    std::fs::create_dir_all(&to).map_err(|e| SkillError::io(&to, e))?;
    let entries = std::fs::read_dir(&from).map_err(|e| SkillError::io(&from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SkillError::io(&from, e))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let child = rel.join(&name);
        let ft = entry
            .file_type()
            .map_err(|e| SkillError::io(entry.path(), e))?;
        if ft.is_dir() {
            copy_tree(src, dst, &child, skipped)?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), dst.join(&child))
                .map_err(|e| SkillError::io(entry.path(), e))?;
        } else {
            // A symlink could point anywhere; an installed skill is self-contained.
            skipped.push(child.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
