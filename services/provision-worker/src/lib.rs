//! The provision worker: runs provisioning jobs (allow-listed Ansible playbooks on inventory servers,
//! `provision.run`) plus the built-in kinds on the default queue.

mod output;
mod run;

use std::collections::HashMap;
use std::sync::Arc;

use sentinel_ansible::process::{self, OWNER_MARKER};
use sentinel_jobs::domain::{JobKind, QueueName, builtin, provisioning};
use sentinel_jobs::{JobHandler, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;

pub use run::RunPlaybook;

/// This service's name (consumer names, logs, traces, metrics).
pub const SERVICE: &str = "provision-worker";
/// The queue provisioning jobs travel on.
pub const QUEUE: &str = provisioning::QUEUE;

/// The handlers this worker runs.
pub fn handlers(spine: &Spine) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    let mut map = builtin_handlers(spine.settings().worker.fault_injection);
    if let Ok(kind) = JobKind::parse(provisioning::RUN_KIND) {
        map.insert(kind, RunPlaybook::new(spine));
    }
    map
}

/// The queues this worker consumes.
pub fn queues() -> Vec<QueueName> {
    [QUEUE, builtin::DEFAULT_QUEUE].iter().filter_map(|q| QueueName::parse(q).ok()).collect()
}

/// Prepares this process to run playbooks: it becomes the reaper of every process a run leaves
/// (ansible's forks call `setsid`), and stops whatever a previous worker with the same work
/// directory left running.
pub async fn prepare(spine: &Spine) {
    if !process::become_subreaper() {
        tracing::warn!("could not become a child subreaper: a run's orphaned processes are swept by marker only");
    }
    let s = spine.settings();
    let work_dir = s.provision.work_dir(&s.data_dir);
    let left = process::marked_processes(OWNER_MARKER, &work_dir.display().to_string());
    if !left.is_empty() {
        tracing::warn!(processes = left.len(), "stopping processes a previous provision worker left running");
        process::sweep(&work_dir.join("none"), OWNER_MARKER, &work_dir.display().to_string()).await;
    }
}

/// Runs the worker on `spine` until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) -> anyhow::Result<()> {
    prepare(&spine).await;
    let options = WorkerOptions::from_spine(&spine, SERVICE, queues());
    Worker::new(spine.clone(), handlers(&spine), options).run(shutdown).await;
    Ok(())
}
