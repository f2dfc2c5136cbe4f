//! Discovery: the skill roots, scanned in order, with hot reload.
//!
//! A root holds one directory per skill (`ROOT/NAME/SKILL.md`). Roots are scanned in order;
//! when two skills share a name the first one wins and the other is reported as shadowed. A
//! skill that cannot be loaded (see [`crate::Checked`]) is skipped with a warning; one that
//! only bends a rule the spec's client guide says to tolerate loads with a warning. Neither
//! ever breaks the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::validate::{check_dir, Skill};
use crate::SkillError;

/// Most directories looked at in one root (a runaway tree costs a bounded scan).
pub const MAX_DIRS_PER_ROOT: usize = 2000;

/// The discovery order: `$ZOCALO_HOME/skills`, `~/.agents/skills`, `./.agents/skills`, then
/// `extra` (the `--skills-dir` options) in the order given. Duplicates are dropped.
pub fn default_roots(data_home: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots = vec![data_home.join("skills")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        roots.push(PathBuf::from(home).join(".agents/skills"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd.join(".agents/skills"));
    }
    roots.extend(extra.iter().cloned());
    let mut seen = Vec::new();
    roots.retain(|r| {
        let key = r.canonicalize().unwrap_or_else(|_| r.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    roots
}

/// What one scan found.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub skills: BTreeMap<String, Arc<Skill>>,
    /// Skipped invalid skills and shadowed names, in scan order.
    pub warnings: Vec<String>,
}

/// Scan `roots` in order.
pub fn scan(roots: &[PathBuf]) -> Snapshot {
    let mut snap = Snapshot::default();
    for root in roots {
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                snap.warnings
                    .push(format!("cannot read skills root {}: {e}", root.display()));
                continue;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        if dirs.len() > MAX_DIRS_PER_ROOT {
            snap.warnings.push(format!(
                "{} has more than {MAX_DIRS_PER_ROOT} directories; only the first are scanned",
                root.display()
            ));
            dirs.truncate(MAX_DIRS_PER_ROOT);
        }
        for dir in dirs {
            if !dir.join("SKILL.md").is_file() && !dir.join("skill.md").is_file() {
                continue; // not a skill directory
            }
            let checked = check_dir(&dir);
            let Some(skill) = checked.skill else {
                let why: Vec<String> = checked
                    .report
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                snap.warnings.push(format!(
                    "skipped invalid skill {}: {}",
                    dir.display(),
                    why.join("; ")
                ));
                continue;
            };
            if !checked.report.valid {
                let why: Vec<String> = checked
                    .report
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                snap.warnings.push(format!(
                    "loaded {} although it breaks the spec: {}",
                    dir.display(),
                    why.join("; ")
                ));
            }
            match snap.skills.get(&skill.name) {
                Some(first) => snap.warnings.push(format!(
                    "skill {:?} in {} is shadowed by the one in {} (earlier in the discovery order)",
                    skill.name,
                    skill.dir.display(),
                    first.dir.display()
                )),
                None => {
                    snap.skills.insert(skill.name.clone(), Arc::new(skill));
                }
            }
        }
    }
    snap
}

struct Inner {
    roots: Vec<PathBuf>,
    state: RwLock<Arc<Snapshot>>,
    reloads: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn rescan(&self) {
        let snap = Arc::new(scan(&self.roots));
        for w in &snap.warnings {
            tracing::warn!("{w}");
        }
        if let Ok(mut s) = self.state.write() {
            *s = snap;
        }
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The live set of skills. Cheap to clone; clones share the state and the watcher.
#[derive(Clone)]
pub struct Skills {
    inner: Arc<Inner>,
    watcher: Arc<Mutex<Option<notify::RecommendedWatcher>>>,
}

impl std::fmt::Debug for Skills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skills")
            .field("roots", &self.inner.roots)
            .field("skills", &self.names())
            .finish()
    }
}

impl Skills {
    /// Scan `roots` now (see [`default_roots`]).
    pub fn load(roots: Vec<PathBuf>) -> Self {
        let snap = Arc::new(scan(&roots));
        Self {
            inner: Arc::new(Inner {
                roots,
                state: RwLock::new(snap),
                reloads: 0.into(),
            }),
            watcher: Arc::new(Mutex::new(None)),
        }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.inner.roots
    }

    /// The current scan.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Valid skills, by name.
    pub fn list(&self) -> Vec<Arc<Skill>> {
        self.snapshot().skills.values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.snapshot().skills.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().skills.is_empty()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.snapshot().warnings.clone()
    }

    pub fn get(&self, name: &str) -> Result<Arc<Skill>, SkillError> {
        let snap = self.snapshot();
        snap.skills
            .get(name)
            .cloned()
            .ok_or_else(|| SkillError::NotFound {
                name: name.to_owned(),
                known: snap.skills.keys().cloned().collect(),
            })
    }

    /// Scan again now.
    pub fn reload(&self) {
        self.inner.rescan();
    }

    /// How many rescans have happened (reloads and hot reloads).
    pub fn reload_count(&self) -> u64 {
        self.inner.reloads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hot reload: watch the roots that exist and rescan shortly after anything under them
    /// changes (events are coalesced for 100 ms). Stops when the last clone is dropped. Roots
    /// created later are seen at the next start or [`Skills::reload`].
    pub fn watch(&self) -> Result<(), SkillError> {
        tracing::info!("zocalo-skills: watching the skills roots for changes");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if !ev.kind.is_access() {
                        let _ = tx.send(());
                    }
                }
            })?;
        for root in &self.inner.roots {
            if root.is_dir() {
                watcher.watch(root, RecursiveMode::Recursive)?;
            }
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("zocalo-skills-watch".into())
            .spawn(move || {
                // Ends when the watcher (and so the sender) is dropped.
                while rx.recv().is_ok() {
                    while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}
                    match weak.upgrade() {
                        Some(inner) => inner.rescan(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SkillError::io("zocalo-skills-watch thread", e))?;
        if let Ok(mut w) = self.watcher.lock() {
            *w = Some(watcher);
        }
        Ok(())
    }
}
