//! Processes by pid and process group, read from `/proc`: what identifies a process across pid
//! reuse (its start time and the boot), whether a group still has live members, and stopping a
//! whole group (SIGTERM, a grace period, SIGKILL).

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Who a pid was: the pid, its start time (clock ticks after boot) and the boot it ran in.
/// A pid with the same identity is the same process; a reused pid has a later start time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcIdentity {
    pub pid: i32,
    pub start: u64,
    pub boot: String,
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    pub start: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, pgrp field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This boot's id (changes on every reboot), or "" where the kernel does not say.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The identity of a live (not zombie) process.
pub fn identity(pid: i32) -> Option<ProcIdentity> {
    let st = stat(pid).filter(|s| s.state != 'Z')?;
    Some(ProcIdentity {
        pid,
        start: st.start,
        boot: boot_id(),
    })
}

/// Live (not zombie) members of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

/// Signals group `pgid`; a group that no longer exists is not an error.
pub fn signal_group(pgid: i32, sig: Signal) {
    if pgid <= 1 {
        return; // never the whole session or every process
    }
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, "cannot send {sig} to process group: {e}"),
    }
}

/// Stops every process of group `pgid`: SIGTERM, then up to `grace` for them to go, then
/// SIGKILL. `reap` is called while waiting so that the supervisor's own child (the leader)
/// does not linger as a zombie. Returns true when SIGKILL was needed.
pub async fn stop_group(pgid: i32, grace: Duration, mut reap: impl FnMut()) -> bool {
    signal_group(pgid, Signal::SIGCONT); // a stopped (SIGSTOP) process cannot act on SIGTERM
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        reap();
        if group_members(pgid).is_empty() {
            return false;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
    // SIGKILL cannot be caught; give the kernel a moment to tear the processes down.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        reap();
        if group_members(pgid).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                pgrp: 4242,
                start: 987654
            })
        );
        for bad in ["", "12 (x", "12 (x) S 1", "12 (x) S 1 notanumber 3"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_has_an_identity() {
        let me = identity(std::process::id() as i32).unwrap();
        assert!(me.start > 0);
        assert_eq!(identity(std::process::id() as i32), Some(me));
        assert!(!boot_id().is_empty());
    }
}
