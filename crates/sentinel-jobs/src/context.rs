//! What a handler sees while it runs: its job, fenced progress and log writes, and cancellation.

use sentinel_db::{DbError, JobRecord};
use sentinel_domain::{JobEventKind, LogStream, Progress};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::Spine;

/// How a handler attempt ended, other than success.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after backoff), if attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (bad payload, missing resource): fail now.
    #[error("{0}")]
    Permanent(String),
    /// The job was cancelled; the handler stopped early.
    #[error("cancelled")]
    Cancelled,
    /// Another attempt holds the job now; this one must stop without writing anything.
    #[error("lease lost to a newer attempt")]
    LeaseLost,
}

impl JobError {
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        Self::Retryable(e.to_string())
    }
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        Self::Permanent(e.to_string())
    }
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Fenced { .. } => JobError::LeaseLost,
            other => JobError::Retryable(other.to_string()),
        }
    }
}

/// Handed to a handler for one attempt. Every write is fenced by the attempt's lease epoch.
pub struct JobContext {
    pub(crate) spine: Spine,
    pub(crate) job: JobRecord,
    pub(crate) cancel: CancellationToken,
    /// Where log lines, progress and host results go (committed in order, not waited for).
    pub(crate) log: crate::attempt_log::AttemptLog,
}

impl JobContext {
    /// The spine, for handlers that work on the database or enqueue follow-up jobs.
    pub fn spine(&self) -> &Spine {
        &self.spine
    }

    pub fn job(&self) -> &JobRecord {
        &self.job
    }

    /// The payload as the handler's own type; a mismatch is a permanent failure.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("invalid payload: {e}")))
    }

    /// Records progress (stored, then broadcast on the events channel).
    pub async fn progress(&self, step: u64, total: u64, info: Option<String>) -> Result<(), JobError> {
        self.write(JobEventKind::Progress(Progress { step, total, info })).await
    }

    /// Appends a line to the job's log.
    pub async fn log(&self, stream: LogStream, line: impl Into<String>) -> Result<(), JobError> {
        self.write(JobEventKind::Log { stream, line: line.into() }).await
    }

    /// Records one host's result of one task (stored in order with the log, then broadcast).
    pub async fn host_result(
        &self,
        host: String,
        task: String,
        status: String,
        msg: Option<String>,
    ) -> Result<(), JobError> {
        self.write(JobEventKind::Host { host, task, status, msg }).await
    }

    /// Appends many events (log lines, host results) in order: for output that comes faster than one
    /// write per line (they are committed together).
    pub async fn append_many(&self, bodies: Vec<JobEventKind>) -> Result<(), JobError> {
        for body in bodies {
            self.log.push(body).await?;
        }
        Ok(())
    }

    /// Hands the event to the attempt's ordered writer: stored in the job's log before the outcome,
    /// then broadcast. Returns once handed over; a refusal (a newer attempt owns the job) is reported
    /// by the next write.
    async fn write(&self, body: JobEventKind) -> Result<(), JobError> {
        self.log.push(body).await
    }

    /// Resolves when the job is cancelled (or its lease is lost). Use in `select!` around long waits.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The token itself, for handlers that spawn their own tasks or subprocesses.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}
