//! The `svc_services` table: definitions plus the last runtime state the supervisor wrote.
//! The same SQL runs on SQLite and PostgreSQL through [`with_pool!`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use zocalo_store::{with_pool, Store};

use crate::spec::{HealthCheck, RestartPolicy, ServiceSpec};
use crate::ServicesError;

/// Where a service is. `starting` lasts until the health check (if any) first passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Not running: never started, stopped by the user, or exited under its policy.
    Stopped,
    /// Its process runs; the health check has not passed yet.
    Starting,
    /// Its process runs (and the health check passed).
    Running,
    /// Its process runs, and the health check has failed repeatedly since it last passed.
    Unhealthy,
    /// It exited and waits out the backoff before the next restart.
    Backoff,
    /// It could not be started, or it kept crashing: given up until started again.
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Backoff => "backoff",
            ServiceState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stopped" => ServiceState::Stopped,
            "starting" => ServiceState::Starting,
            "running" => ServiceState::Running,
            "unhealthy" => ServiceState::Unhealthy,
            "backoff" => ServiceState::Backoff,
            "failed" => ServiceState::Failed,
            _ => return None,
        })
    }

    /// A process exists in this state.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            ServiceState::Starting | ServiceState::Running | ServiceState::Unhealthy
        )
    }
}

/// A stored service: its definition and what the supervisor last recorded about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRow {
    pub id: String,
    pub spec: ServiceSpec,
    /// What the user last asked for: `true` after start/restart, `false` after stop.
    pub want_running: bool,
    pub runtime: Runtime,
    pub created_at: DateTime<Utc>,
}

/// The runtime half of a row, written by the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    pub state: ServiceState,
    pub pid: Option<i32>,
    /// /proc start time of `pid` and the boot id: together with the pid, who it was.
    pub pid_start: Option<u64>,
    pub pid_boot: Option<String>,
    pub restarts: u32,
    /// How the last process ended ("exited with code 1", "killed by SIGKILL").
    pub last_exit: Option<String>,
    /// Why the service is `failed` (the OS error of a command that cannot start, a crash loop).
    pub error: Option<String>,
    /// "passing" / "failing" once a check ran.
    pub health_status: Option<String>,
    pub health_error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            state: ServiceState::Stopped,
            pid: None,
            pid_start: None,
            pid_boot: None,
            restarts: 0,
            last_exit: None,
            error: None,
            health_status: None,
            health_error: None,
            started_at: None,
        }
    }
}

#[derive(sqlx::FromRow)]
struct Raw {
    id: String,
    name: String,
    command: String,
    restart: String,
    health: Option<String>,
    env: String,
    cwd: Option<String>,
    desired: String,
    state: String,
    pid: Option<i64>,
    pid_start: Option<i64>,
    pid_boot: Option<String>,
    restarts: i64,
    last_exit: Option<String>,
    error: Option<String>,
    health_status: Option<String>,
    health_error: Option<String>,
    started_at: Option<i64>,
    created_at: i64,
}

