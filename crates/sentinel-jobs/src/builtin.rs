//! Handlers of the built-in kinds: the seed's demo task, the retention and reservation-expiry sweeps,
//! and the test-only fault kinds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sentinel_domain::{JobKind, LogStream, builtin};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{JobContext, JobError, JobHandler};

/// `demo.sleep {"seconds": N}`: sleeps N seconds, reporting progress every second.
pub struct DemoSleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    seconds: u64,
}

#[async_trait]
impl JobHandler for DemoSleep {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let SleepPayload { seconds } = ctx.payload()?;
        ctx.log(LogStream::System, format!("sleeping {seconds} s")).await?;
        for step in 1..=seconds {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = ctx.cancelled() => return Err(JobError::Cancelled),
            }
            ctx.progress(step, seconds, Some(format!("slept {step}/{seconds} s"))).await?;
        }
        Ok(json!({ "slept_seconds": seconds }))
    }
}

/// `fault.crash`: aborts the whole worker process, to test crash recovery and quarantine.
pub struct FaultCrash;

#[async_trait]
impl JobHandler for FaultCrash {
    async fn run(&self, _ctx: &JobContext) -> Result<Value, JobError> {
        tracing::error!("fault.crash: aborting this worker process on purpose");
        std::process::abort();
    }
}

/// `fault.fail`: fails with a retryable error on every attempt.
pub struct FaultFail;

#[async_trait]
impl JobHandler for FaultFail {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        Err(JobError::Retryable(format!("fault.fail: attempt {} failed on purpose", ctx.job().attempt)))
    }
}

/// `fault.subprocess`: starts a shell that starts a sleeping grandchild and sleeps itself, and ignores
/// SIGTERM — the worst case for cancel, which must still leave no process behind.
pub struct FaultSubprocess;

#[async_trait]
impl JobHandler for FaultSubprocess {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "trap '' TERM; sleep 300 & echo child $!; sleep 300; wait"]);
        let outcome = ctx.run_command(cmd).await?;
        Ok(json!({ "exit_code": outcome.code }))
    }
}

/// `system.retention`: deletes finished jobs (with their events) and schedule firings older than
/// `worker.retention_days`, and the successful runs of the built-in periodic sweeps (and their firings)
/// after a day — they fire every few seconds and would otherwise dominate the tables — and the
/// notification log's finished deliveries older than the same cutoff. Fired by the
/// built-in retention schedule.
pub struct Retention;

/// How long successful system sweeps are kept.
const SYSTEM_RETENTION: chrono::Duration = chrono::Duration::days(1);

#[async_trait]
impl JobHandler for Retention {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let spine = ctx.spine();
        let now = chrono::Utc::now();
        let cutoff = now - chrono::Duration::days(i64::from(spine.settings().worker.retention_days));
        let schedules = spine.db().schedules();
        let jobs = spine.store().delete_finished_before(cutoff).await?
            + spine.store().delete_succeeded_system_jobs_before(now - SYSTEM_RETENTION).await?;
        let firings = schedules.delete_firings_before(cutoff, false).await?
            + schedules.delete_firings_before(now - SYSTEM_RETENTION, true).await?;
        // The notification log: finished deliveries older than the same cutoff.
        let notifications = spine.db().notify().delete_finished_before(cutoff).await?;
        if jobs + firings + notifications > 0 {
            tracing::info!(jobs, firings, notifications, %cutoff, "retention: removed expired job data");
        }
        Ok(
            json!({ "deleted_jobs": jobs, "deleted_firings": firings, "deleted_notifications": notifications, "cutoff": cutoff }),
        )
    }
}

/// `inventory.expire_reservations`: gives back every server whose reservation's TTL ran out.
pub struct ExpireReservations;

#[async_trait]
impl JobHandler for ExpireReservations {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let inventory = ctx.spine().db().inventory();
        let mut ended = 0;
        loop {
            let n = inventory.expire_reservations(None, chrono::Utc::now()).await?;
            ended += n;
            // The store ends at most 1000 per call.
            if n < 1000 {
                break;
            }
        }
        if ended > 0 {
            tracing::info!(ended, "reservations expired");
        }
        // Runs whose job ended without them (cancelled while queued, quarantined) give their servers back.
        let runs = ctx.spine().db().provisioning().end_orphaned_runs().await?;
        if runs > 0 {
            tracing::info!(runs, "orphaned provisioning runs ended");
        }
        Ok(json!({ "expired": ended, "orphaned_runs_ended": runs }))
    }
}

/// Handlers for the built-in kinds every worker runs; fault kinds only when enabled.
pub fn builtin_handlers(fault_injection: bool) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    let mut map: HashMap<JobKind, Arc<dyn JobHandler>> = HashMap::new();
    let mut add = |name: &str, h: Arc<dyn JobHandler>| {
        if let Ok(kind) = JobKind::parse(name) {
            map.insert(kind, h);
        }
    };
    add(builtin::DEMO_SLEEP, Arc::new(DemoSleep));
    add(builtin::SYSTEM_RETENTION, Arc::new(Retention));
    add(builtin::INVENTORY_EXPIRE_RESERVATIONS, Arc::new(ExpireReservations));
    if fault_injection {
        add(builtin::FAULT_CRASH, Arc::new(FaultCrash));
        add(builtin::FAULT_FAIL, Arc::new(FaultFail));
        add(builtin::FAULT_SUBPROCESS, Arc::new(FaultSubprocess));
    }
    map
}
