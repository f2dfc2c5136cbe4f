//! What a service is: [`ServiceSpec`] (name, command, restart policy, health check, env, cwd)
//! and its validation. Everything a user types is checked here, before anything is stored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ServicesError;

/// When a service whose process exited is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After every exit, successful or not.
    Always,
    /// After an exit with a non-zero code or by a signal.
    #[default]
    OnFailure,
    /// Never: an exit ends the service (`stopped` after success, `failed` otherwise).
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    /// Whether an exit (`success`: code 0) is followed by a restart.
    pub fn restarts_after(self, success: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RestartPolicy {
    type Err = ServicesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            other => Err(ServicesError::Invalid(format!(
                "unknown restart policy `{other}`: use always, on-failure or never"
            ))),
        }
    }
}

/// How the supervisor tells that a started service is ready and still well.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// A GET that answers 2xx.
    Http(String),
    /// A command (same quoting rules as the service's) that exits 0, run with the service's
    /// environment and working directory.
    Cmd(String),
}

impl HealthCheck {
    pub fn describe(&self) -> String {
        match self {
            HealthCheck::Http(url) => format!("GET {url}"),
            HealthCheck::Cmd(cmd) => cmd.clone(),
        }
    }
}

/// A service definition as the user gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// The command line; split like a POSIX shell would split words (quotes, backslashes),
    /// but run directly, without a shell: use `sh -c '…'` for pipes and redirections.
    pub command: String,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Added to the daemon's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute); default: the data home.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

impl ServiceSpec {
    /// A spec with the default restart policy and no health check, env or cwd.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            restart: RestartPolicy::default(),
            health: None,
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    /// A spec from what a person typed (`services add`): the restart policy by name, a
    /// health check (`health_http` wins over `health_cmd`), `K=V` pairs, a working directory
    /// relative to the caller's (the daemon runs elsewhere); validated.
    pub fn from_flags(
        name: &str,
        command: &str,
        restart: &str,
        (health_http, health_cmd): (Option<String>, Option<String>),
        env: &[String],
        cwd: Option<&std::path::Path>,
    ) -> Result<Self, ServicesError> {
        let mut spec = ServiceSpec::new(name, command);
        spec.restart = restart.parse()?;
        spec.health = match (health_http, health_cmd) {
            (Some(url), _) => Some(HealthCheck::Http(url)),
            (None, Some(cmd)) => Some(HealthCheck::Cmd(cmd)),
            (None, None) => None,
        };
        spec.env = env
            .iter()
            .map(|pair| parse_env_pair(pair))
            .collect::<Result<_, _>>()?;
        if let Some(dir) = cwd {
            let abs = std::path::absolute(dir)
                .map_err(|e| ServicesError::Invalid(format!("--cwd {}: {e}", dir.display())))?;
            spec.cwd = Some(abs);
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Every check the supervisor relies on: a usable name, a command that splits into at
    /// least one word, valid variable names, an absolute existing directory, an http(s) URL.
    pub fn validate(&self) -> Result<(), ServicesError> {
        validate_name(&self.name)?;
        split_command(&self.command).map_err(|e| prefix("--cmd", e))?;
        for (k, v) in &self.env {
            validate_env(k, v)?;
        }
        if let Some(dir) = &self.cwd {
            if !dir.is_absolute() {
                return Err(ServicesError::Invalid(format!(
                    "--cwd {} is not an absolute path",
                    dir.display()
                )));
            }
            if !dir.is_dir() {
                return Err(ServicesError::Invalid(format!(
                    "--cwd {} is not a directory",
                    dir.display()
                )));
            }
        }
        match &self.health {
            None => {}
            Some(HealthCheck::Http(url)) => validate_http_url(url)?,
            Some(HealthCheck::Cmd(cmd)) => {
                split_command(cmd).map_err(|e| prefix("--health-cmd", e))?;
            }
        }
        Ok(())
    }
}

fn prefix(flag: &str, e: ServicesError) -> ServicesError {
    match e {
        ServicesError::Invalid(m) => ServicesError::Invalid(format!("{flag}: {m}")),
        other => other,
    }
}

/// Names become file names (`logs/NAME.log`) and command arguments: a letter or digit first,
/// then letters, digits, `.`, `_`, `-`; at most 64.
pub fn validate_name(name: &str) -> Result<(), ServicesError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServicesError::Invalid(format!(
            "invalid service name {name:?}: use letters, digits, `.`, `_` and `-` (at most 64), \
             starting with a letter or digit"
        )))
    }
}

