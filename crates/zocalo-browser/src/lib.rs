//! zocalo-browser: headless Chromium over the DevTools protocol (chromiumoxide).
//!
//! - [`process`]: find Chromium, start it headless with a fresh profile and no network of its
//!   own, and make sure none of its processes outlives us on any exit path.
//! - [`browser`]: a [`Browser`] and its [`Tab`]s: goto, click, type, wait_for, eval,
//!   screenshot, snapshot — each with a timeout and an error that says what it waited for.
//! - [`snapshot`]: interactive and landmark elements of the accessibility tree as
//!   `{ref, role, name}`, refs in document order.
//! - [`tools`]: `browser_*` tools for the ask loop, one tab per conversation, closed when idle.
//! - [`script`] / [`run`]: the JSON step scripts of `zocalo browser run` and their reports.
//!
//! ```no_run
//! # async fn demo() -> zocalo_browser::Result<()> {
//! use std::time::Duration;
//! use zocalo_browser::{Browser, LaunchOptions, Target};
//! let browser = Browser::launch(&LaunchOptions::default()).await?;
//! let mut tab = browser.new_tab().await?;
//! tab.goto("http://127.0.0.1:8080/", Duration::from_secs(5)).await?;
//! let snap = tab.snapshot().await?;
//! tab.click(&Target::Ref(snap.elements[0].reference.clone()), Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

pub mod browser;
pub mod error;
pub mod process;
pub mod run;
pub mod script;
pub mod snapshot;
pub mod tools;

pub use browser::{
    validate_url, Browser, Navigated, Tab, Target, TypeOptions, WaitCondition, WaitState,
};
pub use error::{BrowserError, Result, INSTALL_HINT};
pub use process::{find_chromium, LaunchOptions};
pub use run::{png_size, run_script, RunReport, StepReport};
pub use script::{parse_script, Action, Script, ScriptError, Step, DEFAULT_STEP_TIMEOUT};
pub use snapshot::{Snapshot, SnapshotElement};
pub use tools::{Sessions, ToolsConfig};
