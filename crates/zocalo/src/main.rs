//! The `zocalo` command line. Thin: parse, call the runtime (`zocalo_runtime`), print.

mod cli;
mod commands;
mod exit;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Skill scripts are started through `zocalo __skill-sandbox ...`: it restricts its own
    // writes with Landlock and execs the script. Landlock binds the calling thread, so this
    // must run before anything (the async runtime) starts a thread.
    let mut argv = std::env::args_os();
    if argv
        .nth(1)
        .is_some_and(|a| a == zocalo_skills::sandbox::SUBCOMMAND)
    {
        return zocalo_skills::sandbox::main(argv);
    }
    let cli = cli::Cli::parse();
    zocalo_runtime::logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    };
    // Dropping the runtime would wait without limit for every `spawn_blocking` task still
    // running (an embedding or a generation whose caller is gone, a read that never ends):
    // the command's work is done, so give them a moment and exit regardless.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