/// Splits a command line into argv with POSIX shell word rules. Empty or unbalanced quoting
/// is bad input.
pub fn split_command(command: &str) -> Result<Vec<String>, ServicesError> {
    if command.trim().is_empty() {
        return Err(ServicesError::Invalid("the command is empty".into()));
    }
    if command.contains('\0') {
        return Err(ServicesError::Invalid(
            "the command contains a NUL byte".into(),
        ));
    }
    match shlex::split(command) {
        Some(words) if !words.is_empty() && !words[0].is_empty() => Ok(words),
        Some(_) => Err(ServicesError::Invalid("the command is empty".into())),
        None => Err(ServicesError::Invalid(format!(
            "cannot split {command:?} into words: unbalanced quotes or a trailing backslash"
        ))),
    }
}

fn validate_env(key: &str, value: &str) -> Result<(), ServicesError> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(ServicesError::Invalid(format!(
            "--env: invalid variable name {key:?}: use letters, digits and _, not starting with a digit"
        )));
    }
    if value.contains('\0') {
        return Err(ServicesError::Invalid(format!(
            "--env {key}: the value contains a NUL byte"
        )));
    }
    Ok(())
}

/// Parses `K=V` (as given to `--env`).
pub fn parse_env_pair(pair: &str) -> Result<(String, String), ServicesError> {
    match pair.split_once('=') {
        Some((k, v)) => {
            validate_env(k, v)?;
            Ok((k.to_owned(), v.to_owned()))
        }
        None => Err(ServicesError::Invalid(format!(
            "--env {pair:?}: expected KEY=VALUE"
        ))),
    }
}

fn validate_http_url(url: &str) -> Result<(), ServicesError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ServicesError::Invalid(format!("--health-http {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ServicesError::Invalid(format!(
            "--health-http {url:?}: expected an http:// or https:// URL with a host"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command(r#"python3 -c 'print("hi there")' "a b""#).unwrap(),
            vec!["python3", "-c", r#"print("hi there")"#, "a b"]
        );
        for bad in ["", "   ", "echo 'unterminated", "echo \"x", "''", "a\0b"] {
            assert!(
                matches!(split_command(bad), Err(ServicesError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_env_urls_and_dirs_are_checked() {
        let ok = ServiceSpec::new("web-1.api_x", "sleep 1");
        ok.validate().unwrap();
        for name in ["", "-x", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(
                ServiceSpec::new(name, "true").validate().is_err(),
                "{name:?}"
            );
        }
        let mut s = ok.clone();
        s.env.insert("1BAD".into(), "v".into());
        assert!(s.validate().unwrap_err().is_usage());
        let mut s = ok.clone();
        s.cwd = Some("relative/dir".into());
        assert!(s.validate().unwrap_err().to_string().contains("absolute"));
        s.cwd = Some("/definitely/not/here".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        for url in ["ftp://x/", "not a url", "http://", "localhost:80"] {
            let mut s = ok.clone();
            s.health = Some(HealthCheck::Http(url.into()));
            assert!(s.validate().is_err(), "{url}");
        }
        let mut s = ok.clone();
        s.health = Some(HealthCheck::Http("http://127.0.0.1:8080/healthz".into()));
        s.validate().unwrap();
        s.health = Some(HealthCheck::Cmd("'".into()));
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--health-cmd"));
        assert_eq!(
            parse_env_pair("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert!(parse_env_pair("novalue").is_err());
        assert!(parse_env_pair("=v").is_err());
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert_eq!(
            "on-failure".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure
        );
    }

    proptest! {
        /// Whatever a user types as a command, validation answers without panicking, and a
        /// command it accepts has a first word.
        #[test]
        fn any_command_text_is_handled(cmd in "\\PC{0,40}") {
            if let Ok(argv) = split_command(&cmd) {
                prop_assert!(!argv.is_empty() && !argv[0].is_empty());
            }
        }

        #[test]
        fn any_name_is_handled(name in "\\PC{0,70}") {
            let _ = validate_name(&name);
        }
    }
}
