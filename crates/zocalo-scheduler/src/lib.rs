//! zocalo-scheduler: automations that fire on RFC 5545 recurrences in IANA time zones.
//!
//! - [`rule`]: the RRULE text (plus EXDATE / RDATE lines), parsed and checked against the RFC.
//! - [`zone`]: zone names (with suggestions), local start times, and wall time to instants
//!   (a DST gap takes the offset before it, an overlap its first instance).
//! - [`recur`]: [`Schedule`], the expansion into sorted, unique UTC instants (the `rrule`
//!   crate for DAILY and longer, `subdaily` for HOURLY, MINUTELY, SECONDLY).
//! - [`automations`]: the [`Scheduler`] on a store (add, list, pause, resume, rm, runs) and
//!   [`Scheduler::tick`], which fires each due occurrence exactly once into the compute pool;
//!   [`run_ticker`], the loop the daemon runs. The SQL is in `src/sql/`.
//! - [`SchedulerError`]: what fails; [`SchedulerError::is_usage`] tells bad input apart.

pub mod automations;
pub mod error;
pub mod recur;
pub mod rule;
mod subdaily;
pub mod tools;
pub mod zone;

pub use automations::{
    run_ticker, Action, Automation, Fired, Misfire, NewAutomation, Run, Scheduler, TickReport,
};
pub use error::SchedulerError;
pub use recur::{fmt_utc, Occurrences, Schedule};
