//! Enqueue: validate against the catalog, commit the row, then publish. A 2xx means the job exists and
//! will run: if publishing fails after the commit, the outbox relay publishes it seconds later.

use chrono::{DateTime, Utc};
use sentinel_db::{DbError, JobRecord, NewJob};
use sentinel_domain::{JobId, JobKind, Priority, RetryPolicy};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use crate::{FieldError, Spine};

/// A request to run a job.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    pub kind: JobKind,
    pub payload: Value,
    pub priority: Priority,
    pub run_at: Option<DateTime<Utc>>,
    pub retry: Option<RetryPolicy>,
    pub requested_by: Option<String>,
    /// Owning organization (`None` for system jobs).
    pub org_id: Option<Uuid>,
    /// While a job with this key is unfinished, enqueueing again returns it instead of a new one.
    pub dedup_key: Option<String>,
}

impl EnqueueRequest {
    pub fn new(kind: JobKind, payload: Value) -> Self {
        Self {
            kind,
            payload,
            priority: Priority::Normal,
            run_at: None,
            retry: None,
            requested_by: None,
            org_id: None,
            dedup_key: None,
        }
    }
}

/// The job an enqueue resolved to.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: JobRecord,
    /// False when a deduplication key matched an unfinished job, which is returned instead.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("unknown job kind {0}")]
    UnknownKind(String),
    #[error("invalid payload")]
    InvalidPayload(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] DbError),
}

impl Spine {
    /// Creates the job and puts it on the bus. Returns the job as committed.
    #[tracing::instrument(skip_all, fields(kind = %req.kind, job_id))]
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<Enqueued, EnqueueError> {
        let spec = self.catalog().get(&req.kind).ok_or_else(|| EnqueueError::UnknownKind(req.kind.to_string()))?;
        (spec.validate)(&req.payload).map_err(EnqueueError::InvalidPayload)?;
        if let Some(key) = &req.dedup_key
            && let Some(job) = self.store().active_with_dedup_key(req.org_id, key).await?
        {
            return Ok(Enqueued { job, created: false });
        }
        let id = JobId::new();
        tracing::Span::current().record("job_id", tracing::field::display(id));
        let new = NewJob {
            id,
            kind: req.kind,
            queue: spec.queue.clone(),
            priority: req.priority,
            payload: req.payload,
            retry: req.retry.unwrap_or_default(),
            run_at: req.run_at,
            trace_context: sentinel_telemetry::current_trace_context(),
            requested_by: req.requested_by,
            org_id: req.org_id,
            dedup_key: req.dedup_key.clone(),
        };
        let (job, event) = match self.insert_job(new).await {
            Ok(inserted) => inserted,
            // Lost a race with a concurrent enqueue of the same key: return the winner.
            Err(DbError::Duplicate) => {
                let key = req.dedup_key.as_deref().unwrap_or_default();
                return match self.store().active_with_dedup_key(req.org_id, key).await? {
                    Some(job) => Ok(Enqueued { job, created: false }),
                    None => Err(EnqueueError::Store(DbError::Duplicate)),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if self.settings().worker.fault_injection && failpoint("enqueue-after-commit") {
            // Test only: die between commit and publish, as a crash would.
            std::process::abort();
        }
        // The row is committed, so the job will run: publishing can finish after the caller has its
        // answer (if it fails or the process dies first, the outbox relay publishes the row).
        let spine = self.clone();
        let published = job.clone();
        tokio::spawn(
            async move {
                match spine.publish(&published).await {
                    Ok(()) => spine.mark_published_later(published.id),
                    Err(e) => tracing::warn!(error = %e, job_id = %published.id, "publish failed; the outbox relay will retry"),
                }
                spine.broadcast(&event).await;
            }
            .in_current_span(),
        );
        Ok(Enqueued { job, created: true })
    }
}

/// Whether the test-only failpoint `name` is armed (`SENTINEL_FAILPOINT=name`). Consulted only when
/// `worker.fault_injection` is on.
fn failpoint(name: &str) -> bool {
    std::env::var("SENTINEL_FAILPOINT").is_ok_and(|v| v == name)
}
