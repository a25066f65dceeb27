//! Job events: lifecycle changes, progress and log lines, numbered per job so a reader can resume.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{JobId, JobKind, JobState, Progress};

/// One thing that happened to a job. `seq` is the job's own event counter, stored with the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Position in the deployment-wide event log (0 before it is stored); resumable org-wide streams
    /// use it as their cursor.
    #[serde(default)]
    pub id: i64,
    /// The job's organization (`None` for system jobs), so streams can filter without a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<uuid::Uuid>,
    pub job_id: JobId,
    pub kind: JobKind,
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: JobEventKind,
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    System,
}

/// Why a message ended in the dead-letter stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The handler failed on every allowed attempt.
    HandlerError,
    /// The worker holding the job died (or lost its lease) too many times.
    WorkerCrash,
}

impl DeadLetterReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HandlerError => "handler_error",
            Self::WorkerCrash => "worker_crash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEventKind {
    Queued,
    Started {
        attempt: u32,
        epoch: i64,
    },
    Progress(Progress),
    Log {
        stream: LogStream,
        line: String,
    },
    /// One host's result of one task (provisioning runs): what the console's live per-host view shows.
    Host {
        host: String,
        task: String,
        /// ok, changed, failed, unreachable, skipped or ignored.
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg: Option<String>,
    },
    Retrying {
        attempt: u32,
        error: String,
        run_at: DateTime<Utc>,
    },
    CancelRequested,
    /// An operator sent a finished job back to the queue.
    Requeued {
        attempt: u32,
    },
    Finished {
        state: JobState,
        error: Option<String>,
    },
    DeadLettered {
        reason: DeadLetterReason,
        error: String,
    },
}

impl JobEventKind {
    /// Stable name of the event type, stored in the event log and used as the SSE event name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started { .. } => "started",
            Self::Progress(_) => "progress",
            Self::Log { .. } => "log",
            Self::Host { .. } => "host",
            Self::Retrying { .. } => "retrying",
            Self::CancelRequested => "cancel_requested",
            Self::Requeued { .. } => "requeued",
            Self::Finished { .. } => "finished",
            Self::DeadLettered { .. } => "dead_lettered",
        }
    }
}
