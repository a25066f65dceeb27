//! The scheduler service: turns time into jobs. Today it runs the outbox relay (publishing committed
//! jobs whose message never reached the bus, and delayed retries) and the retention sweep of finished
//! jobs; cron schedules arrive with the scheduling capability.

use std::time::Duration;

use chrono::Utc;
use sentinel_jobs::{Relay, Spine};
use sentinel_telemetry::Shutdown;

/// This service's name.
pub const SERVICE: &str = "scheduler";

/// How often finished jobs older than the retention period are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(300);

/// Runs the relay and the retention sweep until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) -> anyhow::Result<()> {
    let relay = tokio::spawn(Relay::new(spine.clone()).run(shutdown.clone()));
    let retention = tokio::spawn(retention_sweep(spine, shutdown.clone()));
    let _ = relay.await;
    let _ = retention.await;
    Ok(())
}

async fn retention_sweep(spine: Spine, shutdown: Shutdown) {
    let keep = chrono::Duration::days(i64::from(spine.settings().worker.retention_days));
    loop {
        match spine.store().delete_finished_before(Utc::now() - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: removed finished jobs"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}
