//! The monitor worker: runs the monitoring sweeps fired by the built-in schedules — HTTP check
//! dispatch (each target on its own absolute deadlines), the rollup of results, metric evaluation
//! and heartbeats — the manual check of one target, the notifier (notification groups and their
//! delivery, channel tests), and the built-in kinds on the default queue.

mod cert;
mod dispatch;
pub mod notify;
mod probe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sentinel_jobs::db::monitoring::ClaimedCheck;
use sentinel_jobs::domain::monitoring::{CHECK_TARGET_KIND, ROLLUP_KIND, targets::MAX_TIMEOUT_SECS};
use sentinel_jobs::domain::notify::TEST_CHANNEL_KIND;
use sentinel_jobs::domain::{JobKind, QueueName, builtin};
use sentinel_jobs::{JobContext, JobError, JobHandler, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;
use serde_json::{Value, json};
use uuid::Uuid;

pub use dispatch::Dispatcher;
pub use probe::{Network, Probe, Prober};

/// This service's name (consumer names, logs, traces, metrics).
pub const SERVICE: &str = "monitor-worker";
/// The queue monitor jobs travel on.
pub const QUEUE: &str = builtin::MONITOR_QUEUE;

/// `monitor.evaluate_metrics` (60 s): series with a threshold that stopped arriving become `nodata`
/// (levels themselves are evaluated as samples arrive).
struct EvaluateMetrics;

#[async_trait]
impl JobHandler for EvaluateMetrics {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let report = ctx.spine().db().monitoring().sweep_metrics(Utc::now()).await.map_err(db_error)?;
        Ok(json!({ "sweep": "metric rules", "changed": report.changed }))
    }
}

/// `monitor.check_heartbeats` (120 s): machines silent past their threshold raise "machine silent";
/// heartbeat checks past a deadline are moved (also done by every HTTP dispatch sweep).
struct CheckHeartbeats;

#[async_trait]
impl JobHandler for CheckHeartbeats {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let store = ctx.spine().db().monitoring();
        let machines = store.sweep_machines(Utc::now()).await.map_err(db_error)?;
        let checks = store.sweep_heartbeats(Utc::now()).await.map_err(db_error)?;
        Ok(json!({ "sweep": "heartbeats", "machines_changed": machines.changed, "checks_changed": checks.changed }))
    }
}

fn db_error(e: sentinel_jobs::db::DbError) -> JobError {
    JobError::retryable(e)
}

/// `monitor.dispatch_http_checks`: claims what is due before the sweep after next and schedules it.
struct DispatchChecks {
    dispatcher: Arc<Dispatcher>,
    every: Duration,
}

#[async_trait]
impl JobHandler for DispatchChecks {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        // Two sweep intervals ahead (a late sweep still finds its deadlines claimed), leases
        // outliving a deadline by two intervals more: a killed worker's deadlines run again then.
        let horizon = self.every * 2 + Duration::from_secs(1);
        let scheduled =
            self.dispatcher.dispatch(horizon, self.every * 2 + Duration::from_secs(5)).await.map_err(db_error)?;
        // Heartbeat checks whose deadline passed ride on this frequent sweep (one index range), so
        // a missed run is raised within seconds rather than at the 120 s sweep.
        let heartbeats = ctx.spine().db().monitoring().sweep_heartbeats(Utc::now()).await.map_err(db_error)?;
        Ok(json!({ "sweep": "http checks", "scheduled": scheduled, "heartbeats_changed": heartbeats.changed }))
    }
}

/// `monitor.check_target`: checks one target now and records the result (outside its schedule).
struct CheckTarget {
    dispatcher: Arc<Dispatcher>,
}

#[derive(serde::Deserialize)]
struct CheckPayload {
    target_id: Uuid,
}

