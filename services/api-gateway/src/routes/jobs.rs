//! `/api/v1/jobs`: enqueue, read, count, cancel, retry and read the event log of jobs.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::{CancelOutcome, JobFilter, JobRecord};
use sentinel_jobs::domain::{
    JobEvent, JobEventKind, JobId, JobKind, JobState, LogStream, Priority, Progress, RetryPolicy, Role,
};
use sentinel_jobs::{Catalog, EnqueueRequest, Enqueued, FieldError, Spine};
use serde::{Deserialize, Serialize};

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;
use crate::job_cache::JobCache;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/jobs").route(web::post().to(enqueue)).route(web::get().to(list)));
    cfg.service(resource("/jobs/counts").route(web::get().to(counts)));
    // Before `/jobs/{id}`, which would otherwise take the path and answer 405 to a POST.
    cfg.service(
        resource("/jobs/batch")
            .app_data(crate::problem::json_config(super::jobs_batch::MAX_BATCH_BODY_BYTES))
            .route(web::post().to(super::jobs_batch::enqueue_batch)),
    );
    cfg.service(resource("/jobs/{id}").route(web::get().to(get_job)));
    cfg.service(resource("/jobs/{id}/cancel").route(web::post().to(cancel)));
    cfg.service(resource("/jobs/{id}/retry").route(web::post().to(retry)));
    cfg.service(resource("/jobs/{id}/events").route(web::get().to(events)));
    cfg.service(resource("/jobs/{id}/log").route(web::get().to(log)));
}

/// Body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    #[schema(schema_with = doc::kind)]
    pub kind: String,
    /// The kind's parameters (each kind states its own).
    #[serde(default)]
    #[schema(value_type = Value)]
    pub payload: serde_json::Value,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    #[schema(schema_with = doc::priority)]
    pub priority: Option<String>,
    /// Run no earlier than this many seconds from now (at most a year). Exclusive with `run_at`.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(maximum = 31_622_400)]
    pub delay_seconds: Option<u64>,
    /// Run no earlier than this instant (RFC 3339). Exclusive with `delay_seconds`.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts in all, 1 to 100 (default 3).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, doubled on each further one (default 1000).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub backoff_base_ms: Option<u64>,
    /// Longest delay between retries: at least `backoff_base_ms` (default 300000, or
    /// `backoff_base_ms` if that is longer).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 604_800_000)]
    pub backoff_max_ms: Option<u64>,
    /// While a job with this key is unfinished, enqueueing again returns it (200) instead of creating one.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub dedup_key: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    #[schema(value_type = String)]
    pub kind: JobKind,
    pub queue: String,
    #[schema(value_type = String, example = "queued")]
    pub state: JobState,
    #[schema(value_type = String, example = "normal")]
    pub priority: Priority,
    pub attempt: u32,
    pub max_attempts: u32,
    #[schema(value_type = Value)]
    pub payload: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Progress>,
    #[schema(value_type = Value)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub requested_by: Option<String>,
    pub dedup_key: Option<String>,
    /// W3C trace context of the request that enqueued the job.
    pub trace_context: BTreeMap<String, String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> Self {
        Self {
            id: j.id,
            kind: j.kind,
            queue: j.queue.to_string(),
            state: j.state,
            priority: j.priority,
            attempt: j.attempt,
            max_attempts: j.retry.max_attempts,
            payload: j.payload,
            progress: j.progress,
            result: j.result,
            error: j.error,
            cancel_requested: j.cancel_requested,
            requested_by: j.requested_by,
            dedup_key: j.dedup_key,
            trace_context: j.trace_context,
            run_at: j.run_at,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            updated_at: j.updated_at,
        }
    }
}

/// Longest accepted delay: a year.
const MAX_DELAY_SECONDS: u64 = 366 * 24 * 3600;

