//! Reading a run's output as it comes: every line scrubbed of the run's secrets before it is stored or
//! streamed, event lines of Sentinel's callback turned into per-host events, diffs and the recap.

use std::collections::BTreeMap;

use sentinel_jobs::domain::provisioning::{AnsibleEvent, HostCounts, HostErrorReason, Scrubber};
use sentinel_jobs::domain::{JobEventKind, LogStream};
use sentinel_jobs::{JobContext, JobError};

/// What the run learned from ansible's events so far.
#[derive(Debug, Default)]
pub struct Observed {
    /// The recap, once ansible printed it.
    pub stats: Option<BTreeMap<String, HostCounts>>,
    /// Per host: its diffs (check mode), concatenated.
    pub diffs: BTreeMap<String, String>,
    /// Per host: why it was unreachable (a changed host key is told apart).
    pub unreachable: BTreeMap<String, HostErrorReason>,
    /// Per host: it had a failed task.
    pub failed: BTreeMap<String, bool>,
    pub events: u64,
    /// Plays started (the extra variables are loaded before the first).
    pub plays: u64,
}

/// Turns one line of output into the event to store (scrubbed first), updating what was observed.
/// `None` for event lines that only feed the outcome (plays, tasks, diffs, the recap).
pub fn event_of(scrubber: &Scrubber, stream: LogStream, raw: &str, seen: &mut Observed) -> Option<JobEventKind> {
    let line = scrubber.scrub(raw);
    let Some(event) = AnsibleEvent::from_line(&line) else {
        return Some(JobEventKind::Log { stream, line });
    };
    seen.events += 1;
    match event {
        AnsibleEvent::Play { .. } => {
            seen.plays += 1;
            None
        }
        AnsibleEvent::Task { .. } => None,
        AnsibleEvent::Host { host, task, status, msg } => {
            match status.as_str() {
                "unreachable" => {
                    let reason = HostErrorReason::of_unreachable(msg.as_deref().unwrap_or(""));
                    seen.unreachable.insert(host.clone(), reason);
                }
                "failed" => {
                    seen.failed.insert(host.clone(), true);
                }
                _ => {}
            }
            Some(JobEventKind::Host { host, task, status, msg })
        }
        AnsibleEvent::Diff { host, diff, .. } => {
            let entry = seen.diffs.entry(host).or_default();
            if entry.len() < 1 << 20 {
                entry.push_str(&diff);
            }
            None
        }
        AnsibleEvent::Stats { hosts } => {
            seen.stats = Some(hosts);
            None
        }
    }
}

/// Output waiting to be stored: written in one transaction when it holds `MAX_BATCH` events or its
/// oldest event has waited `MAX_WAIT`, so a chatty run costs a transaction per batch, not per line,
/// and a quiet one still shows each line within milliseconds.
#[derive(Default)]
pub struct Pending {
    events: Vec<JobEventKind>,
    since: Option<tokio::time::Instant>,
}

pub const MAX_BATCH: usize = 2000;
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

impl Pending {
    pub fn push(&mut self, ev: JobEventKind) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.events.push(ev);
    }
    pub fn is_full(&self) -> bool {
        self.events.len() >= MAX_BATCH
    }
    /// When the batch must be written (far in the future when it is empty).
    pub fn deadline(&self) -> tokio::time::Instant {
        self.since.map_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600), |t| t + MAX_WAIT)
    }
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
    pub async fn flush(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        self.since = None;
        ctx.append_many(std::mem::take(&mut self.events)).await
    }
}
