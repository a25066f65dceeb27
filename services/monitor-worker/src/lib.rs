//! The monitor worker: runs the monitoring sweeps fired by the built-in schedules (metric evaluation,
//! heartbeat check, HTTP check dispatch) plus the built-in kinds on the default queue.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sentinel_jobs::domain::{JobKind, QueueName, builtin};
use sentinel_jobs::{JobContext, JobError, JobHandler, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;
use serde_json::{Value, json};

/// This service's name (consumer names, logs, traces, metrics).
pub const SERVICE: &str = "monitor-worker";
/// The queue monitor jobs travel on.
pub const QUEUE: &str = builtin::MONITOR_QUEUE;

/// One monitoring sweep. Each sweep works over the rules, machines or targets that are due; the
/// monitoring capability registers them, so until it lands a sweep finds nothing due and says so.
struct Sweep {
    what: &'static str,
}

#[async_trait]
impl JobHandler for Sweep {
    async fn run(&self, _ctx: &JobContext) -> Result<Value, JobError> {
        Ok(json!({ "sweep": self.what, "due": 0 }))
    }
}

/// The handlers this worker runs.
pub fn handlers(spine: &Spine) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    let mut map = builtin_handlers(spine.settings().worker.fault_injection);
    for (kind, what) in [
        (builtin::MONITOR_EVALUATE_METRICS, "metric rules"),
        (builtin::MONITOR_CHECK_HEARTBEATS, "heartbeats"),
        (builtin::MONITOR_DISPATCH_HTTP_CHECKS, "http checks"),
    ] {
        if let Ok(kind) = JobKind::parse(kind) {
            map.insert(kind, Arc::new(Sweep { what }));
        }
    }
    map
}

/// The queues this worker consumes.
pub fn queues() -> Vec<QueueName> {
    [QUEUE, builtin::DEFAULT_QUEUE].iter().filter_map(|q| QueueName::parse(q).ok()).collect()
}

/// Runs the worker on `spine` until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) -> anyhow::Result<()> {
    let options = WorkerOptions::from_spine(&spine, SERVICE, queues());
    Worker::new(spine.clone(), handlers(&spine), options).run(shutdown).await;
    Ok(())
}
