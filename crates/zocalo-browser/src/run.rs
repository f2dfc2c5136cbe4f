//! Running a [`Script`] in a tab: steps in order, the first failure stops the run.

use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::browser::{Tab, WaitCondition};
use crate::error::{BrowserError, Result};
use crate::script::{Action, Script, Step};

/// The outcome of one step. `error` names the step: `step 2 (click "#send"): ...`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub action: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of a run (DESIGN section 3): steps after a failed one are not run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    pub ok: bool,
    pub steps: Vec<StepReport>,
    pub url: String,
    pub title: String,
}

impl RunReport {
    /// The failed step's report, if any.
    pub fn failure(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| !s.ok)
    }
}

/// Run every step of `script` in `tab`, calling `on_step` as each finishes. Relative
/// screenshot paths are taken from `base_dir`.
pub async fn run_script(
    tab: &mut Tab,
    script: &Script,
    base_dir: &Path,
    mut on_step: impl FnMut(&StepReport),
) -> RunReport {
    let mut steps = Vec::with_capacity(script.steps.len());
    for (i, step) in script.steps.iter().enumerate() {
        let report = match run_step(tab, step, base_dir).await {
            Ok(value) => StepReport {
                step: i,
                action: step.action.name(),
                ok: true,
                value,
                error: None,
            },
            Err(e) => StepReport {
                step: i,
                action: step.action.name(),
                ok: false,
                value: None,
                error: Some(format!("step {i} ({}): {e}", step.action.describe())),
            },
        };
        on_step(&report);
        let failed = !report.ok;
        steps.push(report);
        if failed {
            break;
        }
    }
    RunReport {
        ok: steps.iter().all(|s| s.ok),
        steps,
        url: tab.url().await.unwrap_or_default(),
        title: tab.title().await.unwrap_or_default(),
    }
}

async fn run_step(tab: &mut Tab, step: &Step, base_dir: &Path) -> Result<Option<Value>> {
    let t = step.timeout;
    Ok(match &step.action {
        Action::Goto { url } => Some(json!(tab.goto(url, t).await?)),
        Action::Click { target } => {
            tab.click(target, t).await?;
            None
        }
        Action::Type {
            target,
            text,
            options,
        } => {
            tab.type_text(target, text, *options, t).await?;
            None
        }
        Action::WaitFor { condition } => {
            let waited = tab.wait_for(condition, t).await?;
            let mut v = json!({"waited_ms": waited.as_millis() as u64});
            if let WaitCondition::Text(text) = condition {
                v["text"] = json!(text);
            }
            Some(v)
        }
        Action::Eval { expression } => Some(tab.eval(expression, t).await?),
        Action::Screenshot { path, full_page } => {
            let png = tokio::time::timeout(t, tab.screenshot(*full_page))
                .await
                .map_err(|_| BrowserError::Timeout {
                    what: "the screenshot was not taken".into(),
                    waited: t,
                })??;
            let path = base_dir.join(path);
            std::fs::write(&path, &png).map_err(|source| BrowserError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let (width, height) = png_size(&png).unwrap_or((0, 0));
            Some(json!({
                "path": path.display().to_string(),
                "width": width,
                "height": height,
                "bytes": png.len(),
            }))
        }
        Action::Snapshot => {
            let snap = tokio::time::timeout(t, tab.snapshot())
                .await
                .map_err(|_| BrowserError::Timeout {
                    what: "the snapshot was not taken".into(),
                    waited: t,
                })??;
            Some(json!(snap))
        }
    })
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_size_reads_the_header_and_rejects_garbage() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&1280u32.to_be_bytes());
        png.extend_from_slice(&720u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((1280, 720)));
        assert_eq!(png_size(b"GIF89a"), None);
        assert_eq!(png_size(&png[..20]), None);
    }
}
