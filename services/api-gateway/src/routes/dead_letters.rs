//! `/api/v1/dead-letters`: jobs their queue gave up on, per queue, to requeue or discard.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::{DeadLetterReason, JobId, JobKind, QueueName, Role};
use serde::{Deserialize, Serialize};

use super::jobs::{JobView, default_limit, requeue};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;
use crate::job_cache::JobCache;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/dead-letters").route(web::get().to(dead_letters)));
    cfg.service(super::resource("/dead-letters/{queue}/{entry}/requeue").route(web::post().to(requeue_dead_letter)));
    cfg.service(super::resource("/dead-letters/{queue}/{entry}").route(web::delete().to(discard_dead_letter)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub queue: String,
    pub entry_id: String,
    #[schema(value_type = String)]
    pub reason: DeadLetterReason,
    pub detail: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = String, format = Uuid)]
    pub job_id: JobId,
    #[schema(value_type = String)]
    pub kind: JobKind,
    pub attempt: u32,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterQuery {
    /// Only this queue's (default: every queue's).
    #[param(schema_with = doc::queue_name)]
    queue: Option<String>,
    #[serde(default = "default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

/// Dead letters of the caller's organization (a queue's stream holds every organization's).
async fn org_dead_letters(
    spine: &Spine,
    principal: &Principal,
    queue: &QueueName,
    limit: usize,
) -> Result<Vec<DeadLetterView>, Problem> {
    let all = spine.bus().dead_letters(queue, 10_000).await.map_err(|e| Problem::unavailable(format!("bus: {e}")))?;
    let mut out = Vec::new();
    for d in all {
        if out.len() >= limit {
            break;
        }
        if spine.store().get_in_org(principal.org_id, d.message.job_id).await?.is_some() {
            out.push(DeadLetterView {
                queue: queue.to_string(),
                entry_id: d.entry_id,
                reason: d.reason,
                detail: d.detail,
                at: d.at,
                job_id: d.message.job_id,
                kind: d.message.kind,
                attempt: d.message.attempt,
            });
        }
    }
    Ok(out)
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "dead letters",
    summary = "List dead letters",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "Dead letters, newest first", body = Vec<DeadLetterView>),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn dead_letters(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let queues = match &q.queue {
        Some(name) => vec![QueueName::parse(name).map_err(|e| Problem::invalid_field("queue", e.to_string()))?],
        None => spine.catalog().queues(),
    };
    let mut out = Vec::new();
    for queue in queues {
        out.extend(org_dead_letters(&spine, &principal, &queue, q.limit as usize).await?);
    }
    out.truncate(q.limit as usize);
    Ok(HttpResponse::Ok().json(out))
}

async fn find_dead_letter(
    spine: &Spine,
    principal: &Principal,
    queue: &str,
    entry: &str,
) -> Result<(QueueName, DeadLetterView), Problem> {
    let queue = QueueName::parse(queue).map_err(|_| Problem::not_found(&format!("queue {queue:?}")))?;
    let found = org_dead_letters(spine, principal, &queue, usize::MAX).await?.into_iter().find(|d| d.entry_id == entry);
    found.map(|d| (queue, d)).ok_or_else(|| Problem::not_found(&format!("dead letter {entry}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/{queue}/{entry}/requeue",
    tag = "dead letters",
    summary = "Requeue a dead letter's job",
    params(("queue" = String, Path, description = "Queue name"), ("entry" = String, Path, description = "Dead-letter entry id")),
    responses(
        (status = 200, description = "The job, queued again", body = JobView),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn requeue_dead_letter(
    principal: Principal,
    spine: web::Data<Spine>,
    cache: web::Data<JobCache>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let (queue, entry) = path.into_inner();
    let (queue, dead) = find_dead_letter(&spine, &principal, &queue, &entry).await?;
    let job = requeue(&spine, dead.job_id).await;
    cache.evict(dead.job_id);
    let job = job?;
    spine
        .bus()
        .remove_dead_letter(&queue, &dead.entry_id)
        .await
        .map_err(|e| Problem::unavailable(format!("bus: {e}")))?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/dead-letters/{queue}/{entry}",
    tag = "dead letters",
    summary = "Discard a dead letter",
    params(("queue" = String, Path, description = "Queue name"), ("entry" = String, Path, description = "Dead-letter entry id")),
    responses(
        (status = 204, description = "Discarded"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn discard_dead_letter(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let (queue, entry) = path.into_inner();
    let (queue, dead) = find_dead_letter(&spine, &principal, &queue, &entry).await?;
    spine
        .bus()
        .remove_dead_letter(&queue, &dead.entry_id)
        .await
        .map_err(|e| Problem::unavailable(format!("bus: {e}")))?;
    Ok(HttpResponse::NoContent().finish())
}
