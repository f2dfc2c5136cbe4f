//! `zocalo backup | restore | export | import` (the work is `zocalo_runtime::ops`).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use zocalo_runtime::Runtime;

use crate::cli::OpsCmd;

pub async fn run(ctx: &Runtime, cmd: OpsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        OpsCmd::Backup { file } => {
            let r = zocalo_runtime::ops::backup(ctx, &file).await?;
            if json {
                super::print_json(&json!({
                    "file": r.file, "bytes": r.bytes, "backend": r.manifest.backend,
                    "schema_version": r.manifest.schema_version,
                    "files": r.manifest.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
                }))?;
            } else {
                println!(
                    "backed up {} ({}, schema {}, {} files, {} bytes) to {}",
                    ctx.home.root().display(),
                    r.manifest.backend,
                    r.manifest.schema_version,
                    r.manifest.files.len(),
                    r.bytes,
                    r.file.display()
                );
            }
        }
        OpsCmd::Restore { file, force } => {
            let r = zocalo_runtime::ops::restore(ctx, &file, force).await?;
            if json {
                super::print_json(&r)?;
            } else {
                println!(
                    "restored {} into {} (database {}, schema {}; {} files{})",
                    file.display(),
                    ctx.home.root().display(),
                    r.database,
                    r.schema_version,
                    r.files.len(),
                    if r.replaced {
                        ", replacing what was there"
                    } else {
                        ""
                    }
                );
            }
        }
        OpsCmd::Export { file } => {
            let doc = zocalo_runtime::ops::export(ctx).await?;
            let mut text = serde_json::to_vec_pretty(&doc)?;
            text.push(b'\n');
            if file == "-" {
                std::io::stdout().lock().write_all(&text)?;
                return Ok(());
            }
            // Never leaves half a document at FILE.
            let part = format!("{file}.part");
            std::fs::write(&part, &text).with_context(|| format!("writing {part}"))?;
            std::fs::rename(&part, &file).with_context(|| format!("writing {file}"))?;
            let c = doc.counts();
            if json {
                super::print_json(&json!({"file": file, "counts": c}))?;
            } else {
                println!(
                    "exported {} conversations ({} messages), {} memories, {} automations, \
                     {} services, {} skills to {file}",
                    c.conversations, c.messages, c.memories, c.automations, c.services, c.skills
                );
            }
        }
        OpsCmd::Import {
            file,
            skip_existing,
        } => {
            let text = super::read_input(Path::new(&file))?;
            let r = zocalo_runtime::ops::import(ctx, text.as_bytes(), skip_existing).await?;
            if json {
                super::print_json(&json!({"imported": r.imported, "skipped": r.skipped}))?;
            } else {
                let c = r.imported;
                println!(
                    "imported {} conversations ({} messages), {} memories, {} automations, {} \
                     services, {} skills{}",
                    c.conversations,
                    c.messages,
                    c.memories,
                    c.automations,
                    c.services,
                    c.skills,
                    if r.skipped > 0 {
                        format!("; skipped {} already there", r.skipped)
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(())
}
