//! Logs as every front end writes them: `ZOCALO_LOG`, else a level from `-v`s, to stderr,
//! with every secret the process knows (keys in the environment now, vault keys as they are
//! decrypted) scrubbed from each line before it is written.

/// Sets up logging once per process (a host that set up `tracing` itself keeps its own);
/// `verbose`: 0 warnings, 1 info, 2+ debug. Keys set in the environment since the last call
/// are scrubbed too.
pub fn init(verbose: u8) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = match verbose {
            // chromiumoxide warns about every CDP event it has no type for: not the user's concern.
            0 => "warn,chromiumoxide=error",
            1 => "info,sqlx=warn",
            _ => "debug,sqlx=info,hyper=info,reqwest=info",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("ZOCALO_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(zocalo_llm::redact::RedactingWriter::new(std::io::stderr))
            .try_init();
    });
    zocalo_llm::redact::register_env();
}
