//! The shapes of the job store: a job to create, a job as read, filters, and the outcomes of its
//! state changes.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use sentinel_domain::{JobEvent, JobId, JobKind, JobState, Priority, Progress, QueueName, RetryPolicy};
use uuid::Uuid;

use crate::DbError;
use crate::entity::jobs;

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    pub queue: QueueName,
    pub priority: Priority,
    pub payload: serde_json::Value,
    pub retry: RetryPolicy,
    /// When the job becomes due; `None` means now.
    pub run_at: Option<DateTime<Utc>>,
    pub trace_context: BTreeMap<String, String>,
    pub requested_by: Option<String>,
    /// Owning organization (`None` for system jobs).
    pub org_id: Option<Uuid>,
    /// Deduplication key: while a job with this key is unfinished, no second one is created.
    pub dedup_key: Option<String>,
}

/// Filters for listing jobs (all optional).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
}

/// A job as read from the table, with typed fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub kind: JobKind,
    pub queue: QueueName,
    pub priority: Priority,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempt: u32,
    pub retry: RetryPolicy,
    pub epoch: i64,
    pub progress: Option<Progress>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub trace_context: BTreeMap<String, String>,
    pub requested_by: Option<String>,
    pub event_seq: i64,
    pub cancel_requested: bool,
    pub published: bool,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub org_id: Option<Uuid>,
    pub dedup_key: Option<String>,
}

impl TryFrom<jobs::Model> for JobRecord {
    type Error = DbError;
    fn try_from(m: jobs::Model) -> Result<Self, DbError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("job {}: {what}: {e}", m.id));
        let progress = match (m.progress_step, m.progress_total) {
            (Some(step), Some(total)) => Some(Progress {
                step: Ord::max(step, 0) as u64,
                total: Ord::max(total, 0) as u64,
                info: m.progress_info.clone(),
            }),
            _ => None,
        };
        let trace_context = match &m.trace_context {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| corrupt("trace_context", &e))?,
            None => BTreeMap::new(),
        };
        Ok(JobRecord {
            id: JobId::from_uuid(m.id),
            kind: JobKind::parse(&m.kind).map_err(|e| corrupt("kind", &e))?,
            queue: QueueName::parse(&m.queue).map_err(|e| corrupt("queue", &e))?,
            priority: m.priority.parse().map_err(|e| corrupt("priority", &e))?,
            state: m.state.parse().map_err(|e| corrupt("state", &e))?,
            attempt: Ord::max(m.attempt, 0) as u32,
            retry: RetryPolicy {
                max_attempts: Ord::max(m.max_attempts, 1) as u32,
                backoff_base_ms: Ord::max(m.backoff_base_ms, 0) as u64,
                backoff_max_ms: Ord::max(m.backoff_max_ms, 0) as u64,
            },
            epoch: m.epoch,
            progress,
            payload: m.payload,
            result: m.result,
            error: m.error,
            trace_context,
            requested_by: m.requested_by,
            event_seq: m.event_seq,
            cancel_requested: m.cancel_requested,
            published: m.published,
            run_at: m.run_at,
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
            updated_at: m.updated_at,
            org_id: m.org_id,
            dedup_key: m.dedup_key,
        })
    }
}

/// What happened when a worker tried to start an attempt.
#[derive(Debug)]
pub enum StartOutcome {
    /// The attempt holds the lease with `job.epoch`.
    Started(Box<JobRecord>, JobEvent),
    /// The message is stale or the job is finished or cancelled: drop the message.
    Skip { state: Option<JobState>, why: &'static str },
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded(serde_json::Value),
    Failed(String),
    Cancelled,
}

/// Result of a cancel request.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Cancelled(JobEvent),
    /// It is running; its worker has been asked to stop.
    Requested(JobEvent),
    /// It had already finished in this state.
    AlreadyFinished(JobState),
    NotFound,
}

/// The row a new job starts as.
pub(super) fn new_row(new: NewJob, now: DateTime<Utc>) -> Result<jobs::Model, DbError> {
    let trace = if new.trace_context.is_empty() {
        None
    } else {
        Some(serde_json::to_value(&new.trace_context).map_err(|e| DbError::Corrupt(e.to_string()))?)
    };
    Ok(jobs::Model {
        id: new.id.as_uuid(),
        kind: new.kind.to_string(),
        queue: new.queue.to_string(),
        priority: new.priority.as_str().to_owned(),
        payload: new.payload,
        state: JobState::Queued.as_str().to_owned(),
        attempt: 1,
        max_attempts: Ord::max(new.retry.max_attempts, 1) as i32,
        backoff_base_ms: new.retry.backoff_base_ms as i64,
        backoff_max_ms: new.retry.backoff_max_ms as i64,
        epoch: 0,
        progress_step: None,
        progress_total: None,
        progress_info: None,
        result: None,
        error: None,
        trace_context: trace,
        requested_by: new.requested_by,
        event_seq: 1,
        cancel_requested: false,
        published: false,
        run_at: new.run_at.map_or(now, |at| at.trunc_subsecs(6)),
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
        org_id: new.org_id,
        dedup_key: new.dedup_key,
    })
}