/// Checks the whole body at once, so a 422 lists every invalid field, not just the first.
pub(crate) fn parse_request(
    mut body: EnqueueBody,
    principal: &Principal,
    catalog: &Catalog,
) -> Result<EnqueueRequest, Problem> {
    doc::integral_numbers(&mut body.payload);
    let mut errors = Vec::new();
    let kind = match JobKind::parse(&body.kind) {
        Ok(kind) => match catalog.get(&kind) {
            Some(spec) if spec.internal => {
                errors.push(FieldError::new("kind", format!("{kind} is system work, run by built-in schedules only")));
                None
            }
            Some(spec) => {
                if let Err(payload_errors) = (spec.validate)(&body.payload) {
                    errors.extend(payload_errors);
                }
                Some(kind)
            }
            None => {
                errors.push(FieldError::new("kind", format!("unknown job kind {:?}", body.kind)));
                None
            }
        },
        Err(e) => {
            errors.push(FieldError::new("kind", e.to_string()));
            None
        }
    };
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => p.parse().unwrap_or_else(|e: sentinel_jobs::domain::ParseError| {
            errors.push(FieldError::new("priority", e.to_string()));
            Priority::Normal
        }),
    };
    let run_at = match (body.delay_seconds, body.run_at) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("delay_seconds", "give either delay_seconds or run_at, not both"));
            None
        }
        (Some(d), None) if d > MAX_DELAY_SECONDS => {
            errors.push(FieldError::new("delay_seconds", format!("must be at most {MAX_DELAY_SECONDS}")));
            None
        }
        (Some(d), None) => Some(Utc::now() + chrono::Duration::seconds(d as i64)),
        (None, at) => at,
    };
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        max_attempts: body.max_attempts.unwrap_or(defaults.max_attempts),
        backoff_base_ms: body.backoff_base_ms.unwrap_or(defaults.backoff_base_ms),
        backoff_max_ms: body
            .backoff_max_ms
            .unwrap_or_else(|| defaults.backoff_max_ms.max(body.backoff_base_ms.unwrap_or(defaults.backoff_base_ms))),
    };
    if let Some(key) = &body.dedup_key
        && (key.is_empty() || key.chars().count() > 128)
    {
        errors.push(FieldError::new("dedup_key", "must be 1 to 128 characters"));
    }
    if !(1..=100).contains(&retry.max_attempts) {
        errors.push(FieldError::new("max_attempts", "must be from 1 to 100"));
    }
    if retry.backoff_base_ms == 0 || retry.backoff_base_ms > 86_400_000 {
        errors.push(FieldError::new("backoff_base_ms", "must be from 1 to 86400000"));
    }
    if retry.backoff_max_ms < retry.backoff_base_ms || retry.backoff_max_ms > 7 * 86_400_000 {
        errors.push(FieldError::new("backoff_max_ms", "must be at least backoff_base_ms and at most 604800000"));
    }
    match (kind, errors.is_empty()) {
        (Some(kind), true) => Ok(EnqueueRequest {
            kind,
            payload: body.payload,
            priority,
            run_at,
            retry: Some(retry),
            requested_by: Some(principal.label()),
            org_id: Some(principal.org_id),
            dedup_key: body.dedup_key,
        }),
        _ => Err(Problem::invalid(errors)),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    summary = "Enqueue a job",
    request_body = EnqueueBody,
    responses(
        (status = 201, description = "Created", body = JobView),
        (status = 200, description = "An unfinished job with the same dedup_key", body = JobView),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn enqueue(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<EnqueueBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let request = parse_request(body.into_inner(), &principal, spine.catalog())?;
    let Enqueued { job, created } = spine.enqueue(request).await?;
    let mut res = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.insert_header(("Location", format!("/api/v1/jobs/{}", job.id))).json(JobView::from(job)))
}

pub(crate) fn parse_id(raw: &str) -> Result<JobId, Problem> {
    // A malformed id names no job: 404, like an unknown one.
    raw.parse().map_err(|_| Problem::not_found(&format!("job {raw:?}")))
}

/// The job if it belongs to the caller's organization; 404 otherwise (never 403: other
/// organizations' jobs do not exist for the caller).
pub(crate) async fn job_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<JobRecord, Problem> {
    let id = parse_id(raw)?;
    spine.store().get_in_org(principal.org_id, id).await?.ok_or_else(|| Problem::not_found(&format!("job {id}")))
}

/// Like [`job_of`], through the read cache (for read-only routes).
pub(crate) async fn cached_job_of(
    spine: &Spine,
    cache: &JobCache,
    principal: &Principal,
    raw: &str,
) -> Result<JobRecord, Problem> {
    let id = parse_id(raw)?;
    if let Some(job) = cache.get(principal.org_id, id) {
        return Ok(job);
    }
    let started = std::time::Instant::now();
    let job = job_of(spine, principal, raw).await?;
    cache.put(job.clone(), started);
    Ok(job)
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    summary = "Get a job",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn get_job(
    principal: Principal,
    spine: web::Data<Spine>,
    cache: web::Data<JobCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(JobView::from(cached_job_of(&spine, &cache, &principal, &path).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[param(schema_with = doc::job_state)]
    state: Option<String>,
    #[param(schema_with = doc::kind_filter)]
    kind: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    requested_by: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
    #[serde(default = "default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<JobId>,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    summary = "List jobs, newest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let q = q.into_inner();
    let mut errors = Vec::new();
    let state = q
        .state
        .as_deref()
        .and_then(|s| s.parse::<JobState>().map_err(|e| errors.push(FieldError::new("state", e.to_string()))).ok());
    let kind = q
        .kind
        .as_deref()
        .and_then(|k| JobKind::parse(k).map_err(|e| errors.push(FieldError::new("kind", e.to_string()))).ok());
    let cursor = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse::<JobId>().map_err(|e| errors.push(FieldError::new("cursor", e.to_string()))).ok());
    errors.extend(doc::limit_error(q.limit));
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let filter = JobFilter {
        state,
        kind,
        created_after: q.created_after,
        created_before: q.created_before,
        requested_by: q.requested_by,
    };
    let jobs = spine.store().list(principal.org_id, &filter, cursor, q.limit).await?;
    let next_cursor = (jobs.len() as u64 == q.limit).then(|| jobs.last().map(|j| j.id)).flatten();
    Ok(HttpResponse::Ok().json(JobPage { items: jobs.into_iter().map(JobView::from).collect(), next_cursor }))
}

pub(crate) async fn count_by_state(
    spine: &Spine,
    principal: &Principal,
) -> Result<BTreeMap<&'static str, u64>, Problem> {
    Ok(spine.store().counts(Some(principal.org_id)).await?.into_iter().map(|(s, n)| (s.as_str(), n)).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    #[schema(value_type = Object)]
    pub by_state: BTreeMap<&'static str, u64>,
    #[schema(value_type = Object)]
    pub by_kind: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/counts",
    tag = "jobs",
    summary = "Count jobs by state and kind",
    responses(
        (status = 200, description = "Counts", body = Counts),
        doc::Guarded
    )
)]
pub(crate) async fn counts(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let by_state = count_by_state(&spine, &principal).await?;
    let mut by_kind: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for (kind, state, n) in spine.store().counts_by_kind(principal.org_id).await? {
        by_kind.entry(kind).or_default().insert(state.as_str(), n);
    }
    Ok(HttpResponse::Ok().json(Counts { by_state, by_kind }))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    summary = "Cancel a queued or running job",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "Was queued; now cancelled", body = Value),
        (status = 202, description = "Running; its worker was told to stop", body = Value),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn cancel(
    principal: Principal,
    spine: web::Data<Spine>,
    cache: web::Data<JobCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let id = job_of(&spine, &principal, &path).await?.id;
    let outcome = spine.store().request_cancel(id).await?;
    // This replica's readers see the change at once (others when the event reaches them).
    cache.evict(id);
    match outcome {
        CancelOutcome::Cancelled(ev) => {
            spine.broadcast(&ev).await;
            Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "state": JobState::Cancelled })))
        }
        CancelOutcome::Requested(ev) => {
            spine.broadcast(&ev).await;
            Ok(HttpResponse::Accepted()
                .json(serde_json::json!({ "id": id, "state": JobState::Running, "cancel_requested": true })))
        }
        CancelOutcome::AlreadyFinished(state) => {
            Err(Problem::conflict_with(format!("job {id} already finished as {state}"), id))
        }
        CancelOutcome::NotFound => Err(Problem::not_found(&format!("job {id}"))),
    }
}

