//! zocalo-skills: Agent Skills (agentskills.io) for zocalo.
//!
//! - [`validate`]: `SKILL.md` parsing and every rule of the specification; errors name the
//!   field, recommendations are warnings; sizes capped before YAML is parsed.
//! - [`yaml`]: a bounded YAML reader (depth, node count and alias expansion capped).
//! - [`registry`]: discovery over ordered roots, name conflicts, hot reload with `notify`.
//! - [`tools`]: progressive disclosure in the ask loop: the prompt index and the
//!   `skill_open` / `skill_read` / `skill_run` tools.
//! - [`runner`]: scripts as child processes in their own process group, clean environment,
//!   time limit, capped output; seed-style Python `run()` through a shim.
//! - [`sandbox`]: the launcher that restricts a script's writes to its scratch directory with
//!   Landlock before `exec`ing it (`zocalo __skill-sandbox`).
//! - [`paths`]: keeping model-given paths inside the skill directory.
//! - [`install`]: copying a validated skill into the data home.

pub mod error;
pub mod install;
pub mod paths;
pub mod registry;
pub mod runner;
pub mod sandbox;
pub mod tools;
pub mod validate;
pub mod yaml;

pub use error::SkillError;
pub use install::{install, Installed};
pub use registry::{default_roots, Skills, Snapshot};
pub use runner::{run_script, RunLimits, RunOutput};
pub use tools::{prompt_index, skill_tools};
pub use validate::{check_bytes, check_dir, Checked, Issue, Report, Skill};
