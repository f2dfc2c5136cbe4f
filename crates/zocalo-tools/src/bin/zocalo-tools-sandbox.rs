//! The skills' Landlock launcher as a program of this crate, so its tests can start shell
//! commands through it (they cannot build the `zocalo` binary). Production passes `zocalo`
//! itself, which handles `zocalo __skill-sandbox ...` the same way.

use std::process::ExitCode;

use zocalo_skills::sandbox;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(first) if first == sandbox::SUBCOMMAND => sandbox::main(args),
        _ => {
            eprintln!(
                "usage: zocalo-tools-sandbox {} [--status FILE] --write DIR... -- PROGRAM [ARGS...]",
                sandbox::SUBCOMMAND
            );
            ExitCode::from(2)
        }
    }
}
