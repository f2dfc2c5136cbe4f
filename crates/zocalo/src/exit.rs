//! Exit codes: 2 for usage / bad input, 1 for runtime failures. Errors go to stderr.

use std::process::ExitCode;

pub use zocalo_runtime::usage;

pub fn report(e: &anyhow::Error) -> ExitCode {
    // A vendor may echo a key back inside an error message; scrub every known secret.
    eprintln!(
        "error: {}",
        zocalo_llm::redact::scrub_str(&format!("{e:#}"))
    );
    if zocalo_runtime::is_usage(e) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
