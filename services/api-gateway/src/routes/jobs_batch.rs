//! `POST /api/v1/jobs/batch`: many jobs in one request and one transaction (BullMQ's `addBulk`), for
//! scripts that enqueue thousands at once. All or nothing: every item is validated and a 422 names each
//! bad field as `jobs[i].field`.

use actix_web::{HttpResponse, web};
use sentinel_jobs::domain::{JobId, Role};
use sentinel_jobs::{EnqueueManyError, FieldError, Spine};
use serde::{Deserialize, Serialize};

use super::jobs::{EnqueueBody, parse_request};
use crate::Problem;
use crate::auth::Principal;

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 10_000;
/// Largest batch body, in bytes (a batch may exceed `http.max_body_bytes`, which bounds other bodies).
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Body of `POST /api/v1/jobs/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 10,000 jobs, each as the body of `POST /api/v1/jobs`.
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<EnqueueBody>,
}

/// One job of a batch, in request order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    /// False when a `dedup_key` matched an unfinished job (or an earlier item), which is returned.
    pub created: bool,
}

/// Answer of `POST /api/v1/jobs/batch`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    pub jobs: Vec<BatchItem>,
    /// How many new jobs were created.
    pub created: usize,
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/batch",
    tag = "jobs",
    summary = "Enqueue many jobs at once (all or nothing)",
    request_body = BatchBody,
    responses(
        (status = 201, description = "Every job committed (some may be existing ones, by dedup_key)", body = BatchView),
        (status = 400, description = "Malformed request", body = crate::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = crate::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role too low", body = crate::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid items, each field named as jobs[i].field; nothing was created", body = crate::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("api_key" = []), ("session" = []))
)]
pub(crate) async fn enqueue_batch(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<BatchBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let items = body.into_inner().jobs;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(Problem::invalid_field("jobs", format!("must hold 1 to {MAX_BATCH} jobs")));
    }
    let mut requests = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match parse_request(item, &principal, spine.catalog()) {
            Ok(req) => requests.push(req),
            Err(problem) => errors.extend(
                problem.errors.into_iter().map(|e| FieldError::new(format!("jobs[{i}].{}", e.field), e.reason)),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let enqueued = spine.enqueue_many(requests).await.map_err(|e| match e {
        EnqueueManyError::Invalid(bad) => Problem::invalid(
            bad.into_iter().map(|(i, e)| FieldError::new(format!("jobs[{i}].{}", e.field), e.reason)).collect(),
        ),
        EnqueueManyError::Store(e) => e.into(),
    })?;
    let created = enqueued.iter().filter(|e| e.created).count();
    let jobs = enqueued.into_iter().map(|e| BatchItem { id: e.job.id, created: e.created }).collect();
    Ok(HttpResponse::Created().json(BatchView { jobs, created }))
}
