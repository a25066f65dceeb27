//! The scheduler service: turns time into jobs. It fires cron and interval schedules (one active
//! replica at a time, exactly one firing per tick, see [`engine`]), keeps the built-in periodic work in
//! step with configuration, runs the outbox relay (publishing committed jobs whose message never
//! reached the bus, and delayed retries), and exports the backup plans' recovery objectives.

pub mod engine;
pub mod objectives;

use std::time::Duration;

use sentinel_jobs::{Relay, Spine};
use sentinel_telemetry::Shutdown;

pub use engine::{Engine, LEASE_NAME, LatenessObserver};

/// This service's name.
pub const SERVICE: &str = "scheduler";

/// Runs the schedule engine and the relay until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) -> anyhow::Result<()> {
    ensure_builtins(&spine, &shutdown).await;
    let relay = tokio::spawn(Relay::new(spine.clone()).run(shutdown.clone()));
    let objectives = tokio::spawn(objectives::run(spine.clone(), shutdown.clone()));
    let engine = tokio::spawn(Engine::new(spine).run(shutdown.clone()));
    let _ = relay.await;
    let _ = objectives.await;
    let _ = engine.await;
    Ok(())
}

/// Creates or updates the built-in schedules, retrying while the database is unreachable.
async fn ensure_builtins(spine: &Spine, shutdown: &Shutdown) {
    loop {
        match spine.ensure_builtin_schedules().await {
            Ok(schedules) => {
                tracing::debug!(count = schedules.len(), "built-in schedules in place");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot set up the built-in schedules; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
