//! The terminal as an approver: when a tool's decision is `ask` and stdin is a terminal, the
//! user is asked on stderr: `allow shell "make test"? [y]es / [n]o / [a]lways in this
//! conversation`.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use zocalo_agent::{Approval, ApprovalRequest, Approver};

struct Terminal {
    /// One question at a time, even when tool calls run side by side.
    asking: tokio::sync::Mutex<()>,
}

/// The terminal approver, or None when stdin is no terminal (then `ask` means deny unless
/// `--allow` / `--yes`).
pub fn terminal() -> Option<Arc<dyn Approver>> {
    std::io::stdin().is_terminal().then(|| {
        Arc::new(Terminal {
            asking: tokio::sync::Mutex::new(()),
        }) as Arc<dyn Approver>
    })
}

/// What the call would do, on one line: a shell command as typed, else the arguments.
fn summary(r: &ApprovalRequest) -> String {
    let text = match r.arguments.get("command").and_then(|c| c.as_str()) {
        Some(cmd) => format!("{cmd:?}"),
        None => r.arguments.to_string(),
    };
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(199).collect::<String>())
    } else {
        text
    }
}

#[async_trait::async_trait]
impl Approver for Terminal {
    async fn approve(&self, request: &ApprovalRequest) -> Approval {
        let _one = self.asking.lock().await;
        let prompt = format!(
            "\nallow {} {}? [y]es / [n]o / [a]lways in this conversation: ",
            request.tool,
            summary(request)
        );
        let answer = tokio::task::spawn_blocking(move || {
            let mut err = std::io::stderr();
            let _ = err.write_all(prompt.as_bytes());
            let _ = err.flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(line)) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => Approval::Allow,
                "a" | "always" => Approval::AlwaysInConversation,
                _ => Approval::Deny,
            },
            // The terminal went away: nobody approved.
            _ => Approval::Deny,
        }
    }
}
