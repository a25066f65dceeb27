//! The OpenAPI 3.1 document, generated from the route annotations, and the offline docs UI.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldErrorDoc, Problem};
use crate::routes::{access, jobs, jobs_batch, schedules, streams, tasks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sentinel API",
        description = "Jobs, schedules, access control and live updates of the Sentinel ops control plane. Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0")
    ),
    paths(
        access::login, access::logout, access::me,
        access::list_users, access::create_user, access::update_user, access::delete_user,
        access::list_keys, access::create_key, access::revoke_key, access::audit,
        jobs::enqueue, jobs_batch::enqueue_batch, jobs::list, jobs::counts, jobs::get_job, jobs::cancel, jobs::retry, jobs::events, jobs::log,
        jobs::dead_letters, jobs::requeue_dead_letter, jobs::discard_dead_letter,
        schedules::create, schedules::list, schedules::get_schedule, schedules::replace, schedules::patch,
        schedules::delete, schedules::preview_definition, schedules::preview_schedule, schedules::firings,
        streams::job_stream, streams::org_stream,
        tasks::enqueue, tasks::status, tasks::counts,
    ),
    components(schemas(Problem, FieldErrorDoc)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    }
}

/// The document as served at `/api/v1/openapi.json` (and committed as `docs/openapi.json`).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Pretty JSON of the document, with a trailing newline (the committed file's exact form).
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}
