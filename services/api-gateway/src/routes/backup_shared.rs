//! What the `/api/v1/backups/...` routes share: enqueueing one of the backup worker's jobs (answered
//! 202 with the job at once), ids from paths, and the domain's field problems as a 422.

use actix_web::HttpResponse;
use sentinel_jobs::domain::backups::FieldProblem;
use sentinel_jobs::domain::{JobKind, RetryPolicy};
use sentinel_jobs::{EnqueueRequest, FieldError, Spine};
use serde_json::Value;
use uuid::Uuid;

use crate::Problem;
use crate::auth::Principal;
use crate::routes::jobs::JobView;

/// Enqueues `kind` for the caller's organization and answers `202 Accepted` with the job (its
/// `Location` is the job; follow it on `/api/v1/jobs/{id}/stream`).
pub async fn accepted_job(
    spine: &Spine,
    principal: &Principal,
    kind: &str,
    payload: Value,
    retry: Option<RetryPolicy>,
) -> Result<HttpResponse, Problem> {
    Ok(accepted(enqueue_for(spine, principal, kind, payload, retry).await?))
}

/// Enqueues `kind` for the caller's organization, requested by the caller.
pub async fn enqueue_for(
    spine: &Spine,
    principal: &Principal,
    kind: &str,
    payload: Value,
    retry: Option<RetryPolicy>,
) -> Result<sentinel_jobs::db::JobRecord, Problem> {
    let kind = JobKind::parse(kind).map_err(|e| Problem::internal(&e))?;
    let mut req = EnqueueRequest::new(kind, payload);
    req.requested_by = Some(principal.label());
    req.org_id = Some(principal.org_id);
    req.retry = retry;
    Ok(spine.enqueue(req).await?.job)
}

/// `202 Accepted` with the job, its `Location` the job.
pub fn accepted(job: sentinel_jobs::db::JobRecord) -> HttpResponse {
    HttpResponse::Accepted().insert_header(("Location", format!("/api/v1/jobs/{}", job.id))).json(JobView::from(job))
}

/// Backups are retried twice (a storage hiccup, a worker restart); each attempt has its own journal row.
pub fn backup_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, ..RetryPolicy::default() }
}

/// An id from a path segment: a non-UUID is simply not found.
pub fn path_id(raw: &str, what: &str) -> Result<Uuid, Problem> {
    raw.parse().map_err(|_| Problem::not_found(&format!("{what} {raw:?}")))
}

/// The domain's `(field, reason)` problems as API field errors.
pub fn field_errors(problems: Vec<FieldProblem>) -> Vec<FieldError> {
    problems.into_iter().map(|(field, reason)| FieldError::new(field, reason)).collect()
}

/// A name that is taken answers 409 naming it.
pub fn name_taken(e: sentinel_jobs::db::DbError, what: &str, name: &str) -> Problem {
    match e {
        sentinel_jobs::db::DbError::Duplicate => Problem::conflict(format!("a {what} named {name:?} already exists")),
        other => other.into(),
    }
}
