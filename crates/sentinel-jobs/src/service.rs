//! Start-up shared by the service binaries: settings, telemetry, spine, signals and the ops server, so
//! each `main.rs` is a few lines and every binary starts and stops the same way.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use sentinel_config::Settings;
use sentinel_domain::QueueName;
use sentinel_telemetry::Shutdown;
use sentinel_telemetry::ops::{Ops, OpsServer};

use crate::{Catalog, Spine, SpineReadiness};

/// Which ops endpoints a binary serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsEndpoints {
    /// None (the gateway serves its own on its API port).
    Off,
    /// `/health`, `/ready`, `/metrics` with the given queues' stream depths.
    On,
    /// As `On`, plus every queue's waiting jobs (the scheduler: a queue nobody consumes shows up).
    WatchingQueues,
}

/// Loads settings (with `default_listen` as this binary's own default port), installs telemetry,
/// connects the spine and hands it to `body` together with a shutdown token fired by SIGTERM/SIGINT.
/// Unless `ops` is `Off`, also serves `/health`, `/ready` and `/metrics` (reporting on `queues`).
pub async fn run_binary<F, Fut>(
    service: &'static str,
    default_listen: &str,
    queues: Vec<QueueName>,
    ops: OpsEndpoints,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Spine, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let settings = Settings::load_for(&[("http.listen", default_listen)], &[])?;
    let _telemetry = sentinel_telemetry::init(service, &settings.telemetry)?;
    let spine = Spine::connect(&settings, Catalog::builtin(settings.worker.fault_injection))
        .await
        .context("cannot start: database or bus unavailable")?;
    let shutdown = Shutdown::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            sentinel_telemetry::wait_for_signal().await;
            shutdown.cancel();
        });
    }
    let ops_task = if ops != OpsEndpoints::Off {
        let watch_waiting = ops == OpsEndpoints::WatchingQueues;
        let readiness = SpineReadiness { spine: spine.clone(), queues, watch_waiting };
        let ops = Ops { service, readiness: Arc::new(readiness) };
        let server = OpsServer::bind(settings.http.listen, ops)
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        tracing::info!(service, port = server.port(), "ops endpoints listening");
        Some(tokio::spawn(server.run_until_stopped(shutdown.clone())))
    } else {
        None
    };
    // On a runtime thread, not `main`'s: `main` is not one of the runtime's workers, so every wake-up
    // of a loop running there (a worker's dispatch loop, once per job) would be a hop to a parked thread.
    let result = match tokio::spawn(body(spine, shutdown.clone())).await {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!("{service} stopped abnormally: {e}")),
    };
    shutdown.cancel();
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    result
}
