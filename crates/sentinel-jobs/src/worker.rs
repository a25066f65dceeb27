//! The worker runtime: consumes queues, runs one handler per delivery under a lease, renews the lease,
//! fences every write by epoch, retries with backoff through the bus's delay index, honours cancel,
//! dead-letters poison messages, and drains in-flight work on shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use sentinel_bus::{Delivery, Message};
use sentinel_db::{AttemptWrite, AttemptWritten, DbError, Finish, JobRecord, StartOutcome};
use sentinel_domain::{DeadLetterReason, JobEvent, JobEventKind, JobId, JobKind, QueueName};
use sentinel_telemetry::{Shutdown, metric};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{JobContext, JobError, Spine};

/// Runs one kind of job. Implementations should be idempotent or rely on the context's fencing.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError>;
}

/// How a worker pool behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Prefix of the consumer name (the service name); a unique suffix is added per process.
    pub name: String,
    pub queues: Vec<QueueName>,
    pub concurrency: usize,
    /// Deliveries (first + reclaims) before a message is quarantined as a worker-crash dead letter.
    pub max_deliveries: u32,
    /// How long in-flight jobs get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl WorkerOptions {
    pub fn from_spine(spine: &Spine, name: &str, queues: Vec<QueueName>) -> Self {
        let s = spine.settings();
        Self {
            name: name.to_owned(),
            queues,
            concurrency: s.worker.concurrency,
            max_deliveries: s.bus.max_deliveries,
            shutdown_grace: s.worker.shutdown_grace(),
        }
    }
}

/// Jobs running in this process, so a cancel broadcast can reach them.
type Running = Arc<Mutex<HashMap<JobId, CancellationToken>>>;

/// A pool of handlers consuming one or more queues.
pub struct Worker {
    spine: Spine,
    handlers: Arc<HashMap<JobKind, Arc<dyn JobHandler>>>,
    options: WorkerOptions,
    consumer_name: String,
    running: Running,
}

