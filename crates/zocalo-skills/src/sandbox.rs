//! The skill-script launcher: restrict this process's file-system writes with Landlock, then
//! `exec` the script's interpreter, which inherits the restriction (as do its children).
//!
//! Landlock applies to the calling thread, so the launcher must run while the process has a
//! single thread: the `zocalo` binary handles `zocalo __skill-sandbox ...` at the very top of
//! `main()`, before the async runtime starts; `src/bin/zocalo-skill-sandbox.rs` is the same
//! launcher as a standalone program (the crate's tests use it). No `unsafe` (no `pre_exec`):
//! the restriction is applied to the launcher itself and kept across `exec`.
//!
//! ```text
//! zocalo __skill-sandbox [--status FILE] --write DIR [--write DIR...] -- PROG ARGS...
//! ```
//!
//! Policy: read and execute everywhere (scripts need interpreters and libraries); create,
//! write, remove, rename, truncate, link and device-ioctl only under each `--write DIR`, plus
//! writes to `/dev/null`; with Landlock ABI 6+ also no signals to processes outside the
//! sandbox and no connecting to abstract UNIX sockets created outside it. `no_new_privs` is
//! set, so set-uid programs do not gain privileges.
//!
//! Best effort: on a kernel without Landlock the program still runs, unrestricted, and the
//! status says `none`. A ruleset that cannot be built for another reason (a bad `--write`
//! directory, a failing system call) refuses to run the program (exit 126): never silently
//! weaker than asked.
//!
//! `--status FILE` is opened before the restriction and written after it, so the runner
//! learns what was enforced from a file the script itself cannot open for writing:
//! `sandbox=landlock-v7` or `sandbox=none`, then `reason=...` when unrestricted, then
//! `exec_errno=N` when the program could not be started.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The hidden subcommand (`argv[1]`) that selects the launcher.
pub const SUBCOMMAND: &str = "__skill-sandbox";

/// The Landlock ABI whose rights we ask for (the newest one this policy was tested with).
#[cfg(target_os = "linux")]
const ABI: landlock::ABI = landlock::ABI::V7;

/// What the launcher was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Directories the program may write under.
    pub write: Vec<PathBuf>,
    /// Where to report what was enforced.
    pub status: Option<PathBuf>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// What was enforced on this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// `landlock-vN` (the Landlock ABI actually in force, at most the one asked for) or `none`.
    pub label: String,
    /// Why nothing is enforced, when `label` is `none`.
    pub reason: Option<String>,
}

/// Parse the launcher's arguments (everything after the subcommand).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    let mut args = args.into_iter();
    let mut write = Vec::new();
    let mut status = None;
    loop {
        let Some(a) = args.next() else {
            return Err("missing `-- PROGRAM [ARGS...]`".into());
        };
        match a.to_str() {
            Some("--") => break,
            Some("--write") => match args.next() {
                Some(dir) if !dir.is_empty() => write.push(PathBuf::from(dir)),
                _ => return Err("--write needs a directory".into()),
            },
            Some("--status") => match args.next() {
                Some(file) if !file.is_empty() => status = Some(PathBuf::from(file)),
                _ => return Err("--status needs a file".into()),
            },
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    let program = match args.next() {
        Some(p) if !p.is_empty() => p,
        _ => return Err("missing the program to run after `--`".into()),
    };
    if write.is_empty() {
        return Err("give at least one --write DIR (the script's scratch directory)".into());
    }
    for dir in &write {
        if !dir.is_absolute() || !dir.is_dir() {
            return Err(format!(
                "--write {}: not an absolute path to a directory",
                dir.display()
            ));
        }
    }
    Ok(Request {
        write,
        status,
        program,
        args: args.collect(),
    })
}

/// The launcher's entry point: `args` are the arguments after [`SUBCOMMAND`]. Only returns
/// when the program could not be started (2: bad arguments, 126: the sandbox could not be
/// set up, 127: the program could not be executed).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let req = match parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zocalo {SUBCOMMAND}: {e}\nusage: zocalo {SUBCOMMAND} [--status FILE] --write DIR [--write DIR...] -- PROGRAM [ARGS...]");
            return ExitCode::from(2);
        }
    };
    // Opened before the restriction: afterwards the script cannot open it for writing.
    let mut status = match req.status.as_ref().map(std::fs::File::create).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("zocalo {SUBCOMMAND}: cannot write the status file: {e}");
            return ExitCode::from(126);
        }
    };
    let enforced = match restrict(&req.write) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "zocalo: refusing to run {:?}: cannot set up the Landlock sandbox: {e}",
                req.program
            );
            if let Some(f) = status.as_mut() {
                let _ = writeln!(f, "sandbox=none\nreason=error: {e}");
            }
            return ExitCode::from(126);
        }
    };
    if let Some(f) = status.as_mut() {
        let mut text = format!("sandbox={}\n", enforced.label);
        if let Some(r) = &enforced.reason {
            text.push_str(&format!("reason={}\n", r.replace('\n', " ")));
        }
        let _ = f.write_all(text.as_bytes());
    }
    let err = exec(&req.program, &req.args);
    // Still here: exec failed. The status file is still open (close-on-exec never fired).
    if let Some(f) = status.as_mut() {
        let _ = writeln!(f, "exec_errno={}", err.raw_os_error().unwrap_or(0));
    }
    eprintln!("zocalo: cannot start {:?}: {err}", req.program);
    ExitCode::from(127)
}

