//! The skill-script sandbox launcher as a standalone program; the same code as
//! `zocalo __skill-sandbox` (see `zocalo_skills::sandbox`). The crate's tests start scripts
//! through it, since they cannot build the `zocalo` binary.
//!
//! `zocalo-skill-sandbox __skill-sandbox [--status FILE] --write DIR... -- PROGRAM [ARGS...]`

use std::process::ExitCode;

use zocalo_skills::sandbox;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(first) if first == sandbox::SUBCOMMAND => sandbox::main(args),
        _ => {
            eprintln!(
                "usage: zocalo-skill-sandbox {} [--status FILE] --write DIR [--write DIR...] -- PROGRAM [ARGS...]",
                sandbox::SUBCOMMAND
            );
            ExitCode::from(2)
        }
    }
}
