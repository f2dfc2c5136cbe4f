//! `zocalo skills list | show | validate | run | install`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use zocalo_skills::check_dir;

use super::print_json;
use crate::exit::usage;
use zocalo_runtime::Runtime;

#[derive(Debug, Args)]
pub struct SkillsArgs {
    /// Another directory of skills, scanned after $ZOCALO_HOME/skills, ~/.agents/skills and
    /// ./.agents/skills (repeatable; earlier directories win name conflicts).
    #[arg(long = "skills-dir", value_name = "DIR", global = true)]
    pub skills_dir: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: SkillsCmd,
}

#[derive(Debug, Subcommand)]
pub enum SkillsCmd {
    /// Every loadable skill, by name; problems go to stderr as warnings.
    List,
    /// One skill: its fields, files and instructions.
    Show { name: String },
    /// Check a skill directory against the Agent Skills spec (exit 2 if invalid); --json:
    /// {"valid","name","errors":[{"field","message"}],"warnings":[...]}.
    Validate { dir: PathBuf },
    /// Run a skill's script: `zocalo skills run NAME [--script PATH] [-- ARGS...]`.
    Run {
        name: String,
        /// Script path inside the skill (or its file name in scripts/); default: the skill's
        /// only script, or scripts/NAME.*.
        #[arg(long)]
        script: Option<String>,
        /// Wall-clock limit in seconds; then the script's process group is killed.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Arguments for the script.
        #[arg(value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Validate a skill directory and copy it into $ZOCALO_HOME/skills/NAME.
    Install {
        dir: PathBuf,
        /// Replace an installed skill of the same name.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(ctx: &Runtime, args: SkillsArgs, json: bool) -> anyhow::Result<()> {
    let load = || {
        let skills = ctx.skills_now(&args.skills_dir);
        for w in skills.warnings() {
            eprintln!("warning: {w}");
        }
        skills
    };
    match args.command {
        SkillsCmd::List => {
            let skills = load();
            let list = skills.list();
            if json {
                return print_json(&list.iter().map(|s| s.as_ref()).collect::<Vec<_>>());
            }
            if list.is_empty() {
                println!(
                    "no skills; looked in: {}",
                    skills
                        .roots()
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let width = list.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in list {
                println!(
                    "{:width$}  {}",
                    s.name,
                    super::one_line(&s.description, 100)
                );
            }
            Ok(())
        }
        SkillsCmd::Show { name } => {
            let skill = load().get(&name)?;
            let (files, _) = zocalo_skills::paths::list_files(&skill.dir, 500);
            if json {
                let mut v = serde_json::to_value(skill.as_ref())?;
                v["body"] = json!(skill.body);
                v["files"] = json!(files);
                return print_json(&v);
            }
            println!("name: {}", skill.name);
            println!("description: {}", skill.description);
            println!("dir: {}", skill.dir.display());
            if let Some(l) = &skill.license {
                println!("license: {l}");
            }
            if let Some(c) = &skill.compatibility {
                println!("compatibility: {c}");
            }
            for (k, v) in &skill.metadata {
                println!("metadata.{k}: {v}");
            }
            if !skill.allowed_tools.is_empty() {
                println!("allowed-tools: {}", skill.allowed_tools.join(" "));
            }
            println!("files: {}", files.join(", "));
            println!("\n{}", skill.body);
            Ok(())
        }
        SkillsCmd::Validate { dir } => {
            let report = check_dir(&dir).report;
            if json {
                print_json(&report)?;
            } else {
                match (&report.name, report.valid) {
                    (Some(n), true) => println!("valid: {n}"),
                    _ => println!("invalid: {}", dir.display()),
                }
                for e in &report.errors {
                    println!("error: {e}");
                }
                for w in &report.warnings {
                    println!("warning: {w}");
                }
            }
            if report.valid {
                Ok(())
            } else {
                Err(usage(format!(
                    "{} is not a valid skill ({} error{})",
                    dir.display(),
                    report.errors.len(),
                    if report.errors.len() == 1 { "" } else { "s" }
                )))
            }
        }
        SkillsCmd::Run {
            name,
            script,
            timeout,
            args: script_args,
        } => {
            if timeout == 0 {
                return Err(usage("--timeout must be at least 1 second"));
            }
            let timeout_d = Duration::from_secs(timeout);
            let out = ctx
                .run_skill(&load(), &name, script.as_deref(), &script_args, timeout_d)
                .await?;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            if out.timed_out {
                anyhow::bail!("the script was killed at the {timeout} s time limit");
            }
            match out.exit_code {
                Some(0) => Ok(()),
                Some(c) => anyhow::bail!("the script exited with code {c}"),
                None => anyhow::bail!("the script was killed by a signal"),
            }
        }
        SkillsCmd::Install { dir, force } => {
            ctx.home.ensure()?;
            let installed = zocalo_skills::install(&dir, &ctx.home.root().join("skills"), force)?;
            if json {
                return print_json(&json!({
                    "name": installed.skill.name,
                    "path": installed.dest,
                    "warnings": installed.report.warnings,
                    "skipped": installed.skipped,
                }));
            }
            for w in &installed.report.warnings {
                eprintln!("warning: {w}");
            }
            for s in &installed.skipped {
                eprintln!("warning: not copied (symlink or special file): {s}");
            }
            println!(
                "installed {} to {}",
                installed.skill.name,
                installed.dest.display()
            );
            Ok(())
        }
    }
}
