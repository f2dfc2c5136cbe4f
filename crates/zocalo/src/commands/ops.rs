//! `zocalo backup | restore | export | import` (the work is `zocalo_runtime::ops`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use zocalo_runtime::Runtime;

use crate::cli::OpsCmd;

pub async fn run(ctx: &Runtime, cmd: OpsCmd) -> anyhow::Result<()> {
    match cmd {
        OpsCmd::Backup { file, json } => {
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
        OpsCmd::Restore { file, force, json } => {
            let r = zocalo_runtime::ops::restore(ctx, &file, force).await?;
            if json {
                super::print_json(&serde_json::to_value(&r)?)?;
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
        OpsCmd::Export { file, json } => {
            let doc = zocalo_runtime::ops::export(ctx).await?;
            let text = serde_json::to_vec_pretty(&doc)?;
            if file == "-" {
                let mut out = std::io::stdout().lock();
                out.write_all(&text)?;
                out.write_all(b"\n")?;
            } else {
                write_atomically(Path::new(&file), &text)?;
                let counts = doc.counts();
                if json {
                    super::print_json(&json!({"file": file, "counts": counts}))?;
                } else {
                    println!(
                        "exported {} conversations ({} messages), {} memories, {} automations, \
                         {} services, {} skills to {file}",
                        counts.conversations,
                        counts.messages,
                        counts.memories,
                        counts.automations,
                        counts.services,
                        counts.skills
                    );
                }
            }
        }
        OpsCmd::Import {
            file,
            skip_existing,
            json,
        } => {
            let mut text = Vec::new();
            if file == "-" {
                std::io::stdin().read_to_end(&mut text)?;
            } else {
                text = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
            }
            let r = zocalo_runtime::ops::import(ctx, &text, skip_existing).await?;
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

/// Never leaves half a document at `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let part = path.with_extension("part");
    std::fs::write(&part, bytes).with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
