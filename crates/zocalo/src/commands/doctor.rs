//! `zocalo doctor`: check what zocalo needs and say how to fix what is missing (the checks
//! are `zocalo_runtime::doctor`).

use serde_json::json;
use zocalo_runtime::Runtime;

pub async fn run(ctx: &Runtime, json: bool) -> anyhow::Result<()> {
    let checks = zocalo_runtime::doctor::checks(ctx).await;
    let ok = checks.iter().all(|c| c.ok || !c.required);
    if json {
        super::print_json(&json!({"ok": ok, "checks": checks}))?;
    } else {
        for c in &checks {
            let mark = if c.ok {
                "ok  "
            } else if c.required {
                "FAIL"
            } else {
                "warn"
            };
            println!("{mark} {:<13} {}", c.name, c.detail);
            if let (false, Some(fix)) = (c.ok, &c.fix) {
                println!("     {:<13} fix: {fix}", "");
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!("doctor found problems (see above)"))
    }
}
