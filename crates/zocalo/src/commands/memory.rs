//! `zocalo memory add|import|search|forget|stats`: printing over the runtime's one memory.
//! The files users hand in are parsed (all lines checked first) by `zocalo_runtime::memory`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use zocalo_memory::{NewMemory, DEFAULT_USER_SCOPE};
use zocalo_runtime::memory::{hits_json, parse_meta, read_batch, read_import, search_batch};
use zocalo_runtime::Runtime;

use crate::commands::print_json;
use crate::exit::usage;

#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// Remember TEXT (chunked and embedded); --json prints {"id"}.
    Add {
        text: String,
        /// Scope: user:NAME, agent:NAME, conv:ID, ... (default user:default).
        #[arg(long, default_value = DEFAULT_USER_SCOPE)]
        scope: String,
        /// Metadata, repeatable: KEY=VALUE (a number if VALUE parses as one).
        #[arg(long = "meta", value_name = "K=V")]
        meta: Vec<String>,
    },
    /// Import a JSONL file of {"text","scope","metadata"} lines in one transaction.
    Import { file: PathBuf },
    /// Hybrid (keyword + meaning) search; or --batch FILE.jsonl of {"query","scope"} lines.
    Search(SearchArgs),
    /// Delete a memory for good (database and every index).
    Forget { id: String },
    /// Counts per scope, chunks, vectors and the embedder in use.
    Stats,
    /// Compute the vectors memories lack (stored while the embedder was missing) or have from
    /// another embedder (after `[memory] embedder` changed), in batches with a progress bar;
    /// resumable after an interruption.
    Reindex,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for (not with --batch).
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    pub query: Option<String>,
    /// Scope to search, repeatable (default user:default).
    #[arg(long)]
    pub scope: Vec<String>,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// A JSONL file of {"query","scope"} lines; prints one array in input order.
    #[arg(long, value_name = "QUERIES.jsonl")]
    pub batch: Option<PathBuf>,
}

pub async fn run(ctx: &Runtime, cmd: MemoryCmd, json: bool) -> anyhow::Result<()> {
    // Never silently keyword-only: say it once, with the fix.
    if matches!(
        cmd,
        MemoryCmd::Add { .. } | MemoryCmd::Import { .. } | MemoryCmd::Search(_)
    ) {
        if let Some(why) = ctx.embedder_missing() {
            eprintln!("{}", zocalo_runtime::memory::keyword_only_note(&why));
        }
    }
    match cmd {
        MemoryCmd::Add { text, scope, meta } => {
            let mut new = NewMemory::new(scope, text).with_source("cli");
            new.metadata = parse_meta(&meta)?;
            new.validate()?;
            let memory = ctx.memory().await?;
            let r = memory.memorize(new).await?;
            if json {
                print_json(&json!({ "id": r.id }))
            } else {
                println!("{}", r.id);
                Ok(())
            }
        }
        MemoryCmd::Import { file } => {
            let items = read_import(&file)?;
            let memory = ctx.memory().await?;
            let n = items.len();
            let bar = super::progress_bar(
                n,
                "{bar:40} {pos}/{len} memories embedded ({per_sec}, eta {eta})",
            );
            let stored = memory
                .memorize_many(items, &|done| {
                    if let Some(b) = &bar {
                        b.set_position(done as u64);
                    }
                })
                .await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if json {
                print_json(&json!({ "imported": stored.len() }))
            } else {
                println!("imported {} memories from {}", stored.len(), file.display());
                Ok(())
            }
        }
        MemoryCmd::Search(args) => search(ctx, args, json).await,
        MemoryCmd::Forget { id } => {
            let memory = ctx.memory().await?;
            memory.forget(&id).await?;
            if json {
                print_json(&json!({ "forgotten": id }))
            } else {
                println!("forgot {id}");
                Ok(())
            }
        }
        MemoryCmd::Reindex => {
            // The length comes with the first batch.
            let template = "{bar:40} {pos}/{len} chunks embedded ({per_sec}, eta {eta})";
            let bar = super::progress_bar(1, template);
            let (report, stats) = zocalo_runtime::memory::reindex(ctx, &|done, total| {
                if let Some(b) = &bar {
                    b.set_length(total as u64);
                    b.set_position(done as u64);
                }
            })
            .await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if json {
                let mut v = serde_json::to_value(&stats)?;
                v["reindex"] = serde_json::to_value(&report)?;
                return print_json(&v);
            }
            println!("{report}");
            print_stats(&stats, false)
        }
        MemoryCmd::Stats => print_stats(&ctx.memory().await?.stats().await?, json),
    }
}

fn print_stats(s: &zocalo_memory::Stats, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&s);
    }
    println!(
        "{} memories, {} chunks, {} vectors (embedder: {})",
        s.memories,
        s.chunks,
        s.vectors,
        s.embedder.as_deref().unwrap_or("none: keywords only")
    );
    for (scope, n) in &s.scopes {
        println!("  {scope}: {n}");
    }
    Ok(())
}

async fn search(ctx: &Runtime, args: SearchArgs, json: bool) -> anyhow::Result<()> {
    let default_scopes = if args.scope.is_empty() {
        vec![DEFAULT_USER_SCOPE.to_owned()]
    } else {
        args.scope.clone()
    };
    if let Some(file) = &args.batch {
        if !json {
            return Err(usage("--batch prints JSON: add --json"));
        }
        let queries = read_batch(file)?;
        let memory = ctx.memory().await?;
        let out = search_batch(&memory, queries, &default_scopes, args.limit).await?;
        return print_json(&out);
    }
    let query = args.query.unwrap_or_default();
    if query.trim().is_empty() {
        return Err(usage("the query is empty"));
    }
    let memory = ctx.memory().await?;
    let scopes: Vec<&str> = default_scopes.iter().map(String::as_str).collect();
    let hits = memory.recall(&query, &scopes, args.limit).await?;
    if json {
        return print_json(&hits_json(&hits));
    }
    if hits.is_empty() {
        println!("no memories found");
    }
    for h in &hits {
        println!("{}  {:.4}  [{}]  {}", h.id, h.score, h.scope, h.text.trim());
    }
    Ok(())
}
