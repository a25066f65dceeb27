//! Pure types shared by every Sentinel crate: ids, job states and their legal transitions, priorities,
//! retry policy arithmetic and job events. No I/O lives here.

mod access;
pub mod backups;
pub mod configs;
mod event;
mod ids;
pub mod inventory;
mod job;
pub mod monitoring;
pub mod notify;
pub mod provisioning;
mod retry;
pub mod schedule;

pub use access::{KeyScope, Role};
pub use event::{DeadLetterReason, JobEvent, JobEventKind, LogStream};
pub use ids::{JobId, JobKind, ParseError, QueueName};
pub use job::{JobState, Priority, Progress, TransitionError};
pub use retry::RetryPolicy;

/// RFC 3986 percent-encoding: every byte but the unreserved characters (`A-Z a-z 0-9 - _ . ~`) becomes
/// `%XX`. What URLs, form bodies and AWS SigV4 canonical requests all accept.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Job kinds that every worker can run, whatever its own capability.
pub mod builtin {
    /// The seed's demo task: sleep N seconds, reporting progress every second.
    pub const DEMO_SLEEP: &str = "demo.sleep";
    /// Test-only fault kind: aborts the worker process that runs it (enabled by configuration only).
    pub const FAULT_CRASH: &str = "fault.crash";
    /// Test-only fault kind: always fails with a handler error (enabled by configuration only).
    pub const FAULT_FAIL: &str = "fault.fail";
    /// Test-only fault kind: runs a subprocess tree that sleeps until cancelled (enabled by configuration only).
    pub const FAULT_SUBPROCESS: &str = "fault.subprocess";
    /// The queue that the built-in kinds travel on; every worker service consumes it.
    pub const DEFAULT_QUEUE: &str = "default";
    /// Deletes finished jobs and firing records older than the retention period (built-in schedule).
    pub const SYSTEM_RETENTION: &str = "system.retention";
    /// Ends the reservations whose TTL ran out (built-in schedule; each also ends at the next
    /// reservation of its organization).
    pub const INVENTORY_EXPIRE_RESERVATIONS: &str = "inventory.expire_reservations";
    /// The queue of monitoring work; the monitor worker consumes it.
    pub const MONITOR_QUEUE: &str = "monitor";
    /// Evaluates metric alert rules (built-in schedule, every 60 s by default).
    pub const MONITOR_EVALUATE_METRICS: &str = "monitor.evaluate_metrics";
    /// Flags machines whose heartbeat is overdue (built-in schedule, every 120 s by default).
    pub const MONITOR_CHECK_HEARTBEATS: &str = "monitor.check_heartbeats";
    /// Runs the HTTP checks that are due, each target on its own interval (built-in schedule).
    pub const MONITOR_DISPATCH_HTTP_CHECKS: &str = "monitor.dispatch_http_checks";
}
