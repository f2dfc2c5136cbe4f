//! `/api/events`: an SSE stream of state changes, found by polling the database once a
//! second (cheap: a few indexed reads). Events:
//!
//! - `stats`: jobs per state, when the counts change;
//! - `job`: {id, kind, state, previous} when one of the latest jobs changes state or appears;
//! - `schedule`: {name, paused, next_run_at} when an automation is added, paused, resumed,
//!   removed (`removed: true`) or advances;
//! - `run`: {schedule, run} when an automation fires (its newest run);
//! - `service`: {name, state, previous, pid, restarts, desired} when a supervised service
//!   appears or changes state, pid or restart count; {name, removed: true} when it goes.
//!
//! Polling works the same on SQLite and Postgres and across processes (a worker on another
//! machine finishing a job shows up here).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use zocalo_pool::{JobQueue, SqlQueue};
use zocalo_scheduler::{fmt_utc, Scheduler};

use crate::error::Query;
use crate::openai::async_stream;
use crate::AppState;

/// Jobs watched: the newest this many.
const WATCHED_JOBS: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Poll interval in milliseconds (200..=60000, default 1000).
    pub interval_ms: Option<u64>,
}

#[derive(Default)]
struct Seen {
    stats: Option<Value>,
    jobs: HashMap<String, String>,
    schedules: HashMap<String, (bool, Option<String>)>,
    services: HashMap<String, (String, Option<i32>, u32, bool)>,
    first: bool,
}

fn ev(name: &str, v: Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(v.to_string()))
}

/// What changed since `seen`, as events (the first poll only sets the baseline and reports
/// the stats).
async fn poll(state: &AppState, seen: &mut Seen) -> Vec<Result<Event, Infallible>> {
    let mut out = Vec::new();
    let queue = SqlQueue::new(state.store().clone());
    if let Ok(stats) = queue.stats().await {
        let v = json!(stats);
        if seen.stats.as_ref() != Some(&v) {
            out.push(ev("stats", v.clone()));
            seen.stats = Some(v);
        }
    }
    if let Ok(jobs) = queue.list(None, WATCHED_JOBS).await {
        for j in jobs {
            let now = j.state.as_str().to_owned();
            let before = seen.jobs.insert(j.id.clone(), now.clone());
            if !seen.first && before.as_deref() != Some(now.as_str()) {
                out.push(ev(
                    "job",
                    json!({"id": j.id, "kind": j.kind, "state": now, "previous": before}),
                ));
            }
        }
    }
    let sched = Scheduler::new(state.store().clone());
    if let Ok(list) = sched.list().await {
        let mut present = HashMap::new();
        for a in list {
            let now = (a.paused, a.next_run_at.map(fmt_utc));
            let before = seen.schedules.get(&a.name).cloned();
            if !seen.first && before.as_ref() != Some(&now) {
                out.push(ev(
                    "schedule",
                    json!({"name": a.name, "paused": now.0, "next_run_at": now.1}),
                ));
                // The next occurrence moved on while active: it fired.
                if let Some((false, Some(_))) = &before {
                    if !a.paused {
                        if let Ok(runs) = sched.runs(&a.name, 1).await {
                            if let Some(r) = runs.first() {
                                out.push(ev("run", json!({"schedule": a.name, "run": r})));
                            }
                        }
                    }
                }
            }
            present.insert(a.name, now);
        }
        if !seen.first {
            for name in seen.schedules.keys() {
                if !present.contains_key(name) {
                    out.push(ev("schedule", json!({"name": name, "removed": true})));
                }
            }
        }
        seen.schedules = present;
    }
    let services = zocalo_services::ServiceStore::new(state.store().clone());
    if let Ok(rows) = services.list().await {
        let mut present = HashMap::new();
        for row in rows {
            let rt = &row.runtime;
            let now = (
                rt.state.as_str().to_owned(),
                rt.pid,
                rt.restarts,
                row.want_running,
            );
            let before = seen.services.get(&row.spec.name);
            if !seen.first && before != Some(&now) {
                out.push(ev(
                    "service",
                    json!({
                        "name": row.spec.name,
                        "state": now.0,
                        "previous": before.map(|b| b.0.clone()),
                        "pid": now.1,
                        "restarts": now.2,
                        "desired": if now.3 { "running" } else { "stopped" },
                    }),
                ));
            }
            present.insert(row.spec.name, now);
        }
        if !seen.first {
            for name in seen.services.keys() {
                if !present.contains_key(name) {
                    out.push(ev("service", json!({"name": name, "removed": true})));
                }
            }
        }
        seen.services = present;
    }
    seen.first = false;
    out
}

/// Server-sent events of job, run, schedule and service state changes.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream: `stats`, `job`, `schedule`, `run`, `service` events"), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> impl IntoResponse {
    let every = Duration::from_millis(q.interval_ms.unwrap_or(1000).clamp(200, 60_000));
    let stopping = state.background().stopping();
    let stream = async_stream(move |tx| async move {
        let mut seen = Seen {
            first: true,
            ..Seen::default()
        };
        // No one to send to (the stream was refused past `max_streams`, or its client left
        // at once): skip the poll, which is most of what a stream costs.
        let hello = ev("hello", json!({"time": fmt_utc(chrono::Utc::now())}));
        if tx.send(hello).await.is_err() {
            return;
        }
        loop {
            // The poll waits for the database, behind every other stream's when many are
            // open: a client that goes meanwhile ends its task at once, not after its poll.
            let events = tokio::select! {
                events = poll(&state, &mut seen) => events,
                _ = tx.closed() => return,
                _ = stopping.cancelled() => return,
            };
            for e in events {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tx.closed() => return,
                // The server is stopping: end the stream so its connection can close.
                _ = stopping.cancelled() => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
