//! `/api/v1/jobs`: enqueue, read, count, cancel and read the event log of jobs.

use std::collections::BTreeMap;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::{CancelOutcome, JobRecord};
use sentinel_jobs::domain::{JobEvent, JobId, JobKind, JobState, Priority, Progress, RetryPolicy};
use sentinel_jobs::{Catalog, EnqueueRequest, FieldError, Spine};
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::auth::Caller;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::post().to(enqueue))
        .route("/jobs/counts", web::get().to(counts))
        .route("/jobs/{id}", web::get().to(get_job))
        .route("/jobs/{id}/cancel", web::post().to(cancel))
        .route("/jobs/{id}/events", web::get().to(events));
}

/// Body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub priority: Option<String>,
    /// Run no earlier than this many seconds from now.
    #[serde(default)]
    pub delay_seconds: Option<u64>,
    /// Run no earlier than this instant (RFC 3339). Exclusive with `delay_seconds`.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub backoff_base_ms: Option<u64>,
    #[serde(default)]
    pub backoff_max_ms: Option<u64>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
    pub queue: String,
    pub state: JobState,
    pub priority: Priority,
    pub attempt: u32,
    pub max_attempts: u32,
    pub payload: serde_json::Value,
    pub progress: Option<Progress>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub requested_by: Option<String>,
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
fn parse_request(body: EnqueueBody, caller: Option<String>, catalog: &Catalog) -> Result<EnqueueRequest, Problem> {
    let mut errors = Vec::new();
    let kind = match JobKind::parse(&body.kind) {
        Ok(kind) => match catalog.get(&kind) {
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
        backoff_max_ms: body.backoff_max_ms.unwrap_or(defaults.backoff_max_ms),
    };
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
            requested_by: caller,
        }),
        _ => Err(Problem::invalid(errors)),
    }
}

fn caller(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<Caller>().map(|c| c.0.clone())
}

async fn enqueue(
    spine: web::Data<Spine>,
    req: HttpRequest,
    body: web::Json<EnqueueBody>,
) -> Result<HttpResponse, Problem> {
    let request = parse_request(body.into_inner(), caller(&req), spine.catalog())?;
    let job = spine.enqueue(request).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/v1/jobs/{}", job.id))).json(JobView::from(job)))
}

pub(crate) fn parse_id(raw: &str) -> Result<JobId, Problem> {
    // A malformed id names no job: 404, like an unknown one.
    raw.parse().map_err(|_| Problem::not_found(&format!("job {raw:?}")))
}

async fn get_job(spine: web::Data<Spine>, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = parse_id(&path)?;
    match spine.store().get(id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(JobView::from(job))),
        None => Err(Problem::not_found(&format!("job {id}"))),
    }
}

pub(crate) async fn count_by_state(spine: &Spine) -> Result<BTreeMap<&'static str, u64>, Problem> {
    Ok(spine.store().counts().await?.into_iter().map(|(s, n)| (s.as_str(), n)).collect())
}

async fn counts(spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(count_by_state(&spine).await?))
}

async fn cancel(spine: web::Data<Spine>, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = parse_id(&path)?;
    match spine.store().request_cancel(id).await? {
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
            Err(Problem::conflict(format!("job {id} already finished as {state}")))
        }
        CancelOutcome::NotFound => Err(Problem::not_found(&format!("job {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

async fn events(
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, Problem> {
    let id = parse_id(&path)?;
    if !(1..=1000).contains(&q.limit) {
        return Err(Problem::invalid_field("limit", "must be from 1 to 1000"));
    }
    let events: Vec<JobEvent> = spine.store().events(id, q.after, q.limit).await?;
    Ok(HttpResponse::Ok().json(events))
}
