//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa).

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, openai};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zocalo",
        description = "zocalo serve: OpenAI-compatible /v1, REST /api, SSE events. Send `Authorization: Bearer TOKEN` (ZOCALO_SERVER_TOKEN or $ZOCALO_HOME/server.token) to /v1 and /api."
    ),
    paths(
        crate::healthz,
        openai::chat_completions,
        openai::models,
        openai::embeddings,
        api::conversations::list,
        api::conversations::show,
        api::conversations::remove,
        api::conversations::ask_new,
        api::conversations::ask_existing,
        api::memory::search,
        api::memory::add,
        api::memory::show,
        api::memory::forget,
        api::memory::stats,
        api::skills::list,
        api::skills::show,
        api::skills::run,
        api::schedules::list,
        api::schedules::create,
        api::schedules::show,
        api::schedules::remove,
        api::schedules::pause,
        api::schedules::resume,
        api::schedules::runs,
        api::schedules::preview,
        api::jobs::submit,
        api::jobs::list,
        api::jobs::show,
        api::jobs::cancel,
        api::jobs::stats,
        api::jobs::nodes,
        api::events::events,
        api::agents::list,
        api::agents::show,
        api::agents::spawn_all,
        api::agents::cancel,
        api::services::list,
        api::services::add,
        api::services::show,
        api::services::remove,
        api::services::start,
        api::services::stop,
        api::services::restart,
        api::services::logs,
        api::audit::audit,
        api::audit::usage,
        api::approvals::list,
        api::approvals::decide,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Bearer),
    tags(
        (name = "openai", description = "OpenAI-compatible endpoints"),
        (name = "conversations", description = "Stored conversations and asks"),
        (name = "memory", description = "Long-term memory"),
        (name = "skills", description = "Agent Skills"),
        (name = "schedules", description = "RRULE automations"),
        (name = "jobs", description = "The compute pool"),
        (name = "events", description = "Server-sent state changes"),
        (name = "agents", description = "Sub-agent batches"),
        (name = "services", description = "Supervised services"),
        (name = "audit", description = "Tool calls and token usage"),
        (name = "approvals", description = "Tool calls waiting for a decision"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json` (public).
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
