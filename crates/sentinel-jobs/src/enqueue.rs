//! Enqueue: validate against the catalog, commit the row, then publish. A 2xx means the job exists and
//! will run: if publishing fails after the commit, the outbox relay publishes it seconds later.

use chrono::{DateTime, Utc};
use sentinel_db::{DbError, JobRecord, NewJob};
use sentinel_domain::{JobId, JobKind, Priority, RetryPolicy};
use serde_json::Value;

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
}

impl EnqueueRequest {
    pub fn new(kind: JobKind, payload: Value) -> Self {
        Self { kind, payload, priority: Priority::Normal, run_at: None, retry: None, requested_by: None }
    }
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
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<JobRecord, EnqueueError> {
        let spec = self.catalog().get(&req.kind).ok_or_else(|| EnqueueError::UnknownKind(req.kind.to_string()))?;
        (spec.validate)(&req.payload).map_err(EnqueueError::InvalidPayload)?;
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
        };
        let (job, event) = self.store().insert(new).await?;
        if self.settings().worker.fault_injection && failpoint("enqueue-after-commit") {
            // Test only: die between commit and publish, as a crash would.
            std::process::abort();
        }
        match self.publish(&job).await {
            Ok(()) => {
                if let Err(e) = self.store().mark_published(&[job.id]).await {
                    // Harmless: the relay will publish a duplicate, which the worker drops.
                    tracing::warn!(error = %e, job_id = %job.id, "could not mark job published");
                }
            }
            Err(e) => tracing::warn!(error = %e, job_id = %job.id, "publish failed; the outbox relay will retry"),
        }
        self.broadcast(&event).await;
        Ok(job)
    }
}

/// Whether the test-only failpoint `name` is armed (`SENTINEL_FAILPOINT=name`). Consulted only when
/// `worker.fault_injection` is on.
fn failpoint(name: &str) -> bool {
    std::env::var("SENTINEL_FAILPOINT").is_ok_and(|v| v == name)
}
