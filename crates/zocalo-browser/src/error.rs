//! One error type for the crate. Messages are written for the person (or model) who has to act
//! on them: what failed, on what, and what to do.

use std::time::Duration;

/// How to get a browser when none is found.
pub const INSTALL_HINT: &str =
    "install it with `sudo apt-get install -y chromium` (Debian/Ubuntu; \
`./x setup` does this) or point ZOCALO_CHROMIUM at a Chromium or Chrome binary";

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// No usable Chromium binary.
    #[error("Chromium not found ({detail}): {INSTALL_HINT}")]
    ChromiumNotFound { detail: String },
    /// Chromium started but never offered its DevTools endpoint, or exited at once.
    #[error("Chromium failed to start: {0}")]
    Launch(String),
    /// The connection to a running Chromium broke or a CDP command failed.
    #[error("browser protocol error: {0}")]
    Protocol(String),
    /// Not a URL we navigate to.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The server could not be reached at all (refused, no such host, ...).
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered, but the navigation failed (bad response, aborted, ...).
    #[error("navigation to {url} failed: {reason}")]
    Navigation { url: String, reason: String },
    /// Something did not happen in time.
    #[error("{what} (waited {})", fmt_duration(*.waited))]
    Timeout { what: String, waited: Duration },
    /// Not valid CSS.
    #[error("invalid CSS selector {selector:?}: {reason}")]
    InvalidSelector { selector: String, reason: String },
    /// A ref that the latest snapshot did not hand out.
    #[error("unknown ref {0:?}: refs come from the latest snapshot (take one first)")]
    UnknownRef(String),
    /// A ref whose element has left the page since the snapshot.
    #[error("ref {0:?} points at an element that is no longer in the page: take a new snapshot")]
    StaleRef(String),
    /// The element exists but cannot be acted on (not rendered, not focusable, ...).
    #[error("cannot {action} {target}: {reason}")]
    NotInteractable {
        action: &'static str,
        target: String,
        reason: String,
    },
    /// Script code threw.
    #[error("JavaScript exception: {0}")]
    JavaScript(String),
    /// Reading or writing a file (a screenshot, a script).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl BrowserError {
    /// Errors in what the user wrote (exit code 2 in the CLI), as opposed to what happened.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BrowserError::InvalidUrl { .. } | BrowserError::InvalidSelector { .. }
        )
    }

    pub(crate) fn protocol(e: impl std::fmt::Display) -> Self {
        BrowserError::Protocol(e.to_string())
    }
}

pub type Result<T, E = BrowserError> = std::result::Result<T, E>;

/// `5 s`, `1.5 s`, `250 ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn missing_chromium_says_how_to_install() {
        let e = BrowserError::ChromiumNotFound {
            detail: "nothing on PATH".into(),
        };
        assert!(e.to_string().contains("apt-get install -y chromium"), "{e}");
    }
}
