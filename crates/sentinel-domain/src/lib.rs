//! Pure types shared by every Sentinel crate: ids, job states and their legal transitions, priorities,
//! retry policy arithmetic and job events. No I/O lives here.

mod access;
mod event;
mod ids;
mod job;
mod retry;

pub use access::{KeyScope, Role};
pub use event::{DeadLetterReason, JobEvent, JobEventKind, LogStream};
pub use ids::{JobId, JobKind, ParseError, QueueName};
pub use job::{JobState, Priority, Progress, TransitionError};
pub use retry::RetryPolicy;

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
}
