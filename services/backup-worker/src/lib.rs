//! The backup worker: runs the jobs of the `backup` queue — backups of plans, restores, retention,
//! target and destination tests, the janitor, restore verification — plus the built-in kinds on the default queue.

pub mod engines;
pub mod janitor;
pub mod metrics;
pub mod pipeline;
pub mod probe;
pub mod prune;
pub mod restore;
pub mod run;
pub mod setup;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;

use sentinel_jobs::domain::{JobKind, QueueName, backups, builtin};
use sentinel_jobs::{JobHandler, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;

/// This service's name (consumer names, logs, traces, metrics).
pub const SERVICE: &str = "backup-worker";
/// The queue backup jobs travel on.
pub const QUEUE: &str = backups::QUEUE;

/// The handlers this worker runs.
pub fn handlers(spine: &Spine) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    let mut map = builtin_handlers(spine.settings().worker.fault_injection);
    let ours: [(&str, Arc<dyn JobHandler>); 7] = [
        (backups::RUN_KIND, run::RunBackup::new(spine)),
        (backups::RESTORE_KIND, Arc::new(restore::Restore)),
        (backups::PRUNE_KIND, Arc::new(prune::Prune)),
        (backups::TEST_TARGET_KIND, Arc::new(probe::TestTarget)),
        (backups::TEST_DESTINATION_KIND, Arc::new(probe::TestDestination)),
        (backups::JANITOR_KIND, Arc::new(janitor::Janitor)),
        (backups::VERIFY_KIND, Arc::new(verify::VerifyBackup)),
    ];
    for (kind, handler) in ours {
        if let Ok(kind) = JobKind::parse(kind) {
            map.insert(kind, handler);
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
    metrics::seed(&spine).await;
    let options = WorkerOptions::from_spine(&spine, SERVICE, queues());
    Worker::new(spine.clone(), handlers(&spine), options).run(shutdown).await;
    Ok(())
}
