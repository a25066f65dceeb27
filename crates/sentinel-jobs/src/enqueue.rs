//! Enqueue: validate against the catalog, commit the row, then publish. A 2xx means the job exists and
//! will run: if publishing fails after the commit, the outbox relay publishes it seconds later.

use chrono::{DateTime, Utc};
use sentinel_db::{DbError, JobRecord, NewJob};
use sentinel_domain::{JobEvent, JobId, JobKind, Priority, RetryPolicy};
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
        self.publish_committed(job.clone(), event);
        Ok(Enqueued { job, created: true })
    }
}

impl Spine {
    /// Publishes a job its caller committed in its own transaction (with `JobStore::insert_in`), and
    /// broadcasts its `queued` event, in the background: the outbox relay repairs a failure.
    pub fn publish_committed(&self, job: JobRecord, event: JobEvent) {
        let spine = self.clone();
        tokio::spawn(
            async move {
                match spine.publish(&job).await {
                    Ok(()) if !job.published => spine.mark_published_later(job.id),
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, job_id = %job.id, "publish failed; the outbox relay will retry")
                    }
                }
                spine.broadcast(&event).await;
            }
            .in_current_span(),
        );
    }
}

/// Whether the test-only failpoint `name` is armed (`SENTINEL_FAILPOINT=name`). Consulted only when
/// `worker.fault_injection` is on.
fn failpoint(name: &str) -> bool {
    std::env::var("SENTINEL_FAILPOINT").is_ok_and(|v| v == name)
}

/// Why a bulk enqueue was refused as a whole: every bad item, by its index in the request.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueManyError {
    #[error("{} invalid item(s)", .0.len())]
    Invalid(Vec<(usize, FieldError)>),
    #[error(transparent)]
    Store(#[from] DbError),
}

impl Spine {
    /// Creates many jobs in one transaction and publishes them in pipelined batches (BullMQ's
    /// `addBulk`). All or nothing: every item is validated first and one bad item refuses the whole
    /// request, naming each bad item. Items whose deduplication key is held by an unfinished job (or
    /// by an earlier item of the same request) resolve to that job instead of a new one.
    #[tracing::instrument(skip_all, fields(items = reqs.len()))]
    pub async fn enqueue_many(&self, reqs: Vec<EnqueueRequest>) -> Result<Vec<Enqueued>, EnqueueManyError> {
        let mut invalid = Vec::new();
        let mut queues = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            match self.catalog().get(&req.kind) {
                None => invalid.push((i, FieldError::new("kind", format!("unknown job kind {}", req.kind)))),
                Some(spec) => {
                    if let Err(errors) = (spec.validate)(&req.payload) {
                        invalid.extend(errors.into_iter().map(|e| (i, e)));
                    }
                    queues.push(spec.queue.clone());
                }
            }
        }
        if !invalid.is_empty() {
            return Err(EnqueueManyError::Invalid(invalid));
        }
        let trace = sentinel_telemetry::current_trace_context();
        // Slot i answers item i: an existing job (deduplicated) or the index of a new one.
        let mut answers: Vec<Result<JobRecord, usize>> = Vec::with_capacity(reqs.len());
        let mut news: Vec<NewJob> = Vec::new();
        let mut keys_in_request: std::collections::HashMap<(Option<Uuid>, String), usize> = Default::default();
        for (req, queue) in reqs.into_iter().zip(queues) {
            if let Some(key) = &req.dedup_key {
                if let Some(&earlier) = keys_in_request.get(&(req.org_id, key.clone())) {
                    answers.push(Err(earlier));
                    continue;
                }
                if let Some(job) = self.store().active_with_dedup_key(req.org_id, key).await? {
                    answers.push(Ok(job));
                    continue;
                }
                keys_in_request.insert((req.org_id, key.clone()), news.len());
            }
            answers.push(Err(news.len()));
            news.push(NewJob {
                id: JobId::new(),
                kind: req.kind,
                queue,
                priority: req.priority,
                payload: req.payload,
                retry: req.retry.unwrap_or_default(),
                run_at: req.run_at,
                trace_context: trace.clone(),
                requested_by: req.requested_by,
                org_id: req.org_id,
                dedup_key: req.dedup_key,
            });
        }
        let inserted = self.store().insert_many_as(news, self.bus().in_process()).await?;
        let (jobs, events): (Vec<JobRecord>, Vec<JobEvent>) = inserted.into_iter().unzip();
        self.publish_many(&jobs, &events).await;
        let mut created = vec![false; jobs.len()];
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Ok(job) => Enqueued { job, created: false },
                Err(i) => {
                    let first = !created[i];
                    created[i] = true;
                    Enqueued { job: jobs[i].clone(), created: first }
                }
            })
            .collect())
    }

    /// Publishes committed jobs in batches per queue and priority, broadcasts their `queued` events,
    /// and marks them published in the background. A failure leaves them to the outbox relay.
    async fn publish_many(&self, jobs: &[JobRecord], events: &[JobEvent]) {
        let now = Utc::now();
        let mut due: std::collections::BTreeMap<
            String,
            (sentinel_domain::QueueName, Vec<sentinel_bus::Message>, Vec<JobId>),
        > = Default::default();
        let mut published = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.run_at > now {
                match self.bus().publish_at(&job.queue, &Spine::message_for(job), job.run_at).await {
                    Ok(()) => published.push(job.id),
                    Err(e) => {
                        tracing::warn!(error = %e, job_id = %job.id, "publish failed; the outbox relay will retry")
                    }
                }
                continue;
            }
            let entry = due.entry(job.queue.to_string()).or_insert_with(|| (job.queue.clone(), Vec::new(), Vec::new()));
            entry.1.push(Spine::message_for(job));
            entry.2.push(job.id);
        }
        for (queue, messages, ids) in due.into_values() {
            for (chunk, chunk_ids) in messages.chunks(PUBLISH_CHUNK).zip(ids.chunks(PUBLISH_CHUNK)) {
                match self.bus().publish(&queue, chunk).await {
                    Ok(()) => published.extend_from_slice(chunk_ids),
                    Err(e) => tracing::warn!(error = %e, %queue, "bulk publish failed; the outbox relay will retry"),
                }
            }
        }
        self.broadcast_many(events).await;
        // Rows inserted as published (the in-process bus: see `JobStore::insert_many_as`) need
        // no mark; marking one again would be harmless.
        if published.is_empty() || jobs.iter().all(|j| j.published) {
            return;
        }
        // The marks are bookkeeping (a lost one means a harmless republish), so the caller does not
        // wait for them: each is an update of every row it names.
        let store = self.store().clone();
        tokio::spawn(async move {
            for ids in published.chunks(PUBLISH_CHUNK) {
                if let Err(e) = store.mark_published(ids).await {
                    tracing::warn!(error = %e, "could not mark jobs published; the relay may publish them again");
                }
            }
        });
    }
}

/// Messages per bus publish and ids per "published" update in a bulk enqueue.
const PUBLISH_CHUNK: usize = 1000;
