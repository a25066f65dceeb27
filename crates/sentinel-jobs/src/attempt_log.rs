//! The per-attempt writer of log lines, progress and host results. A handler hands its events over
//! and goes on; one task per attempt commits them in the order given — one at a time through the
//! worker's group committer, or whatever has queued up meanwhile in one transaction — and broadcasts
//! them. The outcome is written only after this writer is done, so every event of an attempt is in
//! the log before its outcome, in order, as before; the handler no longer waits a commit per line.
//! Fencing still stops the attempt: a write refused as stale marks the lease lost, and the handler's
//! next write (and the outcome) learn it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_db::{AttemptWrite, AttemptWritten, DbError};
use sentinel_domain::{JobEventKind, JobId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{JobError, Spine};

/// Events an attempt may have handed over and not yet committed; a handler writing faster waits.
const QUEUED: usize = 256;

pub(crate) struct AttemptLog {
    tx: Option<mpsc::Sender<JobEventKind>>,
    task: Option<JoinHandle<()>>,
    lease_lost: Arc<AtomicBool>,
    /// Why the writer stopped, if not for fencing (then the next write reports it).
    failure: Arc<Mutex<Option<String>>>,
}

impl AttemptLog {
    pub(crate) fn start(spine: Spine, id: JobId, epoch: i64, lease_lost: Arc<AtomicBool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        let failure = Arc::new(Mutex::new(None));
        let task = tokio::spawn(write_in_order(spine, id, epoch, rx, lease_lost.clone(), failure.clone()));
        Self { tx: Some(tx), task: Some(task), lease_lost, failure }
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

    /// Waits until every event handed over is committed (or refused).
    pub(crate) async fn close(&mut self) {
        self.tx.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
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

async fn write_in_order(
    spine: Spine,
    id: JobId,
    epoch: i64,
    mut rx: mpsc::Receiver<JobEventKind>,
    lease_lost: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
) {
    let mut bodies = Vec::new();
    while rx.recv_many(&mut bodies, QUEUED).await > 0 {
        let written = loop {
            if lease_lost.load(Ordering::Acquire) {
                return;
            }
            let result = if let [body] = bodies.as_slice() {
                // Alone, it shares a transaction with the other jobs' writes.
                let write = AttemptWrite::Append { id, epoch, body: body.clone() };
                match spine.write_attempt(write).await {
                    Ok(AttemptWritten::Appended(ev)) => Ok(vec![ev]),
                    Ok(other) => Err(DbError::Corrupt(format!("unexpected answer to a log write: {other:?}"))),
                    Err(e) => Err(e),
                }
            } else {
                spine.store().append_many(id, epoch, bodies.clone()).await
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
            Ok(events) => spine.broadcast_many(&events).await,
            Err(DbError::Fenced { .. }) => {
                tracing::warn!(job_id = %id, "log write refused: a newer attempt owns the job");
                lease_lost.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "could not write the attempt's log");
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return;
            }
        }
        bodies.clear();
    }
}