const COLUMNS: &str = "id, name, command, restart, health, env, cwd, desired, state, pid, \
    pid_start, pid_boot, restarts, last_exit, error, health_status, health_error, started_at, \
    created_at";

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl Raw {
    fn into_row(self) -> Result<ServiceRow, ServicesError> {
        let corrupt = |reason: String| ServicesError::Corrupt {
            name: self.name.clone(),
            reason,
        };
        let restart: RestartPolicy = self
            .restart
            .parse()
            .map_err(|e: ServicesError| corrupt(e.to_string()))?;
        let health: Option<HealthCheck> = self
            .health
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(format!("health: {e}")))?;
        let env: BTreeMap<String, String> =
            serde_json::from_str(&self.env).map_err(|e| corrupt(format!("env: {e}")))?;
        let state = ServiceState::parse(&self.state)
            .ok_or_else(|| corrupt(format!("unknown state `{}`", self.state)))?;
        Ok(ServiceRow {
            id: self.id,
            spec: ServiceSpec {
                name: self.name,
                command: self.command,
                restart,
                health,
                env,
                cwd: self.cwd.map(PathBuf::from),
            },
            want_running: self.desired == "running",
            runtime: Runtime {
                state,
                pid: self.pid.and_then(|p| i32::try_from(p).ok()),
                pid_start: self.pid_start.and_then(|p| u64::try_from(p).ok()),
                pid_boot: self.pid_boot,
                restarts: u32::try_from(self.restarts).unwrap_or(u32::MAX),
                last_exit: self.last_exit,
                error: self.error,
                health_status: self.health_status,
                health_error: self.health_error,
                started_at: self.started_at.map(from_ms),
            },
            created_at: from_ms(self.created_at),
        })
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// The services table on one store.
#[derive(Clone, Debug)]
pub struct ServiceStore {
    store: Store,
}

impl ServiceStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Validates and stores a new definition (stopped, not wanted running).
    pub async fn insert(&self, spec: &ServiceSpec) -> Result<ServiceRow, ServicesError> {
        spec.validate()?;
        let id = zocalo_core::ids::new_prefixed("svc");
        let now = Utc::now();
        let health = spec
            .health
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ServicesError::Invalid(e.to_string()))?;
        let env =
            serde_json::to_string(&spec.env).map_err(|e| ServicesError::Invalid(e.to_string()))?;
        let cwd = spec.cwd.as_ref().map(|p| p.to_string_lossy().into_owned());
        let sql = "INSERT INTO svc_services (id, name, command, restart, health, env, cwd, \
                   desired, state, restarts, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, 'stopped', 'stopped', 0, $8, $8)";
        let r = with_pool!(self.store.pool(), |p| sqlx::query(sql)
            .bind(&id)
            .bind(&spec.name)
            .bind(&spec.command)
            .bind(spec.restart.as_str())
            .bind(&health)
            .bind(&env)
            .bind(&cwd)
            .bind(ms(now))
            .execute(p)
            .await
            .map(drop));
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(ServicesError::Duplicate(spec.name.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        self.get(&spec.name).await
    }

    pub async fn find(&self, name: &str) -> Result<Option<ServiceRow>, ServicesError> {
        let sql = format!("SELECT {COLUMNS} FROM svc_services WHERE name = $1");
        let raw: Option<Raw> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(p)
            .await)?;
        raw.map(Raw::into_row).transpose()
    }

    /// The row, or [`ServicesError::NotFound`].
    pub async fn get(&self, name: &str) -> Result<ServiceRow, ServicesError> {
        self.find(name)
            .await?
            .ok_or_else(|| ServicesError::NotFound(name.to_owned()))
    }

    /// Every service, by name.
    pub async fn list(&self) -> Result<Vec<ServiceRow>, ServicesError> {
        let sql = format!("SELECT {COLUMNS} FROM svc_services ORDER BY name");
        let raws: Vec<Raw> = with_pool!(self.store.pool(), |p| sqlx::query_as(&sql)
            .fetch_all(p)
            .await)?;
        raws.into_iter().map(Raw::into_row).collect()
    }

    /// Records what the user asked for (start: true, stop: false).
    pub async fn set_wanted(&self, name: &str, running: bool) -> Result<(), ServicesError> {
        let sql = "UPDATE svc_services SET desired = $1, updated_at = $2 WHERE name = $3";
        let desired = if running { "running" } else { "stopped" };
        let n = with_pool!(self.store.pool(), |p| sqlx::query(sql)
            .bind(desired)
            .bind(ms(Utc::now()))
            .bind(name)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(ServicesError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Writes the runtime half of the row.
    pub async fn save_runtime(&self, name: &str, rt: &Runtime) -> Result<(), ServicesError> {
        let sql = "UPDATE svc_services SET state = $1, pid = $2, pid_start = $3, pid_boot = $4, \
                   restarts = $5, last_exit = $6, error = $7, health_status = $8, \
                   health_error = $9, started_at = $10, updated_at = $11 WHERE name = $12";
        with_pool!(self.store.pool(), |p| sqlx::query(sql)
            .bind(rt.state.as_str())
            .bind(rt.pid.map(i64::from))
            .bind(rt.pid_start.and_then(|v| i64::try_from(v).ok()))
            .bind(&rt.pid_boot)
            .bind(i64::from(rt.restarts))
            .bind(&rt.last_exit)
            .bind(&rt.error)
            .bind(&rt.health_status)
            .bind(&rt.health_error)
            .bind(rt.started_at.map(ms))
            .bind(ms(Utc::now()))
            .bind(name)
            .execute(p)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Deletes the row; false when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, ServicesError> {
        let sql = "DELETE FROM svc_services WHERE name = $1";
        let n = with_pool!(self.store.pool(), |p| sqlx::query(sql)
            .bind(name)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