/// Sends a failed or cancelled job back to the queue for one more attempt.
pub(crate) async fn requeue(spine: &Spine, id: JobId) -> Result<JobRecord, Problem> {
    match spine.store().requeue(id).await {
        Ok(Some((job, ev))) => {
            spine.broadcast(&ev).await;
            match spine.publish(&job).await {
                Ok(()) => {
                    if let Err(e) = spine.store().mark_published(&[job.id]).await {
                        tracing::warn!(error = %e, "could not mark the retried job published");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "publish of a retried job failed; the relay will retry"),
            }
            Ok(job)
        }
        Ok(None) => {
            let state = spine.store().get(id).await?.map(|j| j.state);
            Err(Problem::conflict_with(
                format!(
                    "only failed or cancelled jobs can be retried; job {id} is {}",
                    state.map_or("gone".to_owned(), |s| s.to_string())
                ),
                id,
            ))
        }
        Err(sentinel_jobs::db::DbError::Duplicate) => {
            Err(Problem::conflict("another unfinished job holds this job's deduplication key"))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/retry",
    tag = "jobs",
    summary = "Retry a failed or cancelled job",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "Queued again", body = JobView),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn retry(
    principal: Principal,
    spine: web::Data<Spine>,
    cache: web::Data<JobCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let id = job_of(&spine, &principal, &path).await?.id;
    let job = requeue(&spine, id).await;
    cache.evict(id);
    Ok(HttpResponse::Ok().json(JobView::from(job?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only events after this `seq` (default 0: from the start).
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

pub(crate) fn default_limit() -> u64 {
    doc::LIMIT_DEFAULT
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/events",
    tag = "jobs",
    summary = "Read a job's event log",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)"), EventsQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = Vec<Value>),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn events(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let id = job_of(&spine, &principal, &path).await?.id;
    doc::check_limit(q.limit)?;
    let events: Vec<JobEvent> = spine.store().events(id, q.after, q.limit).await?;
    Ok(HttpResponse::Ok().json(events))
}

/// One line of a job's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub stream: LogStream,
    pub line: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log",
    tag = "jobs",
    summary = "Read a job's log lines",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)"), EventsQuery),
    responses(
        (status = 200, description = "Log lines, oldest first", body = Vec<LogLine>),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn log(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let id = job_of(&spine, &principal, &path).await?.id;
    doc::check_limit(q.limit)?;
    // Read events until `limit` log lines are found (other event types are skipped).
    let mut lines = Vec::new();
    let mut after = q.after;
    loop {
        let batch = spine.store().events(id, after, 1000).await?;
        let done = batch.len() < 1000;
        for ev in batch {
            after = ev.seq;
            if let JobEventKind::Log { stream, line } = ev.body {
                lines.push(LogLine { seq: ev.seq, at: ev.at, stream, line });
                if lines.len() as u64 == q.limit {
                    return Ok(HttpResponse::Ok().json(lines));
                }
            }
        }
        if done {
            return Ok(HttpResponse::Ok().json(lines));
        }
    }
}
