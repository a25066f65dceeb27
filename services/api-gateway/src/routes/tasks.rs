//! The seed's task endpoints (`/tasks/enqueue?seconds=N`, `/tasks/status/{id}`, `/tasks/counts`), kept
//! so scripts written against the original back end keep working.

use actix_web::{HttpResponse, web};
use sentinel_jobs::domain::{JobKind, Role, builtin};
use sentinel_jobs::{EnqueueRequest, Spine};
use serde::Deserialize;
use serde_json::json;

use super::jobs::{cached_job_of, count_by_state};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/enqueue").route(web::post().to(enqueue)));
    cfg.service(resource("/status/{id}").route(web::get().to(status)));
    cfg.service(resource("/counts").route(web::get().to(counts)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueQuery {
    /// How long the demo task sleeps, 0 to 86400 (default 20).
    #[serde(default = "default_seconds")]
    #[param(minimum = 0, maximum = 86_400, default = 20)]
    seconds: u64,
}

fn default_seconds() -> u64 {
    20
}

#[utoipa::path(
    post,
    path = "/tasks/enqueue",
    tag = "seed tasks",
    summary = "Enqueue the demo task (seed endpoint)",
    params(EnqueueQuery),
    responses(
        (status = 201, description = "Created", body = Value),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn enqueue(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<EnqueueQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let kind = JobKind::parse(builtin::DEMO_SLEEP).map_err(|e| Problem::internal(&e))?;
    let mut request = EnqueueRequest::new(kind, json!({ "seconds": q.seconds }));
    request.requested_by = Some(principal.label());
    request.org_id = Some(principal.org_id);
    let job = spine.enqueue(request).await.map(|e| e.job).map_err(|e| match e {
        sentinel_jobs::EnqueueError::InvalidPayload(_) => {
            Problem::invalid_field("seconds", "must be an integer from 0 to 86400")
        }
        other => other.into(),
    })?;
    Ok(HttpResponse::Created().json(json!({ "jobId": job.id, "state": job.state })))
}

#[utoipa::path(
    get,
    path = "/tasks/status/{id}",
    tag = "seed tasks",
    summary = "A task's status (seed endpoint)",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "Status", body = Value),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn status(
    principal: Principal,
    spine: web::Data<Spine>,
    cache: web::Data<crate::job_cache::JobCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let job = cached_job_of(&spine, &cache, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(json!({
        "jobId": job.id,
        "state": job.state,
        "progress": job.progress,
        "result": job.result,
        "failedReason": job.error,
        "attemptsMade": job.attempt,
        "timestamp": job.created_at,
        "processedOn": job.started_at,
        "finishedOn": job.finished_at,
    })))
}

#[utoipa::path(
    get,
    path = "/tasks/counts",
    tag = "seed tasks",
    summary = "Task counts by state (seed endpoint)",
    responses(
        (status = 200, description = "Counts", body = Value),
        doc::Guarded
    )
)]
pub(crate) async fn counts(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(count_by_state(&spine, &principal).await?))
}
