//! zocalo-services: supervise long-running processes, as pm2 or systemd would.
//!
//! - [`spec`]: what a service is, [`ServiceSpec`] (name, command, [`RestartPolicy`],
//!   [`HealthCheck`], env, cwd), and the validation of everything a user types.
//! - [`store`]: the `svc_services` table ([`ServiceStore`]): definitions, what the user wants
//!   (running or stopped) and the last runtime state, on SQLite or PostgreSQL.
//! - [`supervisor`]: the [`Supervisor`] handle (add, start, stop, restart, rm, status, list,
//!   logs, resume, shutdown): a process group per service, restart policies with exponential
//!   backoff, crash-loop detection, health checks, SIGTERM-then-SIGKILL stops.
//! - [`logs`]: `logs/NAME.log`, timestamped lines rotated by size; tail and follow.
//! - [`procs`]: `/proc` reading: process identity (pid + start time + boot), group members.
//! - [`ServicesError`]: what fails; [`ServicesError::is_usage`] tells bad input apart.

pub mod error;
mod health;
pub mod logs;
pub mod procs;
pub mod spec;
pub mod store;
pub mod supervisor;

pub use error::ServicesError;
pub use spec::{parse_env_pair, HealthCheck, RestartPolicy, ServiceSpec};
pub use store::{Runtime, ServiceRow, ServiceState, ServiceStore};
pub use supervisor::{HealthStatus, ResumeReport, ServiceStatus, Supervisor, SupervisorConfig};
