//! The seed's task endpoints (`/tasks/enqueue?seconds=N`, `/tasks/status/{id}`, `/tasks/counts`), kept
//! so scripts written against the original back end keep working.

use actix_web::{HttpResponse, web};
use sentinel_jobs::domain::{JobKind, Role, builtin};
use sentinel_jobs::{EnqueueRequest, Spine};
use serde::Deserialize;
use serde_json::json;

use super::jobs::{count_by_state, job_of};
use crate::Problem;
use crate::auth::Principal;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/enqueue", web::post().to(enqueue))
        .route("/status/{id}", web::get().to(status))
        .route("/counts", web::get().to(counts));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueQuery {
    #[serde(default = "default_seconds")]
    seconds: u64,
}

fn default_seconds() -> u64 {
    20
}

async fn enqueue(
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

async fn status(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let job = job_of(&spine, &principal, &path).await?;
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

async fn counts(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(count_by_state(&spine, &principal).await?))
}
