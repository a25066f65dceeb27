//! The per-attempt writer of log lines, progress and host results. A handler hands its events over
//! and goes on; one task per attempt commits them in the order given — one at a time through the
//! worker's group committer, or whatever has queued up meanwhile in one transaction — and broadcasts
//! them. It lingers a moment ([`LINGER`]) before writing what it was given: a short job's lines are
//! then still unwritten when it ends, and [`AttemptLog::close`] hands them to the outcome, which
//! writes them just before itself in the same statement. Either way every event of an attempt is in
//! the log before its outcome, in order; the handler never waits a commit per line.
//! Fencing still stops the attempt: a write refused as stale marks the lease lost, and the handler's
//! next write (and the outcome) learn it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_db::{AttemptWrite, AttemptWritten, DbError};
use sentinel_domain::{JobEventKind, JobId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{JobError, Spine};

/// Events an attempt may have handed over and not yet committed; a handler writing faster waits.
const QUEUED: usize = 256;

/// How long the writer holds what it was handed before writing it: long enough for a short job to
/// end first (its lines then ride with its outcome), far below what a person watching a log notices.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

pub(crate) struct AttemptLog {
    tx: Option<mpsc::Sender<JobEventKind>>,
    /// Fired by `close`: the writer finishes the write under way and hands back the rest.
    closing: CancellationToken,
    task: Option<JoinHandle<Vec<JobEventKind>>>,
    lease_lost: Arc<AtomicBool>,
    /// Why the writer stopped, if not for fencing (then the next write reports it).
    failure: Arc<Mutex<Option<String>>>,
}

impl AttemptLog {
    pub(crate) fn start(spine: Spine, id: JobId, epoch: i64, lease_lost: Arc<AtomicBool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        let failure = Arc::new(Mutex::new(None));
        let closing = CancellationToken::new();
        let writer = Writer { spine, id, epoch, lease_lost: lease_lost.clone(), failure: failure.clone() };
        let task = tokio::spawn(writer.run(rx, closing.clone()));
        Self { tx: Some(tx), closing, task: Some(task), lease_lost, failure }
    }

    /// Hands one event over (waiting only while `QUEUED` are pending).
    pub(crate) async fn push(&self, body: JobEventKind) -> Result<(), JobError> {
        if self.lease_lost.load(Ordering::Acquire) {
            return Err(JobError::LeaseLost);
        }
        if let Some(why) = self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(JobError::Retryable(why));
        }
        match &self.tx {
            Some(tx) if tx.send(body).await.is_ok() => Ok(()),
            _ => Err(JobError::Retryable("the attempt's log writer stopped".to_owned())),
        }
    }

    /// Stops the writer once the write under way (if any) is committed or refused, and answers the
    /// events handed over and not written, in order: the outcome writes them before itself. Empty if
    /// the writer stopped for fencing or an error (the outcome then learns it the same way).
    pub(crate) async fn close(&mut self) -> Vec<JobEventKind> {
        self.tx.take();
        self.closing.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for AttemptLog {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Writer {
    spine: Spine,
    id: JobId,
    epoch: i64,
    lease_lost: Arc<AtomicBool>,
    /// Why the writer stopped, if not for fencing.
    failure: Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// Writes batches in order until closed; answers what was left unwritten.
    async fn run(self, mut rx: mpsc::Receiver<JobEventKind>, closing: CancellationToken) -> Vec<JobEventKind> {
        let mut bodies = Vec::new();
        loop {
            let received = tokio::select! {
                biased;
                _ = closing.cancelled() => 0,
                n = rx.recv_many(&mut bodies, QUEUED) => n,
            };
            if received == 0 {
                break;
            }
            tokio::select! {
                biased;
                _ = closing.cancelled() => break,
                _ = tokio::time::sleep(LINGER) => {}
            }
            while bodies.len() < QUEUED {
                match rx.try_recv() {
                    Ok(body) => bodies.push(body),
                    Err(_) => break,
                }
            }
            if !self.write(&bodies).await {
                return Vec::new();
            }
            bodies.clear();
        }
        // Closed: the sender is gone, so what is still queued is all there is. (A lease lost meanwhile
        // is the worker's to see: it discards the outcome and these with it.)
        while let Ok(body) = rx.try_recv() {
            bodies.push(body);
        }
        bodies
    }

    /// Commits one batch; `false` when the writer must stop (fenced, or an error other than an outage).
    async fn write(&self, bodies: &[JobEventKind]) -> bool {
        let (spine, id, epoch) = (&self.spine, self.id, self.epoch);
        let written = loop {
            if self.lease_lost.load(Ordering::Acquire) {
                return false;
            }
            let result = if let [body] = bodies {
                // Alone, it shares a transaction with the other jobs' writes.
                let write = AttemptWrite::Append { id, epoch, body: body.clone() };
                match spine.write_attempt(write).await {
                    Ok(AttemptWritten::Appended(ev)) => Ok(vec![ev]),
                    Ok(other) => Err(DbError::Corrupt(format!("unexpected answer to a log write: {other:?}"))),
                    Err(e) => Err(e),
                }
            } else {
                spine.store().append_many(id, epoch, bodies.to_vec()).await
            };
            match result {
                // An unreachable database is waited out (the lease keeper holds the job meanwhile):
                // a lost log line or a retry counted against the job would both be wrong.
                Err(e) if e.is_unavailable() => {
                    spine.report_db_error(&e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other,
            }
        };
        match written {
            Ok(events) => {
                spine.broadcast_many(&events).await;
                true
            }
            Err(DbError::Fenced { .. }) => {
                tracing::warn!(job_id = %id, "log write refused: a newer attempt owns the job");
                self.lease_lost.store(true, Ordering::Release);
                false
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "could not write the attempt's log");
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                false
            }
        }
    }
}
