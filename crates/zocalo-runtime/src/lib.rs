//! zocalo-runtime: the one composition root. It turns the data home, config.toml and the
//! environment into running subsystems, builds each shared resource once per process (the
//! store, the embedder, the memory, the skills and their watcher, the browser, the MCP
//! clients, the providers) and is what the CLI, the server, MCP and the Python package call.
//!
//! - [`Runtime`]: load or [`Runtime::open`] one; [`Runtime::ask`], [`Runtime::memory`],
//!   [`Runtime::store`] (conversations, automations and the pool live there), ...
//! - [`ask`]: one ask, with caller-chosen conversation keys; [`ask_json`]: its JSON shapes.
//! - [`automations`]: creating automations, and whether a worker will run their jobs.
//! - [`browser`]: headless Chromium for one command (run a script, screenshot, snapshot).
//! - [`channels`]: Telegram, email and webhooks answered by the ask loop; `notify`; the
//!   automations' deliveries.
//! - [`keys`]: where each provider's key comes from; a vendor's models with it.
//! - [`jobs`]: the pool's job kinds (ask, skill) and the workers that run them.
//! - [`daemon`]: the computer itself: scheduler ticker, local worker, services supervisor,
//!   the socket the CLI talks to.
//! - [`doctor`]: what zocalo needs, checked, with how to fix it.
//! - [`backend`]: the HTTP server on this runtime.
//! - [`logging`]: logs to stderr with every known secret scrubbed.
//! - [`mcp`]: zocalo's tools served over MCP.
//! - [`agents`]: sub-agent batches, here or on the pool.
//! - [`memory`]: memory settings and the parsers of the files users hand in.
//! - [`models`]: the models each provider serves, and the local ones installed.
//! - [`ops`]: backup, restore, export and import of the home and its database (zocalo-ops).
//! - [`serve`]: `zocalo serve`, the HTTP server and the daemon in one process.
//! - [`service_tools`]: `services_*`, the model's tools over the daemon's services.
//! - [`signals`]: when a long-running front end should stop.
//! - [`errors`]: one classification of errors (bad input or failure) for every front end.
//!
//! ```no_run
//! use zocalo_runtime::{Ask, Options, Runtime};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! // The same data home and database as the `zocalo` CLI.
//! let rt = Runtime::open(Options::default()).await?;
//! let answer = rt
//!     .ask(
//!         Ask {
//!             conv_key: Some("discord:42".into()),
//!             ..Ask::new("What is the capital of France?")
//!         },
//!         &mut |_event| {},
//!     )
//!     .await?;
//! println!("{}", answer.text);
//!
//! let memory = rt.memory().await?;
//! memory
//!     .memorize(zocalo_memory::NewMemory::new("user:ada", "The boat is named Seraphina."))
//!     .await?;
//! let hits = memory.recall("what is the boat called", &["user:ada"], 5).await?;
//! assert!(!hits.is_empty());
//! # Ok(())
//! # }
//! ```

pub mod agents;
pub mod ask;
pub mod ask_json;
pub mod automations;
pub mod backend;
pub mod browser;
pub mod channels;
pub mod daemon;
pub mod doctor;
pub mod errors;
pub mod jobs;
pub mod keys;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod models;
pub mod ops;
mod runtime;
pub mod serve;
pub mod service_tools;
pub mod signals;

pub use ask::Ask;
pub use errors::{is_usage, usage, UsageError};
pub use runtime::{parse_conversation, LoadCounts, ModelChoice, Options, Runtime};
