//! How a long-running front end (daemon, server, worker, scheduler loop) learns it should
//! stop: SIGTERM, SIGINT (Ctrl-C) or SIGHUP, one function for all of them.

/// Resolves at the first SIGTERM, SIGINT or SIGHUP. If the handlers cannot be installed it
/// falls back to Ctrl-C alone.
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
}