impl Worker {
    pub fn new(spine: Spine, handlers: HashMap<JobKind, Arc<dyn JobHandler>>, options: WorkerOptions) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        let consumer_name = format!(
            "{}-{}-{}-{}",
            options.name,
            host,
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            spine,
            handlers: Arc::new(handlers),
            options,
            consumer_name,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn consumer_name(&self) -> &str {
        &self.consumer_name
    }

    /// Runs until `shutdown` fires, then stops taking work and gives in-flight jobs the grace period.
    /// Jobs still running after it are abandoned unacked, so another worker reclaims them.
    pub async fn run(self, shutdown: Shutdown) {
        let semaphore = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let outcome_slots = Arc::new(Semaphore::new(self.options.concurrency.max(MIN_OUTCOME_SLOTS)));
        let mut jobs: JoinSet<()> = JoinSet::new();
        let mut loops: JoinSet<()> = JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Delivery, tokio::sync::OwnedSemaphorePermit)>(64);
        let acker = crate::acks::Acker::start(self.spine.clone());

        // Cancel requests arrive on the events channel (any gateway may have taken them).
        loops.spawn(listen_for_cancels(self.spine.clone(), self.running.clone(), shutdown.clone()));
        for queue in &self.options.queues {
            loops.spawn(consume(
                self.spine.clone(),
                queue.clone(),
                self.consumer_name.clone(),
                semaphore.clone(),
                tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(tx);
        tracing::info!(consumer = %self.consumer_name, queues = ?self.options.queues, concurrency = self.options.concurrency, "worker started");

        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some((delivery, permit)) => {
                        let run = Attempt {
                            spine: self.spine.clone(),
                            handlers: self.handlers.clone(),
                            running: self.running.clone(),
                            max_deliveries: self.options.max_deliveries,
                            outcome_slots: outcome_slots.clone(),
                        };
                        let acks = acker.sender();
                        jobs.spawn(async move {
                            // The outcome is committed: ack, in a batch with other outcomes' acks.
                            if let Some(delivery) = run.process(delivery, permit).await {
                                let _ = acks.send(delivery).await;
                            }
                        });
                    }
                    None => break,
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
        // Consumers stopped (shutdown). Let in-flight jobs finish within the grace period.
        let grace = self.options.shutdown_grace;
        let left = jobs.len();
        if left > 0 {
            tracing::info!(in_flight = left, grace_ms = grace.as_millis() as u64, "draining in-flight jobs");
        }
        let drained = tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(abandoned = jobs.len(), "grace period over; abandoning jobs unacked for reclaim");
            jobs.abort_all();
        }
        loops.abort_all();
        // The acks of the outcomes committed so far (the aborted jobs dropped their senders).
        if tokio::time::timeout(Duration::from_secs(5), acker.finish()).await.is_err() {
            tracing::warn!("acks not sent in time; their messages will be redelivered and dropped as finished");
        }
        tracing::info!(consumer = %self.consumer_name, "worker stopped");
    }
}

/// Outcomes that may wait for their commit at once, at least (see [`Attempt::process_inner`]): enough
/// for a worker at concurrency 1 to keep running while several durable flushes are under way.
const MIN_OUTCOME_SLOTS: usize = 16;

/// Most deliveries one read asks for.
const MAX_READ: usize = 256;

/// Reads one queue and hands deliveries (each with a concurrency permit) to the pool.
///
/// A blocking read never holds a slot: a worker consuming several queues would otherwise park its
/// free slots in the blocking read of an idle queue while jobs of a busy one wait. So the loop takes
/// only the slots free right now and reads without blocking; when that finds nothing (or no slot is
/// free) it blocks for at most one message without a slot, then waits for a slot for it, renewing
/// its lease meanwhile. Each queue therefore prefetches at most one message beyond the pool's
/// concurrency, which also hides the read's round trip when the pool is full.
async fn consume(
    spine: Spine,
    queue: QueueName,
    name: String,
    semaphore: Arc<Semaphore>,
    tx: tokio::sync::mpsc::Sender<(Delivery, tokio::sync::OwnedSemaphorePermit)>,
    shutdown: Shutdown,
) {
    let block = spine.settings().bus.block();
    let mut consumer = loop {
        match spine.bus().consumer(&queue, &name).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, %queue, "cannot open consumer; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        // No new work while the database is unreachable: it could neither start nor finish.
        if spine.db_down() {
            tracing::warn!(%queue, "database unreachable; not taking messages until it answers");
            if !spine.wait_for_db(&shutdown).await {
                return;
            }
            tracing::info!(%queue, "database reachable; taking messages again");
        }
        let mut permits = Vec::new();
        while permits.len() < MAX_READ {
            match semaphore.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let mut received = Ok(Vec::new());
        if !permits.is_empty() {
            received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = consumer.receive(permits.len(), Duration::ZERO) => r,
            };
        }
        if matches!(&received, Ok(d) if d.is_empty()) {
            // Nothing ready (or no free slot): give the slots back before blocking.
            permits.clear();
            received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = consumer.receive(1, block) => r,
            };
        }
        match received {
            Ok(deliveries) => {
                backoff = Duration::from_millis(100);
                for delivery in deliveries {
                    let permit = match permits.pop() {
                        Some(p) => p,
                        None => match wait_for_slot(&spine, &semaphore, &delivery, &shutdown).await {
                            Some(p) => p,
                            None if shutdown.is_cancelled() => return,
                            None => continue,
                        },
                    };
                    if tx.send((delivery, permit)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %queue, backoff_ms = backoff.as_millis() as u64, "bus read failed; reconnecting");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Waits for a free slot for a delivery read ahead, renewing its lease so it is not reclaimed (and
/// counted as a crash) while it waits. `None` on shutdown or when the lease was lost anyway.
async fn wait_for_slot(
    spine: &Spine,
    semaphore: &Arc<Semaphore>,
    delivery: &Delivery,
    shutdown: &Shutdown,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let every = (spine.settings().bus.visibility_timeout() / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = semaphore.clone().acquire_owned() => return p.ok(),
            _ = tokio::time::sleep(every) => match spine.bus().renew(delivery).await {
                Ok(false) => {
                    tracing::warn!(job_id = %delivery.message.job_id, "read-ahead delivery lost its lease; dropped");
                    return None;
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, "lease renewal of a read-ahead delivery failed; will retry"),
            },
        }
    }
}

async fn listen_for_cancels(spine: Spine, running: Running, shutdown: Shutdown) {
    loop {
        let mut events = match spine.bus().subscribe_cancels().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to job events; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = events.next() => e,
            };
            let Some(event) = next else { break };
            if matches!(event.body, JobEventKind::CancelRequested) {
                let token = running.lock().unwrap_or_else(|p| p.into_inner()).get(&event.job_id).cloned();
                if let Some(token) = token {
                    tracing::info!(job_id = %event.job_id, "cancel requested; stopping handler");
                    token.cancel();
                }
            }
        }
    }
}

/// Everything needed to process one delivery.
struct Attempt {
    spine: Spine,
    handlers: Arc<HashMap<JobKind, Arc<dyn JobHandler>>>,
    running: Running,
    max_deliveries: u32,
    /// Outcomes handed over but not yet committed; see [`Attempt::process_inner`].
    outcome_slots: Arc<Semaphore>,
}

type Slot = tokio::sync::OwnedSemaphorePermit;

impl Attempt {
    /// Runs one delivery holding a handler slot; returns it when it should be acked.
    async fn process(self, delivery: Delivery, slot: Slot) -> Option<Delivery> {
        let msg = delivery.message.clone();
        let span = tracing::info_span!("job", job_id = %msg.job_id, kind = %msg.kind, attempt = msg.attempt, delivery = delivery.delivery_count);
        sentinel_telemetry::attach_parent(&span, &msg.trace);
        self.process_inner(delivery, slot).instrument(span).await
    }

    async fn process_inner(self, delivery: Delivery, slot: Slot) -> Option<Delivery> {
        let msg = &delivery.message;
        let kind = msg.kind.to_string();
        if delivery.delivery_count > self.max_deliveries {
            let detail =
                format!("worker died or lost its lease {} times while running this job", delivery.delivery_count - 1);
            self.quarantine(&delivery, DeadLetterReason::WorkerCrash, &detail).await;
            return None;
        }
        let Some(handler) = self.handlers.get(&msg.kind).cloned() else {
            let detail = format!("no handler for kind {} on queue {}", msg.kind, delivery.queue);
            self.quarantine(&delivery, DeadLetterReason::HandlerError, &detail).await;
            return None;
        };
        let start =
            AttemptWrite::Start { id: msg.job_id, attempt: msg.attempt, redelivery: delivery.delivery_count > 1 };
        let started = match self.until_reachable(&delivery, None, || self.spine.write_attempt(start.clone())).await {
            Ok(AttemptWritten::Started(outcome)) => Ok(outcome),
            Ok(other) => Err(DbError::Corrupt(format!("unexpected answer to a start: {other:?}"))),
            Err(e) => Err(e),
        };
        let job = match started {
            Ok(StartOutcome::Started(job, event)) => {
                self.spine.broadcast(&event).await;
                *job
            }
            Ok(StartOutcome::Skip { state, why }) => {
                tracing::debug!(?state, why, "message dropped");
                return Some(delivery);
            }
            Err(e) => {
                // Leave it unacked: it is retried after the visibility timeout.
                tracing::error!(error = %e, "could not start job; leaving message for redelivery");
                return None;
            }
        };
        metrics::counter!(metric::JOBS_STARTED, "kind" => kind.clone()).increment(1);
        let waited = (Utc::now() - job.run_at.max(job.created_at)).to_std().unwrap_or_default();
        metrics::histogram!(metric::QUEUE_WAIT, "kind" => kind.clone()).record(waited.as_secs_f64());

        let cancel = CancellationToken::new();
        let lease_lost = Arc::new(AtomicBool::new(false));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(job.id, cancel.clone());
        let keeper = tokio::spawn(keep_lease(
            self.spine.clone(),
            delivery.clone(),
            job.epoch,
            cancel.clone(),
            lease_lost.clone(),
        ));
        let mut ctx = JobContext {
            spine: self.spine.clone(),
            job: job.clone(),
            cancel: cancel.clone(),
            log: crate::attempt_log::AttemptLog::start(self.spine.clone(), job.id, job.epoch, lease_lost.clone()),
        };
        let started = Instant::now();
        let outcome = handler.run(&ctx).await;
        // The handler is done, so its slot goes to the next delivery while this outcome commits: a
        // job's commit (a durable flush) overlaps the next job's start instead of preceding it, which
        // matters most at concurrency 1. The outcome first takes an outcome slot (`concurrency` of them, at
        // least MIN_OUTCOME_SLOTS), bounding the outcomes waiting for their commit; the ack follows it.
        let _outcome_slot = self.outcome_slots.clone().acquire_owned().await.ok();
        drop(slot);
        // Every event the handler wrote is in the log before its outcome: written already, or handed
        // back here to be written with the outcome.
        let log = ctx.log.close().await;
        // The keeper renews the lease until the outcome is committed (which may wait out an outage).
        let _keeper = AbortOnDrop(keeper);
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
        metrics::histogram!(metric::JOB_DURATION, "kind" => kind.clone()).record(started.elapsed().as_secs_f64());

        if lease_lost.load(Ordering::Acquire) {
            tracing::warn!(
                "lease lost during the attempt; its outcome is discarded and the message left to its new owner"
            );
            return None;
        }
        let store = self.spine.store();
        let finished = match outcome {
            Ok(value) => self.finish(&delivery, &lease_lost, &job, Finish::Succeeded(value), log).await.inspect(|_| {
                metrics::counter!(metric::JOBS_SUCCEEDED, "kind" => kind.clone()).increment(1);
            }),
            Err(JobError::LeaseLost) => {
                tracing::warn!("attempt fenced off by a newer one; discarding its outcome");
                return None;
            }
            Err(JobError::Cancelled) => {
                self.finish(&delivery, &lease_lost, &job, Finish::Cancelled, log).await.inspect(|_| {
                    metrics::counter!(metric::JOBS_CANCELLED, "kind" => kind.clone()).increment(1);
                })
            }
            Err(_) if cancel.is_cancelled() => {
                self.finish(&delivery, &lease_lost, &job, Finish::Cancelled, log).await.inspect(|_| {
                    metrics::counter!(metric::JOBS_CANCELLED, "kind" => kind.clone()).increment(1);
                })
            }
            Err(JobError::Retryable(error)) if job.retry.allows_retry_after(job.attempt) => {
                let delay = job.retry.delay_after(job.attempt, rand::random::<f64>());
                let run_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                if !log.is_empty() {
                    let written = self.until_reachable(&delivery, Some(&lease_lost), || {
                        store.append_many(job.id, job.epoch, log.clone())
                    });
                    match written.await {
                        Ok(events) => self.spine.broadcast_many(&events).await,
                        Err(e) => tracing::warn!(error = %e, "could not write the attempt's last log lines"),
                    }
                }
                let retried = self
                    .until_reachable(&delivery, Some(&lease_lost), || store.retry(job.id, job.epoch, &error, run_at));
                match retried.await {
                    Ok((_, ev)) => {
                        metrics::counter!(metric::JOBS_RETRIED, "kind" => kind.clone()).increment(1);
                        tracing::info!(%error, delay_ms = delay.as_millis() as u64, "attempt failed; retrying later");
                        self.spine.broadcast(&ev).await;
                        let next: Message = msg.next_attempt();
                        match self.spine.bus().retry_at(&delivery, &next, run_at).await {
                            Ok(()) => {
                                if let Err(e) = store.mark_published(&[job.id]).await {
                                    tracing::warn!(error = %e, "could not mark retry published; the relay may duplicate it");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "could not schedule retry; the outbox relay will"),
                        }
                        return None;
                    }
                    Err(e) => Err(e),
                }
            }
            Err(JobError::Retryable(error) | JobError::Permanent(error)) => {
                match self.finish(&delivery, &lease_lost, &job, Finish::Failed(error.clone()), log).await {
                    Ok(events) => {
                        metrics::counter!(metric::JOBS_FAILED, "kind" => kind.clone()).increment(1);
                        metrics::counter!(metric::JOBS_DEAD_LETTERED, "kind" => kind.clone(), "reason" => DeadLetterReason::HandlerError.as_str()).increment(1);
                        tracing::warn!(%error, "job failed for good; dead-lettered");
                        self.spine.broadcast_many(&events).await;
                        if let Err(e) =
                            self.spine.bus().dead_letter(&delivery, DeadLetterReason::HandlerError, &error).await
                        {
                            tracing::error!(error = %e, "could not dead-letter the message; it will be redelivered and dropped");
                        }
                        return None;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match finished {
            Ok(events) => {
                self.spine.broadcast_many(&events).await;
                Some(delivery)
            }
            Err(DbError::Fenced { .. }) => {
                tracing::warn!("outcome refused: a newer attempt owns the job");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the outcome; leaving message for redelivery");
                None
            }
        }
    }

    /// Records the attempt's outcome, after its unwritten log lines, through the spine's group
    /// committer; answers their events.
    async fn finish(
        &self,
        delivery: &Delivery,
        lease_lost: &AtomicBool,
        job: &JobRecord,
        outcome: Finish,
        log: Vec<JobEventKind>,
    ) -> Result<Vec<JobEvent>, DbError> {
        let write = AttemptWrite::Finish { id: job.id, epoch: job.epoch, outcome, log };
        match self.until_reachable(delivery, Some(lease_lost), || self.spine.write_attempt(write.clone())).await? {
            AttemptWritten::Finished(_, events) => Ok(events),
            other => Err(DbError::Corrupt(format!("unexpected answer to an outcome: {other:?}"))),
        }
    }

    /// Runs a write until it is committed or refused. While the database is unreachable the attempt
    /// keeps its delivery — renewed here before the job starts (`lease_lost: None`), by the lease
    /// keeper after — so an outage is never counted as a crash, and a finished handler's outcome is
    /// kept in memory and committed once the database is back. Gives up only if the lease is lost.
    async fn until_reachable<T, F, Fut>(
        &self,
        delivery: &Delivery,
        lease_lost: Option<&AtomicBool>,
        mut write: F,
    ) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        let pause = (self.spine.settings().bus.visibility_timeout() / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut warned = false;
        loop {
            match write().await {
                Err(e) if e.is_unavailable() => {
                    if !warned {
                        tracing::warn!(error = %e, "database unreachable; holding the job until it answers");
                        warned = true;
                    }
                    tokio::time::sleep(pause).await;
                    match lease_lost {
                        Some(lost) if lost.load(Ordering::Acquire) => return Err(e),
                        Some(_) => {}
                        None => {
                            if let Ok(false) = self.spine.bus().renew(delivery).await {
                                return Err(e);
                            }
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// Fails the job and parks its message in the dead-letter stream. The database goes first: if the
    /// process dies in between, the redelivered message finds the job finished and is only parked.
    async fn quarantine(&self, delivery: &Delivery, reason: DeadLetterReason, detail: &str) {
        let kind = delivery.message.kind.to_string();
        tracing::error!(reason = reason.as_str(), detail, "dead-lettering message");
        match self.spine.store().dead_lettered(delivery.message.job_id, reason, detail).await {
            Ok(Some(ev)) => {
                metrics::counter!(metric::JOBS_FAILED, "kind" => kind.clone()).increment(1);
                self.spine.broadcast(&ev).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not record the dead letter; leaving message for redelivery");
                return;
            }
        }
        metrics::counter!(metric::JOBS_DEAD_LETTERED, "kind" => kind, "reason" => reason.as_str()).increment(1);
        if let Err(e) = self.spine.bus().dead_letter(delivery, reason, detail).await {
            tracing::error!(error = %e, "could not move the message to the dead-letter stream");
        }
    }
}

/// Aborts a task when dropped (the lease keeper of an attempt, whichever way the attempt ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the delivery's lease a few times per visibility timeout and watches for a cancel flag (a
/// fallback for a missed cancel event). A lost lease or a cancel fires the token.
async fn keep_lease(
    spine: Spine,
    delivery: Delivery,
    epoch: i64,
    cancel: CancellationToken,
    lease_lost: Arc<AtomicBool>,
) {
    let every = (spine.settings().bus.visibility_timeout() / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        match spine.bus().renew(&delivery).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job_id = %delivery.message.job_id, "lease lost to another consumer");
                lease_lost.store(true, Ordering::Release);
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; will retry"),
        }
        // The database heartbeat lets the relay's repair tell a silent attempt from a slow one.
        if let Ok(false) = spine.store().heartbeat(delivery.message.job_id, epoch).await {
            tracing::warn!(job_id = %delivery.message.job_id, "attempt no longer owns the job");
            lease_lost.store(true, Ordering::Release);
            cancel.cancel();
            return;
        }
        if let Ok(true) = spine.store().cancel_requested(delivery.message.job_id, epoch).await {
            cancel.cancel();
        }
    }
}