#[cfg(unix)]
fn exec(program: &OsStr, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(program).args(args).exec()
}

#[cfg(not(unix))]
fn exec(_program: &OsStr, _args: &[OsString]) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "exec needs a Unix system")
}

/// Restrict this thread (and what it will `exec`) to writing under `write` and `/dev/null`.
#[cfg(target_os = "linux")]
pub fn restrict(write: &[PathBuf]) -> Result<Enforced, String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, LandlockStatus, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    };
    let all = AccessFs::from_all(ABI);
    let read = AccessFs::from_read(ABI);
    let root = PathFd::new("/").map_err(|e| e.to_string())?;
    let mut writable = Vec::with_capacity(write.len());
    for dir in write {
        writable.push(PathBeneath::new(
            PathFd::new(dir).map_err(|e| format!("{}: {e}", dir.display()))?,
            all,
        ));
    }
    let status = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.scope(Scope::from_all(ABI)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rule(PathBeneath::new(root, read)))
        .and_then(|r| r.add_rules(writable.into_iter().map(Ok::<_, landlock::RulesetError>)))
        // Files get only the file rights of `all` (write, truncate, ioctl).
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], all)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => Some(effective_abi.min(ABI)),
        _ => None,
    };
    Ok(match (status.ruleset, abi) {
        (RulesetStatus::NotEnforced, _) | (_, None) => Enforced {
            label: "none".into(),
            reason: Some(match status.landlock {
                LandlockStatus::NotEnabled => {
                    "Landlock is built into this kernel but not enabled (boot with lsm=...,landlock)"
                        .into()
                }
                LandlockStatus::NotImplemented => {
                    "this kernel has no Landlock (Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK)"
                        .into()
                }
                _ => "Landlock did not enforce the ruleset".into(),
            }),
        },
        (_, Some(abi)) => Enforced {
            label: format!("landlock-v{}", abi as i32),
            reason: None,
        },
    })
}

#[cfg(not(target_os = "linux"))]
pub fn restrict(_write: &[PathBuf]) -> Result<Enforced, String> {
    Ok(Enforced {
        label: "none".into(),
        reason: Some("Landlock exists only on Linux".into()),
    })
}

/// Read a status file written by [`main`]: (label, reason, errno of a failed exec).
pub(crate) fn read_status(text: &str) -> (String, Option<String>, Option<i32>) {
    let mut label = None;
    let mut reason = None;
    let mut errno = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("sandbox=") {
            label = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("reason=") {
            reason = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("exec_errno=") {
            errno = v.parse().ok();
        }
    }
    (
        label.unwrap_or_else(|| "none".into()),
        reason.or_else(|| {
            (!text.contains("sandbox=")).then(|| "the sandbox launcher reported nothing".into())
        }),
        errno,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let tmp = std::env::temp_dir();
        let t = tmp.to_str().unwrap();
        let r = parse(os(&[
            "--write", t, "--status", "/x/s", "--", "python3", "-c", "--",
        ]))
        .unwrap();
        assert_eq!(r.write, vec![tmp.clone()]);
        assert_eq!(r.status.as_deref(), Some(std::path::Path::new("/x/s")));
        assert_eq!(r.program, "python3");
        assert_eq!(r.args, os(&["-c", "--"]));
        for bad in [
            &["--", "true"][..],
            &["--write", t][..],
            &["--write", t, "--"][..],
            &["--write"][..],
            &["--write", "relative", "--", "true"][..],
            &["--write", "/no/such/dir", "--", "true"][..],
            &["--bogus", "--", "true"][..],
        ] {
            assert!(parse(os(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            read_status("sandbox=landlock-v7\n"),
            ("landlock-v7".into(), None, None)
        );
        assert_eq!(
            read_status("sandbox=none\nreason=old kernel\nexec_errno=2\n"),
            ("none".into(), Some("old kernel".into()), Some(2))
        );
        let (label, reason, _) = read_status("");
        assert_eq!(label, "none");
        assert!(reason.is_some());
    }
}
