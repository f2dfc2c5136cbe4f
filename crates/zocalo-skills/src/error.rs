use std::path::PathBuf;

use crate::validate::Issue;

/// Everything that can go wrong with skills.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("no skill named {name:?}{}", known_list(.known))]
    NotFound { name: String, known: Vec<String> },
    #[error("{} is not a valid skill: {}", .dir.display(), .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { dir: PathBuf, errors: Vec<Issue> },
    #[error("path {path:?} is not allowed: {reason}")]
    PathNotAllowed { path: String, reason: String },
    #[error("skill {skill:?} has no file {path:?}")]
    NoSuchFile { skill: String, path: String },
    #[error("skill {skill:?} has no script to run{}", script_list(.scripts))]
    NoScript { skill: String, scripts: Vec<String> },
    #[error("cannot tell how to run {path:?}: give it a #! line or a .py, .sh or .js extension")]
    NoInterpreter { path: String },
    #[error("{0} is already installed; pass --force to replace it")]
    AlreadyInstalled(PathBuf),
    #[error("cannot start {program}: {source} (is it installed and on PATH?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("file watching failed: {0}")]
    Watch(#[from] notify::Error),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; no skills are installed (see `zocalo skills list`)".into()
    } else {
        format!("; known: {}", known.join(", "))
    }
}

fn script_list(scripts: &[String]) -> String {
    if scripts.is_empty() {
        String::new()
    } else {
        format!(": pick one with --script ({})", scripts.join(", "))
    }
}

impl SkillError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SkillError::Io {
            path: path.into(),
            source,
        }
    }

    /// Bad input the user (or the model) can fix: exit code 2 on the command line.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SkillError::NotFound { .. }
                | SkillError::Invalid { .. }
                | SkillError::PathNotAllowed { .. }
                | SkillError::NoSuchFile { .. }
                | SkillError::NoScript { .. }
                | SkillError::NoInterpreter { .. }
                | SkillError::AlreadyInstalled(_)
        )
    }
}
