//! Soak and load runs against the real `zocalo` binary: see `zocalo_testkit::load` and
//! docs/BENCHMARKS.md ("Soak and load").
//!
//! ```text
//! cargo build --release -p zocalo --bin zocalo
//! cargo run --release -p zocalo-testkit --features load --example soak -- serve --minutes 10
//! cargo run --release -p zocalo-testkit --features load --example soak -- daemon --minutes 10 --automations 200
//! ```

use zocalo_testkit::load::{parse_args, run_daemon, run_serve, SoakCommand, USAGE};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    let (command, output) = match parse_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match &command {
        SoakCommand::Serve(o) => run_serve(o)
            .await
            .map(|r| (serde_json::to_value(&r), r.table(), r.failures())),
        SoakCommand::Daemon(o) => run_daemon(o)
            .await
            .map(|r| (serde_json::to_value(&r), r.table(), r.failures())),
    };
    let (json, table, failures) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(1);
        }
    };
    let json = match json {
        Ok(j) => j,
        Err(e) => {
            eprintln!("soak: the report does not serialize: {e}");
            std::process::exit(1);
        }
    };
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    if let Some(path) = &output.out {
        if let Err(e) = std::fs::write(path, format!("{text}\n")) {
            eprintln!("soak: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if output.json {
        println!("{text}");
    } else {
        print!("{table}");
    }
    if failures.is_empty() {
        eprintln!("soak: passed");
    } else {
        for f in &failures {
            eprintln!("soak: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
