//! Running one health check: an HTTP GET that must answer 2xx, or a command that must exit 0,
//! each within a time limit. The answer is `Ok` or the reason it failed, for `status`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::spec::{split_command, HealthCheck};

/// One check. `env`/`cwd` are the service's (a command check runs like the service would).
pub async fn probe(
    check: &HealthCheck,
    client: &reqwest::Client,
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Duration,
) -> Result<(), String> {
    match check {
        HealthCheck::Http(url) => {
            let resp = client
                .get(url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| describe_reqwest(&e))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("GET {url} answered {status}"))
            }
        }
        HealthCheck::Cmd(cmd) => {
            let argv = split_command(cmd).map_err(|e| e.to_string())?;
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .envs(env)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
            match tokio::time::timeout(timeout, child.wait()).await {
                Err(_) => Err(format!(
                    "`{cmd}` did not finish within {} ms",
                    timeout.as_millis()
                )),
                Ok(Err(e)) => Err(format!("`{cmd}`: {e}")),
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(format!(
                    "`{cmd}` {}",
                    crate::supervisor::describe_exit(status)
                )),
            }
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    // reqwest's Display is terse ("error sending request"); the cause says what happened.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
