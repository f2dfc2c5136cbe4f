//! REST under `/api` (bearer token required). One module per subsystem; each handler is
//! annotated for the OpenAPI document.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod conversations;
pub mod events;
pub mod jobs;
pub mod memory;
pub mod schedules;
pub mod services;
pub mod skills;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(conversations::router())
        .merge(memory::router())
        .merge(skills::router())
        .merge(schedules::router())
        .merge(jobs::router())
        .merge(events::router())
        .merge(agents::router())
        .merge(services::router())
        .merge(audit::router())
        .merge(approvals::router())
}

/// Clamp a user-given list limit into `1..=max`, default `default`.
pub(crate) fn limit(given: Option<i64>, default: i64, max: i64) -> i64 {
    given.unwrap_or(default).clamp(1, max)
}
