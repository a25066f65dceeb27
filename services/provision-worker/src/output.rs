//! Reading a run's output as it comes: every line scrubbed of the run's secrets before it is stored or
//! streamed, event lines of Sentinel's callback turned into per-host events, diffs and the recap.

use std::collections::BTreeMap;

use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::provisioning::{AnsibleEvent, HostCounts, HostErrorReason, Scrubber};
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

/// Handles one line of output: scrubbed, then stored as a log line or a host event.
pub async fn handle_line(
    ctx: &JobContext,
    scrubber: &Scrubber,
    stream: LogStream,
    raw: &str,
    seen: &mut Observed,
) -> Result<(), JobError> {
    let line = scrubber.scrub(raw);
    let Some(event) = AnsibleEvent::from_line(&line) else {
        return ctx.log(stream, line).await;
    };
    seen.events += 1;
    match event {
        AnsibleEvent::Play { .. } => {
            seen.plays += 1;
            Ok(())
        }
        AnsibleEvent::Task { .. } => Ok(()),
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
            ctx.host_result(host, task, status, msg).await
        }
        AnsibleEvent::Diff { host, diff, .. } => {
            let entry = seen.diffs.entry(host).or_default();
            if entry.len() < 1 << 20 {
                entry.push_str(&diff);
            }
            Ok(())
        }
        AnsibleEvent::Stats { hosts } => {
            seen.stats = Some(hosts);
            Ok(())
        }
    }
}