#[async_trait]
impl JobHandler for CheckTarget {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let p: CheckPayload = ctx.payload()?;
        let org = ctx.job().org_id.ok_or_else(|| JobError::permanent("the check names no organization"))?;
        let store = ctx.spine().db().monitoring();
        let target = store
            .target(org, p.target_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| JobError::permanent(format!("monitor target {} not found", p.target_id)))?;
        let started = Utc::now();
        let probe = self.dispatcher.probe(target.id, &target.spec).await;
        let check = ClaimedCheck { target_id: target.id, org_id: org, spec: target.spec, due_at: started };
        let result = dispatch::result_of(&check, started, probe, true);
        store.record_results(std::slice::from_ref(&result)).await.map_err(db_error)?;
        Ok(json!({
            "target_id": result.target_id,
            "checked_at": result.started_at,
            "status": result.status.as_str(),
            "status_code": result.status_code,
            "response_ms": result.response_ms,
            "error_class": result.error_class.map(|c| c.as_str()),
            "message": result.message,
            "cert_expires_at": result.cert_expires_at,
        }))
    }
}

/// `notify.test_channel`: sends a test message through one channel and reports the answer.
struct TestChannel {
    notifier: Arc<notify::Notifier>,
}

#[derive(serde::Deserialize)]
struct TestChannelPayload {
    channel_id: Uuid,
}

#[async_trait]
impl JobHandler for TestChannel {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let p: TestChannelPayload = ctx.payload()?;
        let org = ctx.job().org_id.ok_or_else(|| JobError::permanent("the test names no organization"))?;
        let key = format!("test:{}", ctx.job().id);
        self.notifier.test_channel(org, p.channel_id, key).await.map_err(JobError::permanent)
    }
}

/// `monitor.rollup_results`: folds settled hours into rollups and trims raw results.
struct RollUp {
    raw_window: chrono::Duration,
}

#[async_trait]
impl JobHandler for RollUp {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        // A deadline's result can arrive up to the longest timeout after it, plus the writer's delay.
        let settle = chrono::Duration::seconds(i64::from(MAX_TIMEOUT_SECS) + 60);
        let report =
            ctx.spine().db().monitoring().roll_up(Utc::now(), settle, self.raw_window).await.map_err(db_error)?;
        Ok(json!({
            "hours": report.hours, "days": report.days,
            "raw_deleted": report.raw_deleted, "rollups_deleted": report.rollups_deleted,
            "samples_deleted": report.samples_deleted,
        }))
    }
}

/// The handlers this worker runs, around its dispatcher.
pub fn handlers(
    spine: &Spine,
    dispatcher: &Arc<Dispatcher>,
    notifier: &Arc<notify::Notifier>,
) -> HashMap<JobKind, Arc<dyn JobHandler>> {
    let settings = spine.settings();
    let mut map = builtin_handlers(settings.worker.fault_injection);
    let every = Duration::from_secs(settings.scheduler.http_check_dispatch_interval_secs.max(1));
    let raw_window = chrono::Duration::hours(i64::try_from(settings.monitor.raw_result_hours.max(2)).unwrap_or(48));
    let own: [(&str, Arc<dyn JobHandler>); 6] = [
        (TEST_CHANNEL_KIND, Arc::new(TestChannel { notifier: notifier.clone() })),
        (builtin::MONITOR_EVALUATE_METRICS, Arc::new(EvaluateMetrics)),
        (builtin::MONITOR_CHECK_HEARTBEATS, Arc::new(CheckHeartbeats)),
        (builtin::MONITOR_DISPATCH_HTTP_CHECKS, Arc::new(DispatchChecks { dispatcher: dispatcher.clone(), every })),
        (CHECK_TARGET_KIND, Arc::new(CheckTarget { dispatcher: dispatcher.clone() })),
        (ROLLUP_KIND, Arc::new(RollUp { raw_window })),
    ];
    for (kind, handler) in own {
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
    let m = &spine.settings().monitor;
    let allowed = m
        .allow_networks
        .iter()
        .map(|n| probe::Network::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("invalid configuration: `monitor.allow_networks` {e}"))?;
    let prober = Arc::new(Prober::new(m.dns_server, m.max_body_kib.max(1) * 1024, allowed));
    let dispatcher = Dispatcher::start(
        spine.db().monitoring(),
        prober,
        spine.vault().ok().cloned(),
        m.max_concurrent_checks,
        m.per_host_concurrency,
        shutdown.clone(),
    );
    let notifier = notify::Notifier::start(&spine, shutdown.clone());
    let options = WorkerOptions::from_spine(&spine, SERVICE, queues());
    Worker::new(spine.clone(), handlers(&spine, &dispatcher, &notifier), options).run(shutdown).await;
    Ok(())
}
