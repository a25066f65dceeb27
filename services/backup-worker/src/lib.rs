//! The backup worker: runs backup and restore jobs (added with the backups capability) plus the
//! built-in kinds on the default queue.

pub mod engines;
pub mod pipeline;

use std::collections::HashMap;
use std::sync::Arc;

use sentinel_jobs::domain::{JobKind, QueueName, builtin};
use sentinel_jobs::{JobHandler, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;

/// This service's name (consumer names, logs, traces, metrics).
pub const SERVICE: &str = "backup-worker";
/// The queue backup jobs travel on.
pub const QUEUE: &str = "backup";

/// The handlers this worker runs.
pub fn handlers(spine: &Spine) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    builtin_handlers(spine.settings().worker.fault_injection)
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
