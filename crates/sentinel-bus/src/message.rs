//! The envelope that travels on the bus for each job attempt.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sentinel_domain::{JobId, JobKind, Priority};
use serde::{Deserialize, Serialize};

/// One attempt of one job. The payload travels with it so a worker needs no database read to start
/// a short job; the jobs table still fences every write by lease epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub job_id: JobId,
    pub kind: JobKind,
    #[serde(default)]
    pub priority: Priority,
    /// Which attempt of the job this message starts (1-based). A message whose attempt is older than the
    /// job's current one is stale and is dropped.
    pub attempt: u32,
    /// When the job was first enqueued (milliseconds since the epoch), for enqueue→start latency.
    pub enqueued_at_ms: i64,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// W3C trace context (`traceparent`, `tracestate`) of the enqueuing request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace: BTreeMap<String, String>,
}

impl Message {
    pub fn enqueued_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.enqueued_at_ms)
    }

    /// The message for the next attempt of the same job.
    pub fn next_attempt(&self) -> Message {
        Message { attempt: self.attempt + 1, ..self.clone() }
    }
}
